"""Fixtures shaped like real downloads (issue #16): the names, depths and extensions
of published trees (OpenNeuro, fMRIPrep 20.x-23.x, HCP, BraTS 2020-2024, ADNI IDA
and Clinica), with tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from _sources_fixtures import N_VOLUMES, SHAPE, TR, nifti


def sidecar(image: Path, **meta) -> None:
    """``<stem>.json`` beside ``image`` (``.nii`` or ``.nii.gz``)."""
    stem = image.name.removesuffix(".gz").removesuffix(".nii")
    image.with_name(stem + ".json").write_text(json.dumps(meta))


def make_openneuro(root: Path, subjects=("01", "02"), bold=("task-rest_bold",), t1w=("T1w",),
                   ext=".nii.gz", listed=(), header_tr=TR, ses=None) -> Path:  # fmt: skip
    """An OpenNeuro dataset: each subject gets every ``bold`` name (the part after
    ``sub-X_``; an ``echo-N`` name gets its ``EchoTime``) and every ``t1w`` name;
    ``listed`` are extra participants.tsv rows with no folder (a partial download)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "ds", "BIDSVersion": "1.8.0"})
    )
    ids = [f"sub-{s}" for s in list(subjects) + list(listed)]
    pd.DataFrame({"participant_id": ids, "age": range(20, 20 + len(ids))}).to_csv(
        root / "participants.tsv", sep="\t", index=False
    )
    for i, sub in enumerate(subjects):
        base = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "")
        pre = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
        for j, name in enumerate(t1w):
            nifti(base / "anat" / f"{pre}_{name}{ext}", seed=i + 7 * j)
        for j, name in enumerate(bold):
            image = nifti(base / "func" / f"{pre}_{name}{ext}", SHAPE + (N_VOLUMES,),
                          tr=header_tr, seed=10 + i + 3 * j)  # fmt: skip
            meta = {"RepetitionTime": TR}
            if "_echo-" in name:
                meta["EchoTime"] = 0.012 * int(name.split("_echo-")[1].split("_")[0])
            sidecar(image, **meta)
    return root


def make_fmriprep_tree(root: Path, subjects=("01",), bold=("task-rest_space-MNI152NLin2009cAsym",),
                       anat=("space-MNI152NLin2009cAsym_desc-preproc_T1w",),
                       confounds="timeseries", legacy=False) -> Path:  # fmt: skip
    """fMRIPrep derivatives: for each ``bold`` prefix (after ``sub-X_``) the
    ``_desc-preproc_bold.nii.gz`` (+ json) and ``_desc-brain_mask.nii.gz``; one
    ``_desc-confounds_<confounds>.tsv`` per run (``regressors`` before 20.2);
    ``legacy`` puts the subjects under ``<root>/fmriprep/`` (20.2's default)."""
    import re

    import numpy as np
    from _sources_fixtures import confounds_table

    out = root / "fmriprep" if legacy else root
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset_description.json").write_text(
        json.dumps({"Name": "fMRIPrep", "DatasetType": "derivative"})
    )
    for i, sub in enumerate(subjects):
        s = out / f"sub-{sub}"
        for name in anat:
            nifti(s / "anat" / f"sub-{sub}_{name}.nii.gz", seed=i)
        for j, prefix in enumerate(bold):
            stem = s / "func" / f"sub-{sub}_{prefix}"
            image = nifti(
                Path(f"{stem}_desc-preproc_bold.nii.gz"),
                SHAPE + (N_VOLUMES,),
                tr=TR,
                seed=10 + i + j,
            )
            sidecar(image, RepetitionTime=TR)
            nifti(Path(f"{stem}_desc-brain_mask.nii.gz"), data=np.ones(SHAPE, np.uint8))
            run = re.sub(r"_(space|res|den)-[A-Za-z0-9]+", "", prefix)
            conf = s / "func" / f"sub-{sub}_{run}_desc-confounds_{confounds}.tsv"
            confounds_table(seed=i).to_csv(conf, sep="\t", index=False, na_rep="n/a")
            conf.with_suffix(".json").write_text("{}")
    return root


