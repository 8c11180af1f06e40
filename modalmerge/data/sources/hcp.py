"""HCP minimal-preprocessed data (MNINonLinear), one fMRI run per subject.

Layout read::

    <path>/<id>/MNINonLinear/T1w_restore_brain.nii.gz
    <path>/<id>/MNINonLinear/Results/<run>/<run>.nii.gz          (<run> e.g. rfMRI_REST1_LR)
    <path>/<id>/MNINonLinear/Results/<run>/Movement_Regressors.txt

Parameters (``dataset.params``)
-------------------------------
path : str
    The directory holding one folder per HCP subject id.
task : str, default ``"rest"``
    ``rest`` picks ``rfMRI_REST*`` runs, any other name ``tfMRI_<TASK>*``.
run : str, optional
    The run folder (``rfMRI_REST1_LR``) or its tail (``REST1_LR``, ``1_LR``);
    required when several runs match.
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

KEYS = {"task", "run", "participants", "same_grid"}
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


def _collect(params: dict, subject: str) -> SubjectFiles:
    sub_dir = _subject_dir(params, subject)
    mni = sub_dir / "MNINonLinear"
    task = _task(params)
    prefix = "rfMRI_REST" if task.lower() == "rest" else f"tfMRI_{task.upper()}"
    runs = sorted(p for p in (mni / "Results").glob(f"{prefix}*") if p.is_dir())
    if params.get("run"):
        want = str(params["run"])
        runs = [p for p in runs if p.name == want or p.name.endswith(want)]
    if not runs:
        raise InputError(
            mni / "Results", f"no {prefix}* run folder matches run={params.get('run')}"
        )
    if len(runs) > 1:
        names = ", ".join(p.name for p in runs)
        raise InputError(mni / "Results", f"{len(runs)} runs match ({names}); set run")
    run = runs[0]
    bold = run / f"{run.name}.nii.gz"
    t1 = mni / "T1w_restore_brain.nii.gz"
    t1_img = validate.load_header(t1, "T1w image")
    validate.require_ndim(t1, t1_img, 3, "T1w image")
    bold_img = validate.load_header(bold, "BOLD run")
    validate.require_ndim(bold, bold_img, 4, "BOLD run")
    tr = validate.check_tr(bold, bold_img, None, None)
    if params.get("same_grid", False):
        check_same_grid(t1_img, bold_img, t1, "T1w image", f"the grid of {bold.name}", "")
        bids.atlas_grid_check(params, bold, bold_img)
    confounds = read_movement(run / "Movement_Regressors.txt", bold_img.shape[3])
    files = SubjectFiles(subject, anat={"T1w": t1}, bold=bold, confounds=confounds)
    files.bold_json = {
        "RepetitionTime": tr,
        "TaskName": task,
        "SpatialReference": "MNI152NLin6Asym",
        "Sources": [str(bold)],
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
