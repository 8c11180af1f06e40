"""fMRIPrep derivatives: MNI-space preprocessed BOLD, brain mask and reduced confounds.

Layout read (fMRIPrep 20.x-24.x, with or without sessions)::

    <path>[/fmriprep]/sub-X[/ses-Y]/anat/sub-X[_ses-Y][_space-<space>][_res-R]_desc-preproc_T1w.nii.gz
    <path>[/fmriprep]/sub-X[/ses-Y]/func/sub-X[_ses-Y]_task-T[_dir-D][_run-N]_space-<space>[_res-R]_desc-preproc_bold.nii.gz
                                                      ..._space-<space>[_res-R]_desc-brain_mask.nii.gz
    <path>[/fmriprep]/sub-X[/ses-Y]/func/sub-X[_ses-Y]_task-T[_run-N]_desc-confounds_timeseries.tsv

The ``fmriprep/`` subfolder (20.2's legacy ``<out>/fmriprep/sub-*``) is found when
``path`` holds no ``sub-*``; confounds named ``_desc-confounds_regressors.tsv``
(fMRIPrep <= 20.1) are read too. ``space: T1w`` takes the T1w without a ``space-``
entity. CIFTI (``.dtseries.nii``) and surface outputs are not supported (an error
says so). ``entities`` (``{res: 2}``, ``{dir: AP}``) narrows the run as in :mod:`.bids`.
The ``ica_aroma`` strategy reads ``_desc-smoothAROMAnonaggr_bold`` (fMRIPrep < 23.1
with ``--use-aroma``, in ``MNI152NLin6Asym``); without it the error says AROMA was removed.

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

import logging
from pathlib import Path

from nilearn.interfaces import fmriprep as nifmriprep

from modalmerge.data.nifti import check_same_grid
from modalmerge.data.sources import _common, _entities, bids, validate
from modalmerge.data.sources._common import Source, SubjectFiles
from modalmerge.io import InputError

log = logging.getLogger("modalmerge")

DEFAULT_SPACE = "MNI152NLin2009cAsym"
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


def derivatives_root(params: dict) -> Path:
    """``path``, or its ``fmriprep/`` folder (the 20.2 legacy ``<out>/fmriprep/sub-*`` layout)."""
    root = _common.dataset_path(params)
    legacy = root / "fmriprep"
    if not any(root.glob("sub-*")) and legacy.is_dir() and any(legacy.glob("sub-*")):
        return legacy
    return root


def bold_desc(params: dict) -> str:
    """``smoothAROMAnonaggr`` for the ``ica_aroma`` strategy (its BOLD is the denoised
    image fMRIPrep < 23.1 wrote), else ``preproc``."""
    strategy = params.get("confounds", {}).get("strategy", "simple")
    return "smoothAROMAnonaggr" if strategy == "ica_aroma" else "preproc"


def _no_volume(sub_dir: Path, space: str, desc: str, runs: list[Path], filters: dict) -> None:
    """Raise the clearest error when no NIfTI BOLD matches: CIFTI only, AROMA gone, other space."""
    cifti = bids.find(sub_dir, "func", "bold", ".dtseries.nii", **filters)
    if cifti and (space.startswith(("fsLR", "fsaverage")) or not runs):
        raise InputError(cifti[0], "CIFTI/surface BOLD (.dtseries.nii) is not supported: run "
                         "fMRIPrep with a volumetric --output-spaces (e.g. MNI152NLin2009cAsym) "
                         "and set dataset.params.space to it")  # fmt: skip
    if runs:
        validate.check_space(runs[0], space)  # raises: the run exists, in another space
    if desc != "preproc":
        raise InputError(sub_dir, "confounds strategy ica_aroma needs the *_desc-smoothAROMAnonaggr"
                         "_bold.nii.gz fMRIPrep < 23.1 wrote with --use-aroma (removed in 23.1: "
                         "run fMRIPost-AROMA, or choose another strategy)")  # fmt: skip


def choose_bold(sub_dir: Path, params: dict, space: str) -> Path:
    """The preprocessed BOLD in ``space`` (``entities`` may set res, dir, echo ...)."""
    filters = bids.run_filters(params)
    if "space" in filters:
        raise ValueError("set the fMRIPrep space with dataset.params.space, not entities.space")
    desc = bold_desc(params)
    runs = bids.find(sub_dir, "func", "bold", desc=[desc], **filters)
    in_space = [p for p in runs if bids.parse_name(p.name)[0].get("space") == space]
    if not in_space:
        _no_volume(sub_dir, space, desc, runs, filters)
    return bids.one(in_space, sub_dir, f"preprocessed BOLD in space {space}", filters)


def choose_t1w(sub_dir: Path, params: dict, space: str, bold_ent: dict) -> Path:
    """The preprocessed T1w in ``space`` (``space: T1w``: the one without a space entity),
    at the BOLD's resolution when several exist."""
    wanted = "<absent>" if space == "T1w" else [space]
    t1s = bids.find(sub_dir, "anat", "T1w", desc=["preproc"], space=wanted,
                    **_entities.entity_filter(params, "t1w_entities"))  # fmt: skip
    same_ses = [
        p for p in t1s if bids.parse_name(p.name)[0].get("ses") in (None, bold_ent.get("ses"))
    ]
    t1s = same_ses or t1s
    same_res = [p for p in t1s if bids.parse_name(p.name)[0].get("res") == bold_ent.get("res")]
    return _entities.prefer(same_res or t1s, sub_dir, f"preprocessed T1w in space {space}",
                            {"space": space})  # fmt: skip


