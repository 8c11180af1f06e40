"""HCP minimal-preprocessed data (MNINonLinear), one fMRI run per subject.

Layout read (the released packages, unzipped into one folder)::

    <path>/<id>/MNINonLinear/Results/<run>/<run>.nii.gz                 (variant minimal)
    <path>/<id>/MNINonLinear/Results/<run>/<run>_hp2000_clean.nii.gz    (variant hp2000_clean)
    <path>/<id>/MNINonLinear/Results/<run>/Movement_Regressors.txt
    <path>/<id>/MNINonLinear/T1w_restore_brain.nii.gz    (or T1w/T1w_acpc_dc_restore_brain.nii.gz)

CIFTI (``*_Atlas*.dtseries.nii``) is not supported: an error says to use the NIfTI run.

Parameters (``dataset.params``)
-------------------------------
path : str
    The directory holding one folder per HCP subject id.
task : str, default ``"rest"``
    ``rest`` picks ``rfMRI_REST*`` runs, any other name ``tfMRI_<TASK>*``.
run : str, optional
    The run folder (``rfMRI_REST1_LR``) or its tail (``REST1_LR``, ``1_LR``);
    required when several runs match (``LR`` alone matches two: the error lists them).
variant : str, default ``"minimal"``
    ``minimal`` (``<run>.nii.gz``), ``hp2000_clean`` (FIX-cleaned
    ``<run>_hp2000_clean.nii.gz``) or a template with ``{run}``.
t1w : bool, default True
    Place a T1w (searched in ``MNINonLinear/`` then ``T1w/``); a missing one is an
    error naming the "Structural Preprocessed" package. ``false`` places none
    (package use only: the workflow's DAG expects a T1w per subject).
participants : str, optional
    HCP's behavioural CSV (``Subject``, ``Gender``, ``Age`` as ``26-30``);
    age becomes the range's midpoint (``36+`` -> 36).
same_grid : bool, default False
    Require T1w, BOLD and a label-image atlas on one grid (HCP's T1w is
    0.7 mm and its BOLD 2 mm, so leave it off for the released data).

The TR comes from the NIfTI header (0.72 s for HCP-YA); HCP ships no sidecar.
``Movement_Regressors.txt`` holds 12 columns (6 rigid-body parameters, mm and
degrees, then their derivatives), written as confounds with fMRIPrep's names.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.data.nifti import check_same_grid
from modalmerge.data.sources import _common, bids, validate
from modalmerge.data.sources._common import Source, SubjectFiles
from modalmerge.io import InputError, require_file

KEYS = {"task", "run", "participants", "same_grid", "variant", "t1w"}
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
MOVEMENT_COLUMNS = MOTION + [f"{c}_derivative1" for c in MOTION]


def _task(params: dict) -> str:
    return str(params.get("task", "rest"))


def _on_disk(params: dict) -> list[str]:
    path = _common.dataset_path(params)
    wanted = _common.subject_filter(params)
    found = sorted(
        "sub-" + _common.bids_label(p.name) for p in path.iterdir() if (p / "MNINonLinear").is_dir()
    )
    return [s for s in found if wanted is None or s in wanted]


def _subject_dir(params: dict, subject: str) -> Path:
    path = _common.dataset_path(params)
    label = _common.strip_prefix(subject, "sub")
    for p in path.iterdir():
        if _common.bids_label(p.name) == label and (p / "MNINonLinear").is_dir():
            return p
    raise InputError(path / label, "HCP subject folder with MNINonLinear/ is missing")


def read_movement(path: Path, n_volumes: int) -> pd.DataFrame:
    """``Movement_Regressors.txt`` as a (T, 12) table, or (T, 6) for the short form."""
    require_file(path, "movement regressors")
    try:
        values = np.loadtxt(path, ndmin=2)
    except ValueError as err:
        raise InputError(path, f"movement regressors are not numeric ({err})") from None
    if values.size == 0:
        raise InputError(path, "confounds table is empty")
    if values.shape[1] not in (6, 12):
        raise InputError(path, f"expected 6 or 12 columns, found {values.shape[1]}")
    table = pd.DataFrame(values, columns=MOVEMENT_COLUMNS[: values.shape[1]])
    return validate.check_confounds(path, table, n_volumes)


#: ``variant`` -> the BOLD file name in the run folder.
VARIANTS = {"minimal": "{run}.nii.gz", "hp2000_clean": "{run}_hp2000_clean.nii.gz"}
#: T1w images searched in order (MNI first: the BOLD is in MNINonLinear/).
T1W = ("MNINonLinear/T1w_restore_brain.nii.gz", "MNINonLinear/T1w_restore.nii.gz",
       "T1w/T1w_acpc_dc_restore_brain.nii.gz", "T1w/T1w_acpc_dc_restore.nii.gz")  # fmt: skip


def choose_run(results: Path, params: dict, task: str) -> Path:
    """The run folder: ``run`` as the folder name or its tail (``REST1_LR``); several is an error."""
    prefix = "rfMRI_REST" if task.lower() == "rest" else f"tfMRI_{task.upper()}"
    runs = sorted(p for p in results.glob(f"{prefix}*") if p.is_dir())
    want = str(params.get("run") or "")
    if want:
        runs = [p for p in runs if p.name == want or p.name.endswith(want)]
    if not runs:
        raise InputError(results, f"no {prefix}* run folder matches run={want or None}")
    if len(runs) > 1:
        names = ", ".join(p.name.split("_", 1)[1] for p in runs)
        said = f"run={want!r}" if want else "no run set"
        raise InputError(
            results, f"{len(runs)} runs match ({said}): set dataset.params.run to one of {names}"
        )
    return runs[0]


def package(run: str, variant: str) -> str:
    """The HCP download package that holds ``run``'s BOLD (named in errors)."""
    match = re.match(r"rfMRI_REST(\d)", run)
    if match:
        base = f"Resting State fMRI {match[1]}"
    else:
        base = run.split("_")[1].title() + " Task fMRI"
    return f"{base} FIX-Denoised (Extended)" if "clean" in variant else f"{base} Preprocessed"


