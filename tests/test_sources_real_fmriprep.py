"""fMRIPrep derivatives as versions 20.x-24.x write them (issue #16)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _real_layouts import make_fmriprep_tree, sidecar
from _sources_fixtures import N_VOLUMES, SHAPE, TR, nifti, tiny_atlas

from modalmerge.data.sources import get_source

MNI = "MNI152NLin2009cAsym"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def placed(tmp_path, root, **params):
    """Plan and write sub-01; return the placed BOLD sidecar."""
    params = {"path": str(root), "task": "rest", "atlas": tiny_atlas(tmp_path), **params}
    source = get_source("fmriprep")
    assert source.subject_ids(params) == ["sub-01"]
    source.write_subject(params, "sub-01", tmp_path / "out")
    func = tmp_path / "out/raw/sub-01/func"
    assert (func / "sub-01_task-rest_desc-confounds_timeseries.tsv").is_file()
    return json.loads((func / "sub-01_task-rest_bold.json").read_text())


def test_legacy_fmriprep_subfolder_with_regressors_tsv(tmp_path):
    root = make_fmriprep_tree(tmp_path / "out", confounds="regressors", legacy=True)
    meta = placed(tmp_path, root)
    assert "/fmriprep/sub-01/" in meta["Sources"][0]
    assert meta["Sources"][1].endswith("_desc-confounds_regressors.tsv")


def test_two_resolutions_are_chosen_by_res(tmp_path):
    root = make_fmriprep_tree(
        tmp_path / "d",
        bold=[f"task-rest_space-{MNI}_res-1", f"task-rest_space-{MNI}_res-2"],
        anat=[f"space-{MNI}_res-1_desc-preproc_T1w", f"space-{MNI}_res-2_desc-preproc_T1w"],
    )
    with pytest.raises(
        ValueError, match=r"differ in res \(1, 2\): set dataset.params.entities.res"
    ):
        placed(tmp_path, root)
    assert "_res-2_desc-preproc_bold" in placed(tmp_path, root, entities={"res": 2})["Sources"][0]
    t1 = tmp_path / "out/raw/sub-01/anat/sub-01_T1w.nii.gz"
    assert "_res-2_desc-preproc_T1w" in str(t1.resolve())  # the T1w at the BOLD's resolution


def test_phase_encoding_runs_are_chosen_by_dir(tmp_path):
    root = make_fmriprep_tree(
        tmp_path / "d", bold=[f"task-rest_dir-AP_space-{MNI}", f"task-rest_dir-PA_space-{MNI}"]
    )
    with pytest.raises(ValueError, match=r"differ in dir \(AP, PA\)"):
        placed(tmp_path, root)
    meta = placed(tmp_path, root, entities={"dir": "AP"})
    assert "_dir-AP_" in meta["Sources"][0] and "_dir-AP_desc-confounds" in meta["Sources"][1]


def test_space_t1w_takes_the_anatomy_without_a_space_entity(tmp_path):
    root = make_fmriprep_tree(
        tmp_path / "d", bold=["task-rest_space-T1w"], anat=["desc-preproc_T1w"]
    )
    meta = placed(tmp_path, root, space="T1w")
    assert meta["SpatialReference"] == "T1w"
    assert (
        tmp_path / "out/raw/sub-01/anat/sub-01_T1w.nii.gz"
    ).resolve().name == "sub-01_desc-preproc_T1w.nii.gz"


def test_cifti_only_is_stated_as_unsupported(tmp_path):
    root = make_fmriprep_tree(tmp_path / "d", bold=[])
    func = root / "sub-01/func"
    func.mkdir(parents=True)
    (func / "sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.nii").write_bytes(b"\0" * 352)
    params = {"path": str(root), "task": "rest", "atlas": tiny_atlas(tmp_path)}
    for space in (MNI, "fsLR"):
        with pytest.raises(
            ValueError, match=r"dtseries.nii: CIFTI/surface BOLD .* is not supported"
        ):
            get_source("fmriprep").write_subject(
                {**params, "space": space}, "sub-01", tmp_path / "o"
            )


def test_ica_aroma_selects_the_aroma_image_or_says_it_was_removed(tmp_path):
    nl6 = "MNI152NLin6Asym"
    root = make_fmriprep_tree(tmp_path / "d", bold=[f"task-rest_space-{nl6}_res-2"],
                              anat=[f"space-{nl6}_res-2_desc-preproc_T1w"])  # fmt: skip
    params = {"space": nl6, "confounds": {"strategy": "ica_aroma"}}
    with pytest.raises(ValueError, match=r"ica_aroma needs .*smoothAROMAnonaggr.*removed in 23.1"):
        placed(tmp_path, root, **params)
    aroma = root / f"sub-01/func/sub-01_task-rest_space-{nl6}_desc-smoothAROMAnonaggr_bold.nii.gz"
    sidecar(nifti(aroma, SHAPE + (N_VOLUMES,), tr=TR, seed=3), RepetitionTime=TR)
    meta = placed(tmp_path, root, **params)
    assert "desc-smoothAROMAnonaggr_bold" in meta["Sources"][0]
    assert np.isfinite(np.loadtxt(tmp_path / "out/raw/sub-01/func/sub-01_task-rest_desc-confounds_timeseries.tsv",
                                  skiprows=1, ndmin=2)).all()  # fmt: skip


def test_subjects_without_the_run_or_absent_are_left_out_with_a_warning(tmp_path, caplog):
    import logging

    root = make_fmriprep_tree(tmp_path / "d", subjects=("01", "02", "03"))
    for path in (root / "sub-03/func").iterdir():  # fMRIPrep ran anatomy only for sub-03
        path.unlink()
    tsv = tmp_path / "participants.tsv"
    tsv.write_text("participant_id\tage\nsub-01\t20\nsub-02\t21\nsub-03\t22\nsub-04\t23\n")
    params = {
        "path": str(root),
        "task": "rest",
        "participants": str(tsv),
        "atlas": tiny_atlas(tmp_path),
    }
    with caplog.at_level(logging.WARNING):
        assert get_source("fmriprep").subject_ids(params) == ["sub-01", "sub-02"]
    assert "sub-03" in caplog.text and "sub-04" in caplog.text
