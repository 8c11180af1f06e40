"""fMRIPrep derivatives: MNI-space preprocessed BOLD, brain mask and reduced confounds.

Layout read (fMRIPrep >= 20.2, with or without sessions)::

    <path>/sub-X[/ses-Y]/anat/sub-X[_ses-Y]_space-<space>_desc-preproc_T1w.nii.gz
    <path>/sub-X[/ses-Y]/func/sub-X[_ses-Y]_task-T[_run-N]_space-<space>_desc-preproc_bold.nii.gz
                                                      ..._space-<space>_desc-brain_mask.nii.gz
    <path>/sub-X[/ses-Y]/func/sub-X[_ses-Y]_task-T[_run-N]_desc-confounds_timeseries.tsv (+ .json)

Parameters (``dataset.params``), besides those of :mod:`.bids`
--------------------------------------------------------------
space : str, default ``"MNI152NLin2009cAsym"``
    The declared space; a run only present in another space is an error.
confounds : dict, default ``{"strategy": "simple"}``
    ``strategy`` a name (``simple``, ``scrubbing``, ``compcor``, ``ica_aroma``)
    calls :func:`nilearn.interfaces.fmriprep.load_confounds_strategy`; a list
    (``[motion, wm_csf]``) calls :func:`~nilearn.interfaces.fmriprep.load_confounds`;
    other keys are passed on. Volumes a strategy censors (``scrubbing``,
    non-steady-state volumes) are listed as ``SampleMask`` (kept volume
    indices) in the BOLD sidecar; the preprocess stage passes it to
    ``nilearn.signal.clean(sample_mask=...)``, which drops them
    (docs/architecture.md, "Censoring").
participants : str, optional
    A participants TSV (fMRIPrep does not copy the raw dataset's).
"""

from __future__ import annotations

from pathlib import Path

from nilearn.interfaces import fmriprep as nifmriprep

from modalmerge.data.sources import _common, bids, validate
from modalmerge.data.sources._common import Source, SubjectFiles
from modalmerge.io import InputError

DEFAULT_SPACE = "MNI152NLin2009cAsym"
WRITES_CONFOUNDS = True  # a confounds TSV beside every BOLD run (workflow input)
KEYS = bids.KEYS | {"space", "confounds", "participants"}


def reduce_confounds(bold: Path, confounds_tsv: Path, options: dict, n_volumes: int) -> tuple:
    """Reduce fMRIPrep's confounds with a named strategy.

    Parameters
    ----------
    bold : Path
        The preprocessed BOLD (nilearn finds the confounds beside it).
    confounds_tsv : Path
        The full confounds table (checked for emptiness and length first).
    options : dict
        ``{"strategy": name | list, **kwargs}`` (see the module docstring).
    n_volumes : int
        Volumes in the BOLD run.

    Returns
    -------
    confounds : pandas.DataFrame
        (n_volumes, n_regressors).
    sample_mask : numpy.ndarray or None
        Indices of the kept volumes when the strategy censors some.
    """
    full = validate.read_tsv(confounds_tsv, "confounds table")
    validate.check_confounds(confounds_tsv, full, n_volumes)
    options = dict(options)
    strategy = options.pop("strategy", "simple")
    try:
        if isinstance(strategy, str):
            table, mask = nifmriprep.load_confounds_strategy(
                str(bold), denoise_strategy=strategy, **options
            )
        else:
            table, mask = nifmriprep.load_confounds(str(bold), strategy=tuple(strategy), **options)
    except (KeyError, ValueError, FileNotFoundError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(confounds_tsv, f"confound strategy {strategy!r} failed: {first}") from None
    if table.shape[1] == 0:
        raise InputError(confounds_tsv, f"confound strategy {strategy!r} selects no column")
    return table, mask


def _collect(params: dict, subject: str) -> SubjectFiles:
    root = _common.dataset_path(params)
    sub_dir = root / subject
    space = params.get("space", DEFAULT_SPACE)
    filters = bids.run_filters(params)
    runs = bids.find(sub_dir, "func", "bold", desc=["preproc"], **filters)
    in_space = [p for p in runs if bids.parse_name(p.name)[0].get("space") == space]
    if not in_space and runs:
        validate.check_space(runs[0], space)  # raises: the run exists, in another space
    bold = bids.one(in_space, sub_dir, f"preprocessed BOLD in space {space}", filters)
    ent = bids.parse_name(bold.name)[0]
    same_run = {k: ent.get(k, "<absent>") for k in ("ses", "task", "acq", "run", "space")}
    mask = bids.one(
        bids.find(sub_dir, "func", "mask", desc=["brain"], **same_run),
        sub_dir,
        "brain mask",
        same_run,
    )
    conf_ent = {k: v for k, v in same_run.items() if k != "space"}
    conf = bids.one(
        bids.find(sub_dir, "func", "timeseries", ".tsv", desc=["confounds"], **conf_ent),
        sub_dir,
        "confounds table",
        conf_ent,
    )
    t1s = bids.find(sub_dir, "anat", "T1w", desc=["preproc"], space=[space])
    same_ses = [p for p in t1s if bids.parse_name(p.name)[0].get("ses") in (None, ent.get("ses"))]
    t1 = bids.one(same_ses or t1s, sub_dir, f"preprocessed T1w in space {space}", {"space": space})

    bold_img = validate.load_header(bold, "BOLD run")
    validate.require_ndim(bold, bold_img, 4, "BOLD run")
    t1_img = validate.load_header(t1, "T1w image")
    validate.require_ndim(t1, t1_img, 3, "T1w image")
    mask_img = validate.load_header(mask, "brain mask")
    validate.require_ndim(mask, mask_img, 3, "brain mask")
    validate.check_same_grid(bold, bold_img, mask, mask_img)
    if params.get("same_grid", False):
        validate.check_same_grid(bold, bold_img, t1, t1_img)
        bids.atlas_grid_check(params, bold, bold_img)
    meta, sidecar = bids.sidecar_metadata(root, bold)
    tr = validate.check_tr(bold, bold_img, meta.get("RepetitionTime"), sidecar)
    n_volumes = bold_img.shape[3]
    table, sample_mask = reduce_confounds(
        bold, conf, params.get("confounds", {"strategy": "simple"}), n_volumes
    )
    files = SubjectFiles(subject, anat={"T1w": t1}, bold=bold, confounds=table)
    files.func_extra["desc-brain_mask.nii.gz"] = mask
    files.bold_json = {
        "RepetitionTime": tr,
        "TaskName": params["task"],
        "SpatialReference": space,
        "Sources": [str(bold), str(conf)],
    }
    if sample_mask is not None:  # read back by preprocess (modalmerge.data.preprocess)
        files.bold_json["SampleMask"] = [int(i) for i in sample_mask]
    return files


def _participants(params: dict):
    if not params.get("participants"):
        return None
    return bids.participants_table(Path(params["participants"]).expanduser())


SOURCE = Source(
    kind="fmriprep",
    keys=KEYS,
    on_disk=lambda params: bids.subjects_on_disk(_common.dataset_path(params), params),
    participants=_participants,
    collect=_collect,
    task=lambda params: params["task"],
)


# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
