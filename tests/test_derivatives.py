"""BIDS-derivative labels and the derivative dataset description."""

from __future__ import annotations

import json

import pytest

from modalmerge.data import derivatives as d


def test_space_and_seg_labels_name_the_grid_and_the_atlas():
    assert d.space_label({"kind": "synthetic"}) == d.seg_label({"kind": "synthetic"}) == "synthetic"
    assert d.space_label({"kind": "fmriprep", "params": {}}) == "MNI152NLin2009cAsym"
    assert d.space_label({"kind": "fmriprep", "params": {"space": "MNI152NLin6Asym"}}) == (
        "MNI152NLin6Asym"
    )
    assert d.space_label({"kind": "brainspace", "params": {"tr": 1.0}}) == "fsaverage5"
    assert d.space_label({"kind": "bids", "params": {}}) == "MNI152"
    assert d.seg_label({"kind": "bids", "params": {}}) == "DK"
    ward = {"kind": "bids", "params": {"atlas": {"kind": "ward", "n_parcels": 100}}}
    assert d.seg_label(ward) == "ward100"
    custom = {"kind": "hcp", "params": {"atlas": {"kind": "nifti", "image": "/x/my_atlas.nii.gz"}}}
    assert d.seg_label(custom) == "myatlas"  # BIDS labels are alphanumeric


def test_relmat_stat_follows_the_connectivity_kind():
    assert d.relmat_stat("correlation") == "pearsoncorrelation"
    assert d.relmat_stat("partial correlation") == "partialcorrelation"
    with pytest.raises(ValueError, match="tangent"):
        d.relmat_stat("tangent")


def test_description_is_written_once_at_the_derivative_root(tmp_path):
    out = tmp_path / "preproc" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    d.write_dataset_description(out, "preprocess")
    path = tmp_path / "preproc" / "dataset_description.json"
    description = json.loads(path.read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "modalmerge"
    before = path.stat().st_mtime_ns
    d.write_dataset_description(out, "preprocess")  # same content: left alone
    assert path.stat().st_mtime_ns == before
    d.write_dataset_description(tmp_path / "scratch.nii.gz", "preprocess")  # no subject folder
    assert not (tmp_path / "dataset_description.json").exists()
    assert not list(tmp_path.rglob(".tmp-*"))
