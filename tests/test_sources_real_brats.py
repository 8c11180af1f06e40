"""BraTS releases as they are downloaded (issue #16)."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from _real_layouts import brats2020_tables, make_brats_tree

from modalmerge.data.sources import get_source
from modalmerge.stages.acquire import source_anatomy

CASES = ("BraTS20_Training_001", "BraTS20_Training_002", "BraTS20_Training_355")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def run(params, out):
    source = get_source("brats")
    subjects = source.subject_ids(params)
    source.write_cohort(params, out)
    for s in subjects:
        source.write_subject(params, s, out)
    return subjects


def test_2020_mirror_nii_case_355_segm_and_both_tables(tmp_path, caplog):
    root = make_brats_tree(
        tmp_path / "MICCAI_BraTS2020_TrainingData", CASES, odd_seg=("BraTS20_Training_355",)
    )
    mapping, survival = brats2020_tables(root, CASES, survival=CASES[:2])
    params = {"path": str(root), "participants": [str(mapping), str(survival)]}
    with caplog.at_level(logging.WARNING):
        assert run(params, tmp_path / "out") == ["sub-BraTS20Training001", "sub-BraTS20Training002",
                                                 "sub-BraTS20Training355"]  # fmt: skip
    assert "survival_info.csv lists 2 of 3 cases" in caplog.text
    seg = tmp_path / "out/raw/sub-BraTS20Training355/anat/sub-BraTS20Training355_dseg.nii.gz"
    assert set(np.unique(nib.load(seg).get_fdata())) == {0, 1, 2, 4}
    table = pd.read_csv(tmp_path / "out/raw/participants.tsv", sep="\t")
    assert table["group"].tolist() == ["HGG", "LGG", "HGG"]  # from name_mapping's Grade
    assert table["age"].tolist()[:2] == [60.5, 61.5] and pd.isna(table["age"][2])


def test_validation_set_without_segmentation_with_require_seg_false(tmp_path):
    cases = ("BraTS20_Validation_001", "BraTS20_Validation_002")
    root = make_brats_tree(tmp_path / "MICCAI_BraTS2020_ValidationData", cases, seg=False)
    with pytest.raises(
        ValueError, match=r"BraTS20_Validation_001_seg.nii.gz: seg image is missing"
    ):
        run({"path": str(root)}, tmp_path / "o1")
    params = {"path": str(root), "require_seg": False}
    assert len(run(params, tmp_path / "out")) == 2
    anat = tmp_path / "out/raw/sub-BraTS20Validation001/anat"
    assert sorted(p.name.split("_", 1)[1] for p in anat.iterdir()) == [
        "FLAIR.nii.gz", "T1w.nii.gz", "T2w.nii.gz", "ce-gd_T1w.nii.gz"]  # fmt: skip
    assert source_anatomy({"kind": "brats", "params": params}) == (
        ["ce-gd_T1w", "T2w", "FLAIR"],
        [],
    )


def test_2023_naming(tmp_path):
    cases = ("BraTS-GLI-00000-000", "BraTS-GLI-00002-000")
    root = make_brats_tree(tmp_path / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData", cases,
                           naming="brats2023", ext=".nii.gz", seg_labels=(1, 2, 3))  # fmt: skip
    assert run({"path": str(root), "naming": "brats2023"}, tmp_path / "out") == [
        "sub-BraTSGLI00000000", "sub-BraTSGLI00002000"]  # fmt: skip
    tsv = tmp_path / "out/raw/sub-BraTSGLI00000000/anat/sub-BraTSGLI00000000_dseg.tsv"
    assert pd.read_csv(tsv, sep="\t")["index"].tolist() == [0, 1, 2, 3]


def test_2024_resection_cavity_label_by_naming_or_labels(tmp_path):
    cases = ("BraTS-GLI-02000-000",)
    root = make_brats_tree(tmp_path / "BraTS2024-GLI", cases, naming="brats2023", ext=".nii.gz",
                           seg_labels=(1, 2, 3, 4))  # fmt: skip
    with pytest.raises(ValueError, match=r"label\(s\) \[4\].*naming: brats2024"):
        run({"path": str(root), "naming": "brats2023"}, tmp_path / "o1")
    run({"path": str(root), "naming": "brats2024"}, tmp_path / "out")
    tsv = tmp_path / "out/raw/sub-BraTSGLI02000000/anat/sub-BraTSGLI02000000_dseg.tsv"
    assert pd.read_csv(tsv, sep="\t")["name"].tolist()[-1] == "resection_cavity"
    labels = {1: "netc", 2: "snfh", 3: "et", 4: "rc"}
    run({"path": str(root), "naming": "brats2023", "labels": labels}, tmp_path / "o2")