HCP_RUNS = ("rfMRI_REST1_LR", "rfMRI_REST1_RL", "rfMRI_REST2_LR", "rfMRI_REST2_RL")


def make_hcp_tree(root: Path, ids=("100307",), runs=HCP_RUNS, minimal=True, fix=True, cifti=True,
                  t1w=("MNINonLinear/T1w_restore_brain.nii.gz", "T1w/T1w_acpc_dc_restore_brain.nii.gz")
                  ) -> Path:  # fmt: skip
    """HCP-YA as its packages unzip: per run folder the minimal ``<run>.nii.gz``, the
    FIX ``<run>_hp2000_clean.nii.gz``, the CIFTI ``<run>_Atlas_MSMAll.dtseries.nii``,
    ``Movement_Regressors.txt`` (+ ``_dt``); the structural images in ``t1w``."""
    import numpy as np

    for i, sid in enumerate(ids):
        for name in t1w:
            nifti(root / sid / name, seed=i)
        for j, run in enumerate(runs):
            folder = root / sid / "MNINonLinear" / "Results" / run
            if minimal:
                nifti(folder / f"{run}.nii.gz", SHAPE + (N_VOLUMES,), tr=0.72, seed=10 + j)
            if fix:
                nifti(
                    folder / f"{run}_hp2000_clean.nii.gz",
                    SHAPE + (N_VOLUMES,),
                    tr=0.72,
                    seed=20 + j,
                )
            if cifti:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{run}_Atlas_MSMAll.dtseries.nii").write_bytes(b"\0" * 352)
            moves = np.random.default_rng(j).normal(size=(N_VOLUMES, 12))
            np.savetxt(folder / "Movement_Regressors.txt", moves, fmt="%.6f")
            np.savetxt(folder / "Movement_Regressors_dt.txt", moves, fmt="%.6f")
    return root


def make_brats_tree(root: Path, cases, naming="brats2020", ext=".nii", seg=True, odd_seg=(),
                    seg_labels=(1, 2, 4)) -> Path:  # fmt: skip
    """BraTS cases as released: 2020 ``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii`` (the
    mirrors' ``.nii``), 2023/2024 ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``;
    ``odd_seg`` cases keep case 355's ``W39_1998.09.19_Segm.nii``; ``seg=False`` is a
    validation set."""
    import numpy as np

    sep, tags = (
        ("_", ("t1", "t1ce", "t2", "flair"))
        if naming == "brats2020"
        else ("-", ("t1n", "t1c", "t2w", "t2f"))
    )
    for i, case in enumerate(cases):
        for j, tag in enumerate(tags):
            nifti(root / case / f"{case}{sep}{tag}{ext}", seed=10 * i + j)
        if seg:
            data = np.zeros(SHAPE, np.uint8)
            for k, label in enumerate(seg_labels):
                data[1 + k % 2, 1 + k, 1] = label
            name = "W39_1998.09.19_Segm.nii" if case in odd_seg else f"{case}{sep}seg{ext}"
            nifti(root / case / name, data=data)
    return root