def choose_bold(run: Path, params: dict) -> Path:
    """The run's BOLD by ``variant`` (``minimal``, ``hp2000_clean`` or a template with ``{run}``)."""
    variant = str(params.get("variant", "minimal"))
    template = VARIANTS.get(variant, variant)
    if "{run}" not in template:
        raise ValueError(f"dataset.params.variant must be one of {sorted(VARIANTS)} or a file name "
                         f"template with {{run}} (e.g. '{{run}}_hp2000_clean.nii.gz'), not {variant!r}")  # fmt: skip
    bold = run / template.format(run=run.name)
    if bold.name.endswith(".dtseries.nii") or (
        not bold.exists() and list(run.glob("*.dtseries.nii"))
    ):
        raise InputError(bold, "CIFTI (.dtseries.nii) is not supported: download the volumetric "
                         f"NIfTI run (HCP package '{package(run.name, variant)}') and use it")  # fmt: skip
    if not bold.exists():
        there = sorted(p.name for p in run.glob("*.nii.gz"))
        raise InputError(bold, f"BOLD run is missing (variant {variant!r}; the folder holds "
                         f"{there or 'no .nii.gz'}): download HCP's '{package(run.name, variant)}' "
                         "package or set dataset.params.variant")  # fmt: skip
    return bold


def choose_t1w(sub_dir: Path) -> Path:
    """The first of :data:`T1W` present; missing, the error names the package to download."""
    for name in T1W:
        if (sub_dir / name).exists():
            return sub_dir / name
    raise InputError(sub_dir / T1W[0], "T1w image is missing (searched " + ", ".join(T1W) + "): "
                     "download HCP's 'Structural Preprocessed' package for this subject, or set "
                     "dataset.params.t1w: false")  # fmt: skip


def _collect(params: dict, subject: str) -> SubjectFiles:
    sub_dir = _subject_dir(params, subject)
    task = _task(params)
    run = choose_run(sub_dir / "MNINonLinear" / "Results", params, task)
    bold = choose_bold(run, params)
    bold_img = validate.load_header(bold, "BOLD run")
    validate.require_ndim(bold, bold_img, 4, "BOLD run")
    tr = validate.check_tr(bold, bold_img, None, None)
    anat = {}
    if params.get("t1w", True):
        t1 = choose_t1w(sub_dir)
        t1_img = validate.load_header(t1, "T1w image")
        validate.require_ndim(t1, t1_img, 3, "T1w image")
        anat["T1w"] = t1
        if params.get("same_grid", False):
            check_same_grid(t1_img, bold_img, t1, "T1w image", f"the grid of {bold.name}", "")
    if params.get("same_grid", False):
        bids.atlas_grid_check(params, bold, bold_img)
    confounds = read_movement(run / "Movement_Regressors.txt", bold_img.shape[3])
    files = SubjectFiles(subject, anat=anat, bold=bold, confounds=confounds)
    files.reads = [run / "Movement_Regressors.txt"]
    files.bold_json = {
        "RepetitionTime": tr,
        "TaskName": task,
        "SpatialReference": "MNI152NLin6Asym",
        "Sources": [str(bold)] + [str(p) for p in anat.values()],
    }
    return files


def age_midpoint(value) -> float:
    """HCP's age bins (``22-25``, ``36+``) as a number of years."""
    if pd.isna(value):
        return np.nan
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", str(value))]
    return float(np.mean(numbers)) if numbers else np.nan


def _participants(params: dict) -> pd.DataFrame | None:
    if not params.get("participants"):
        return None
    csv = require_file(Path(params["participants"]).expanduser(), "participants CSV")
    raw = pd.read_csv(csv)
    if "Subject" not in raw:
        raise InputError(csv, "has no Subject column")
    table = pd.DataFrame(
        {"participant_id": ["sub-" + _common.bids_label(str(s)) for s in raw["Subject"]]}
    )
    table["age"] = raw["Age"].map(age_midpoint) if "Age" in raw else np.nan
    table["sex"] = raw["Gender"] if "Gender" in raw else pd.NA
    table["group"] = pd.NA
    table.attrs["source"] = str(csv)
    return table


SOURCE = Source(
    kind="hcp",
    keys=KEYS,
    on_disk=_on_disk,
    participants=_participants,
    collect=_collect,
    task=_task,
    complete_table=False,
    writes_confounds=True,  # the movement regressors beside every BOLD run (workflow input)
)


# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
