"""HCP-YA downloads as the released packages unzip (issue #16)."""

from __future__ import annotations

import json

import pytest
from _real_layouts import make_hcp_tree
from _sources_fixtures import tiny_atlas

from modalmerge.data.sources import get_source


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def placed(tmp_path, root, **params):
    params = {"path": str(root), "run": "REST1_LR", "atlas": tiny_atlas(tmp_path), **params}
    source = get_source("hcp")
    assert source.subject_ids(params) == ["sub-100307"]
    source.write_subject(params, "sub-100307", tmp_path / "out")
    func = tmp_path / "out/raw/sub-100307/func"
    return json.loads((func / "sub-100307_task-rest_bold.json").read_text())["Sources"]


def test_minimal_and_fix_cleaned_runs_are_chosen_by_variant(tmp_path):
    root = make_hcp_tree(tmp_path / "hcp")
    assert placed(tmp_path, root)[0].endswith("rfMRI_REST1_LR/rfMRI_REST1_LR.nii.gz")
    assert placed(tmp_path, root, variant="hp2000_clean")[0].endswith(
        "rfMRI_REST1_LR_hp2000_clean.nii.gz"
    )
    assert placed(tmp_path, root, variant="{run}_hp2000_clean.nii.gz")[0].endswith(
        "_hp2000_clean.nii.gz"
    )


def test_fix_only_download_names_the_package_for_minimal(tmp_path):
    root = make_hcp_tree(tmp_path / "hcp", minimal=False, cifti=False)
    with pytest.raises(
        ValueError, match=r"BOLD run is missing .*'Resting State fMRI 1 Preprocessed'.*variant"
    ):
        placed(tmp_path, root)
    assert placed(tmp_path, root, variant="hp2000_clean")[0].endswith("_hp2000_clean.nii.gz")


def test_lr_alone_is_ambiguous_and_the_error_lists_the_runs(tmp_path):
    root = make_hcp_tree(tmp_path / "hcp")
    with pytest.raises(ValueError, match=r"2 runs match \(run='LR'\): set dataset.params.run to one of "
                       r"REST1_LR, REST2_LR"):  # fmt: skip
        placed(tmp_path, root, run="LR")


def test_t1w_is_searched_in_mninonlinear_then_t1w_and_is_optional(tmp_path):
    root = make_hcp_tree(tmp_path / "both")
    assert placed(tmp_path, root)[1].endswith("MNINonLinear/T1w_restore_brain.nii.gz")
    root = make_hcp_tree(tmp_path / "acpc", t1w=("T1w/T1w_acpc_dc_restore_brain.nii.gz",))
    assert placed(tmp_path, root)[1].endswith("T1w/T1w_acpc_dc_restore_brain.nii.gz")
    root = make_hcp_tree(tmp_path / "rest_only", t1w=())
    with pytest.raises(
        ValueError, match=r"T1w image is missing .*'Structural Preprocessed' package"
    ):
        placed(tmp_path, root)
    assert len(placed(tmp_path, root, t1w=False)) == 1
    assert not (tmp_path / "out/raw/sub-100307/anat").exists()


def test_cifti_is_stated_as_unsupported(tmp_path):
    root = make_hcp_tree(tmp_path / "hcp", minimal=False, fix=False)
    with pytest.raises(ValueError, match=r"CIFTI \(.dtseries.nii\) is not supported"):
        placed(tmp_path, root)
    with pytest.raises(ValueError, match=r"CIFTI"):
        placed(tmp_path, make_hcp_tree(tmp_path / "h2"), variant="{run}_Atlas_MSMAll.dtseries.nii")