def beside(sub_dir: Path, bold: Path) -> tuple[Path, Path]:
    """The BOLD's brain mask and confounds table (``_timeseries.tsv``, or ``_regressors.tsv``
    of fMRIPrep <= 20.1)."""
    ent = bids.parse_name(bold.name)[0]
    keys = ("ses", "task", "acq", "ce", "dir", "rec", "run", "echo", "space", "res")
    same_run = {k: ent.get(k, "<absent>") for k in keys}
    masks = bids.find(sub_dir, "func", "mask", desc=["brain"], **same_run)
    if not masks and "res" not in ent:  # an AROMA run without res- beside a res-2 mask
        masks = bids.find(sub_dir, "func", "mask", desc=["brain"], **{**same_run, "res": None})
    mask = bids.one(masks, sub_dir, "brain mask", same_run)
    conf_ent = {k: v for k, v in same_run.items() if k not in ("space", "res", "echo")}
    tables = [p for suffix in ("timeseries", "regressors")
              for p in bids.find(sub_dir, "func", suffix, ".tsv", desc=["confounds"], **conf_ent)]  # fmt: skip
    return mask, bids.one(tables, sub_dir, "confounds table", conf_ent)


def _collect(params: dict, subject: str) -> SubjectFiles:
    root = derivatives_root(params)
    sub_dir = root / subject
    space = params.get("space", DEFAULT_SPACE)
    bold = choose_bold(sub_dir, params, space)
    t1 = choose_t1w(sub_dir, params, space, bids.parse_name(bold.name)[0])
    mask, conf = beside(sub_dir, bold)
    bold_img = validate.load_header(bold, "BOLD run")
    validate.require_ndim(bold, bold_img, 4, "BOLD run")
    t1_img = validate.load_header(t1, "T1w image")
    validate.require_ndim(t1, t1_img, 3, "T1w image")
    mask_img = validate.load_header(mask, "brain mask")
    validate.require_ndim(mask, mask_img, 3, "brain mask")
    check_same_grid(mask_img, bold_img, mask, "brain mask", f"the grid of {bold.name}", "")
    if params.get("same_grid", False):
        check_same_grid(t1_img, bold_img, t1, "T1w image", f"the grid of {bold.name}", "")
        bids.atlas_grid_check(params, bold, bold_img)
    meta, sidecar = bids.sidecar_metadata(root, bold)
    tr, note = bids.sidecar_tr(bold, bold_img, meta, sidecar)
    n_volumes = bold_img.shape[3]
    table, sample_mask = reduce_confounds(
        bold, conf, params.get("confounds", {"strategy": "simple"}), n_volumes
    )
    files = SubjectFiles(subject, anat={"T1w": t1}, bold=bold, confounds=table)
    files.reads = [*bids.inherited_sidecars(root, bold), conf]
    files.func_extra["desc-brain_mask.nii.gz"] = mask
    files.bold_json = {
        "RepetitionTime": tr,
        "TaskName": params["task"],
        "SpatialReference": space,
        "Sources": [str(bold), str(conf)],
    }
    if note:
        files.bold_json["TRWarning"] = note
    if sample_mask is not None:  # read back by preprocess (modalmerge.data.preprocess)
        files.bold_json["SampleMask"] = [int(i) for i in sample_mask]
    return files


def _participants(params: dict):
    if not params.get("participants"):
        return None
    table = bids.participants_table(Path(params["participants"]).expanduser())
    return bids.listed_absent(table, derivatives_root(params), params)


def _on_disk(params: dict) -> list[str]:
    """Subjects with a preprocessed BOLD run matching the filters (others: a warning)."""
    root = derivatives_root(params)
    subjects = bids.subjects_on_disk(root, params)
    return bids.with_task(root, params, subjects)  # any desc: ica_aroma explains itself later


def _check_description(params: dict, raw: Path) -> None:
    """fMRIPrep writes ``dataset_description.json``; without one (a partial copy of the
    derivatives) a warning goes to the acquire-cohort log, since the files read carry
    their own provenance (``space-`` entity, sidecars, confounds)."""
    root = _common.dataset_path(params)
    if bids.read_description(root) is None:
        log.warning(
            "%s: missing; the derivatives' provenance (fMRIPrep version) is unknown",
            root / "dataset_description.json",
        )


SOURCE = Source(
    kind="fmriprep",
    keys=KEYS,
    on_disk=_on_disk,
    participants=_participants,
    complete_table=False,  # as bids: listed-but-absent subjects are a warning, left out
    collect=_collect,
    task=lambda params: params["task"],
    writes_confounds=True,  # a confounds TSV beside every BOLD run (workflow input)
    cohort_extra=_check_description,
)


# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