def brats2020_tables(root: Path, cases, survival=None) -> tuple[Path, Path]:
    """``name_mapping.csv`` (``Grade`` first, as released) and ``survival_info.csv``
    (``Brats20ID``, ``Age``; only the ``survival`` cases, as 236 of 369 in 2020)."""
    mapping = pd.DataFrame({
        "Grade": ["HGG", "LGG"] * (len(cases) // 2) + ["HGG"] * (len(cases) % 2),
        "BraTS_2017_subject_ID": [f"Brats17_TCIA_{i}_1" for i in range(len(cases))],
        "BraTS_2018_subject_ID": [f"Brats18_TCIA_{i}_1" for i in range(len(cases))],
        "TCGA_TCIA_subject_ID": [f"TCGA-02-{i:04d}" for i in range(len(cases))],
        "BraTS_2019_subject_ID": [f"BraTS19_TCIA_{i}_1" for i in range(len(cases))],
        "BraTS_2020_subject_ID": list(cases),
    })  # fmt: skip
    mapping.to_csv(root / "name_mapping.csv", index=False)
    kept = list(cases if survival is None else survival)
    pd.DataFrame({"Brats20ID": kept, "Age": [60.5 + i for i in range(len(kept))],
                  "Survival_days": [300] * len(kept), "Extent_of_Resection": ["GTR"] * len(kept)}
                 ).to_csv(root / "survival_info.csv", index=False)  # fmt: skip
    return root / "name_mapping.csv", root / "survival_info.csv"


#: (PTID, VISCODE, EXAMDATE, scan folder, image id of the N3 series, of the raw MPRAGE)
ADNI_VISITS = (
    ("002_S_0295", "bl", "2006-11-02", "2006-11-02_08_16_44.0", 40966, 40965),
    ("002_S_0295", "m12", "2007-11-12", "2007-11-14_09_02_11.0", 79122, 79121),
    ("011_S_0002", "bl", "2005-09-08", "2005-09-08_10_03_17.0", 7025, 7024),
    ("011_S_0002", "m12", "2006-09-28", "2006-10-02_11_50_01.0", 35475, 35474),
)


def adnimerge(root: Path, name="ADNIMERGE_14Dec2023.csv") -> Path:
    """A dated ADNIMERGE: one row per visit; ``IMAGEUID`` names the N3-scaled image."""
    rows = [{"RID": 295 if p == "002_S_0295" else 2, "PTID": p, "VISCODE": v, "EXAMDATE": d,
             "IMAGEUID": n3, "AGE": 70.0, "Years_bl": 0.0 if v == "bl" else 1.0,
             "PTGENDER": "Male", "DX": "CN", "MMSE": 29}
            for p, v, d, _, n3, _ in ADNI_VISITS]  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / name, index=False)
    return root / name


def make_adni_ida(root: Path, dicom=False) -> Path:
    """IDA's NIfTI download: ``ADNI/<PTID>/<series>/<date>/I<id>/ADNI_<PTID>_MR_..._I<id>.nii``,
    two series per visit (raw MPRAGE and N3-scaled); ``dicom`` writes ``.dcm`` slices instead."""
    for ptid, _, _, stamp, n3, raw in ADNI_VISITS:
        for series, uid in (("MPR__GradWarp__B1_Correction__N3__Scaled", n3), ("MPRAGE", raw)):
            folder = root / "ADNI" / ptid / series / stamp / f"I{uid}"
            name = f"ADNI_{ptid}_MR_{series}_Br_{stamp[:10].replace('-', '')}_S{uid - 100}_I{uid}"
            if dicom:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{name}_1.dcm").write_bytes(b"\0" * 132 + b"DICM")
            else:
                nifti(folder / f"{name}.nii", seed=uid % 7)
    adnimerge(root)
    return root


def make_adni_clinica(root: Path) -> Path:
    """Clinica's ``adni-to-bids``: ``sub-ADNI<site>S<id>/ses-M<months>/anat/..._T1w.nii.gz``."""
    for ptid, visit, *_ in ADNI_VISITS:
        sub = "sub-ADNI" + ptid.replace("_", "")
        ses = "ses-M000" if visit == "bl" else f"ses-M{int(visit[1:]):03d}"
        nifti(root / sub / ses / "anat" / f"{sub}_{ses}_T1w.nii.gz")
    pd.DataFrame({"participant_id": ["sub-ADNI002S0295", "sub-ADNI011S0002"]}).to_csv(
        root / "participants.tsv", sep="\t", index=False)  # fmt: skip
    adnimerge(root)
    return root
