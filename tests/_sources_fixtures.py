"""Tiny on-disk datasets in each real layout (BIDS, fMRIPrep, HCP, BraTS, ADNI), built from generated data."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

SHAPE = (4, 5, 4)
N_VOLUMES = 12
TR = 2.0
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SPACE = "MNI152NLin2009cAsym"


def nifti(
    path: Path, shape=SHAPE, affine=AFFINE, tr: float | None = None, seed: int = 0, data=None
) -> Path:
    """Write a float32 image (random positive values unless ``data``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.random.default_rng(seed).uniform(1.0, 2.0, size=shape).astype(np.float32)
    img = nib.Nifti1Image(data, affine)
    if tr is not None:
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_zooms(img.header.get_zooms()[:3] + (tr,))
    nib.save(img, path)
    return path


def tiny_atlas(directory: Path) -> dict:
    """A 2-region label atlas on the fixture grid, as an ``atlas`` spec."""
    data = np.zeros(SHAPE, np.int16)
    data[:2] = 1
    data[2:] = 2
    image = directory / "tiny_atlas.nii.gz"
    nifti(image, data=data)
    labels = directory / "tiny_atlas.tsv"
    pd.DataFrame({"index": [1, 2], "name": ["left", "right"]}).to_csv(labels, sep="\t", index=False)
    return {"kind": "nifti", "image": str(image), "labels": str(labels)}


def make_bids(root: Path, subjects=("01", "02"), sessions=(None,), task="rest") -> Path:
    """A raw BIDS dataset: participants.tsv, T1w and one BOLD (+ sidecar) per subject and session."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "tiny", "BIDSVersion": "1.9.0"})
    )
    ages = [30 + 10 * i for i in range(len(subjects))]
    table = pd.DataFrame(
        {"participant_id": [f"sub-{s}" for s in subjects], "age": ages, "sex": "F"}
    )
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / f"task-{task}_events.tsv").write_text("onset\tduration\ttrial_type\n0\t4\tblock\n")
    for i, sub in enumerate(subjects):
        for ses in sessions:
            base = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "")
            stem = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
            nifti(base / "anat" / f"{stem}_T1w.nii.gz", seed=i)
            bold = nifti(
                base / "func" / f"{stem}_task-{task}_bold.nii.gz",
                SHAPE + (N_VOLUMES,),
                tr=TR,
                seed=10 + i,
            )
            bold.with_name(bold.name.replace(".nii.gz", ".json")).write_text(
                json.dumps({"RepetitionTime": TR})
            )
    return root


def confounds_table(n_volumes: int = N_VOLUMES, seed: int = 0) -> pd.DataFrame:
    """An fMRIPrep-like confounds table (motion, tissue signals, cosines, FD)."""
    rng = np.random.default_rng(seed)
    cols = {}
    for name in [
        "trans_x",
        "trans_y",
        "trans_z",
        "rot_x",
        "rot_y",
        "rot_z",
        "white_matter",
        "csf",
        "global_signal",
    ]:
        cols[name] = rng.normal(size=n_volumes)
        for tail in ("_derivative1", "_power2", "_derivative1_power2"):
            cols[name + tail] = rng.normal(size=n_volumes)
    cols["framewise_displacement"] = np.abs(rng.normal(size=n_volumes))
    cols["cosine00"] = rng.normal(size=n_volumes)
    table = pd.DataFrame(cols)
    table.loc[0, [c for c in table if "derivative" in c]] = np.nan
    table.loc[0, "framewise_displacement"] = np.nan
    return table


def make_fmriprep(root: Path, subjects=("01", "02"), task="rest", space=SPACE) -> Path:
    """fMRIPrep derivatives: MNI T1w, preproc BOLD (+ json), brain mask, confounds per subject."""
    for i, sub in enumerate(subjects):
        s = root / f"sub-{sub}"
        nifti(s / "anat" / f"sub-{sub}_space-{space}_desc-preproc_T1w.nii.gz", seed=i)
        stem = s / "func" / f"sub-{sub}_task-{task}"
        bold = nifti(
            Path(f"{stem}_space-{space}_desc-preproc_bold.nii.gz"),
            SHAPE + (N_VOLUMES,),
            tr=TR,
            seed=10 + i,
        )
        bold.with_name(bold.name.replace(".nii.gz", ".json")).write_text(
            json.dumps({"RepetitionTime": TR})
        )
        nifti(Path(f"{stem}_space-{space}_desc-brain_mask.nii.gz"), data=np.ones(SHAPE, np.uint8))
        conf = Path(f"{stem}_desc-confounds_timeseries.tsv")
        confounds_table(seed=i).to_csv(conf, sep="\t", index=False, na_rep="n/a")
        conf.with_suffix(".json").write_text("{}")
    return root


def make_hcp(root: Path, ids=("100307", "100408"), run="rfMRI_REST1_LR") -> Path:
    """HCP minimal-preprocessed: MNINonLinear T1w, one run with Movement_Regressors.txt."""
    for i, sid in enumerate(ids):
        mni = root / sid / "MNINonLinear"
        nifti(mni / "T1w_restore_brain.nii.gz", seed=i)
        nifti(mni / "Results" / run / f"{run}.nii.gz", SHAPE + (N_VOLUMES,), tr=0.72, seed=10 + i)
        moves = np.random.default_rng(i).normal(size=(N_VOLUMES, 12))
        np.savetxt(mni / "Results" / run / "Movement_Regressors.txt", moves, fmt="%.6f")
    pd.DataFrame(
        {
            "Subject": [int(s) for s in ids] + [999999],
            "Gender": (["F", "M"] * len(ids))[: len(ids)] + ["F"],
            "Age": (["22-25", "36+"] * len(ids))[: len(ids)] + ["26-30"],
        }
    ).to_csv(root / "behavioral.csv", index=False)
    return root


def make_brats(root: Path, cases=("BraTS20_Training_001", "BraTS20_Training_002")) -> Path:
    """BraTS 2020 cases: t1, t1ce, t2, flair and an integer seg on one grid."""
    for i, case in enumerate(cases):
        for j, tag in enumerate(("t1", "t1ce", "t2", "flair")):
            nifti(root / case / f"{case}_{tag}.nii.gz", seed=10 * i + j)
        seg = np.zeros(SHAPE, np.uint8)
        seg[1, 1, 1], seg[2, 2, 2], seg[1, 2, 1] = 1, 2, 4
        nifti(root / case / f"{case}_seg.nii.gz", data=seg)
    return root


def make_adni(root: Path, ptids=("002_S_0295", "011_S_0002")) -> Path:
    """ADNI-style: <PTID>/<VISCODE>/image.nii per visit plus an ADNIMERGE-like CSV."""
    rows = []
    for i, ptid in enumerate(ptids):
        for visit, years in (("bl", 0.0), ("m12", 1.0)):
            nifti(root / ptid / visit / "MPRAGE.nii", seed=i)
            rows.append(
                {
                    "RID": 295 + i,
                    "PTID": ptid,
                    "VISCODE": visit,
                    "AGE": 70.0 + i,
                    "Years_bl": years,
                    "PTGENDER": ["Male", "Female"][i % 2],
                    "DX": ["CN", "MCI"][i % 2],
                    "MMSE": 29 - i - years,
                    "CDRSB": 0.5 * i,
                    "ADAS13": 10.0 + i,
                    "PTEDUCAT": 16,
                    "APOE4": i,
                }
            )
    pd.DataFrame(rows).to_csv(root / "ADNIMERGE.csv", index=False)
    return root
