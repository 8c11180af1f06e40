"""Each real-data source maps its exact layout onto the raw/ contract (tiny generated fixtures)."""

from __future__ import annotations

import inspect
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from _sources_fixtures import (
    N_VOLUMES,
    TR,
    make_adni,
    make_bids,
    make_brats,
    make_fmriprep,
    make_hcp,
    tiny_atlas,
)

from modalmerge.data.sources import SOURCES, get_source


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def run_source(kind, params, root):
    source = get_source(kind)
    subjects = source.subject_ids(params)
    source.write_cohort(params, root)
    for subject in subjects:
        source.write_subject(params, subject, root)
    return subjects


def test_registry_selects_the_source_by_kind_and_rejects_unknown():
    from modalmerge.data.sources._common import Source

    assert set(SOURCES) == {"synthetic", "bids", "fmriprep", "hcp", "brats", "adni",
                            "brainspace", "brainspace_group"}  # fmt: skip
    for kind in SOURCES:
        source = get_source(kind)
        assert isinstance(source, Source) and source.kind == kind
        assert all(
            callable(getattr(source, f)) for f in ("subject_ids", "write_cohort", "write_subject")
        )
    with pytest.raises(ValueError, match="not one of"):
        get_source("nope")


def test_bids_writes_contract_layout_with_symlinks_events_and_atlas(tmp_path):
    params = {
        "path": str(make_bids(tmp_path / "ds")),
        "task": "rest",
        "atlas": tiny_atlas(tmp_path),
    }
    out = tmp_path / "out"
    assert run_source("bids", params, out) == ["sub-01", "sub-02"]
    raw = out / "raw"
    bold = raw / "sub-01/func/sub-01_task-rest_bold.nii.gz"
    assert bold.is_symlink() and nib.load(bold).shape == (4, 5, 4, N_VOLUMES)
    assert (raw / "sub-01/anat/sub-01_T1w.nii.gz").exists()
    assert (
        json.loads((raw / "sub-01/func/sub-01_task-rest_bold.json").read_text())["RepetitionTime"]
        == TR
    )
    table = pd.read_csv(raw / "participants.tsv", sep="\t")
    assert list(table.columns[:4]) == ["participant_id", "age", "sex", "group"]
    assert table["age"].tolist() == [30, 40]
    assert (raw / "task-rest_events.tsv").exists()
    assert json.loads((raw / "dataset_description.json").read_text())["DatasetType"] == "raw"
    labels = pd.read_csv(out / "atlas/labels.tsv", sep="\t")
    assert (
        list(labels.columns[:5]) == ["index", "name", "x", "y", "z"] and labels["x"].notna().all()
    )
    assert not list(out.rglob(".tmp-*"))


def test_bids_copy_mode_places_real_files(tmp_path):
    params = {
        "path": str(make_bids(tmp_path / "ds")),
        "task": "rest",
        "place": "copy",
        "atlas": tiny_atlas(tmp_path),
    }
    run_source("bids", params, tmp_path / "out")
    bold = tmp_path / "out/raw/sub-02/func/sub-02_task-rest_bold.nii.gz"
    assert bold.is_file() and not bold.is_symlink()


def test_bids_session_filter_picks_that_session_and_ambiguity_is_an_error(tmp_path):
    ds = make_bids(tmp_path / "ds", sessions=("1", "2"))
    params = {"path": str(ds), "task": "rest", "sessions": ["ses-2"], "atlas": tiny_atlas(tmp_path)}
    run_source("bids", params, tmp_path / "out")
    sidecar = json.loads((tmp_path / "out/raw/sub-01/func/sub-01_task-rest_bold.json").read_text())
    assert "ses-2" in sidecar["Sources"][0]
    source = get_source("bids")
    with pytest.raises(
        ValueError,
        match=r"2 BOLD run files match .*differ in ses \(1, 2\): set dataset.params.sessions",
    ):
        source.write_subject({**params, "sessions": None}, "sub-01", tmp_path / "out2")


def test_bids_subject_and_task_filters(tmp_path):
    ds = make_bids(tmp_path / "ds", subjects=("01", "02", "03"))
    source = get_source("bids")
    assert source.subject_ids({"path": str(ds), "task": "rest", "subjects": ["02", "sub-03"]}) == [
        "sub-02",
        "sub-03",
    ]
    with pytest.raises(ValueError, match="no BOLD run matches"):
        source.write_subject({"path": str(ds), "task": "nback"}, "sub-01", tmp_path / "out")
    with pytest.raises(ValueError, match="task is required"):
        source.write_subject({"path": str(ds)}, "sub-01", tmp_path / "out")


def test_unknown_parameter_is_rejected_at_once(tmp_path):
    ds = make_bids(tmp_path / "ds")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sesions'\]"):
        get_source("bids").subject_ids({"path": str(ds), "task": "rest", "sesions": ["1"]})


def test_fmriprep_places_mni_bold_mask_and_strategy_confounds(tmp_path):
    params = {
        "path": str(make_fmriprep(tmp_path / "deriv")),
        "task": "rest",
        "atlas": tiny_atlas(tmp_path),
    }
    run_source("fmriprep", params, tmp_path / "out")
    func = tmp_path / "out/raw/sub-01/func"
    confounds = pd.read_csv(func / "sub-01_task-rest_desc-confounds_timeseries.tsv", sep="\t")
    assert (
        confounds.shape[0] == N_VOLUMES
        and "trans_x" in confounds
        and "global_signal" not in confounds
    )
    assert np.isfinite(confounds.to_numpy()).all()  # nilearn fills the first derivative row
    assert (func / "sub-01_task-rest_desc-brain_mask.nii.gz").exists()
    sidecar = json.loads((func / "sub-01_task-rest_bold.json").read_text())
    assert sidecar["SpatialReference"] == "MNI152NLin2009cAsym" and "SampleMask" not in sidecar


def test_fmriprep_confound_list_strategy_selects_those_columns(tmp_path):
    params = {
        "path": str(make_fmriprep(tmp_path / "deriv", subjects=("01",))),
        "task": "rest",
        "atlas": tiny_atlas(tmp_path),
        "confounds": {"strategy": ["motion", "wm_csf"], "motion": "basic", "wm_csf": "basic"},
    }
    run_source("fmriprep", params, tmp_path / "out")
    table = pd.read_csv(
        tmp_path / "out/raw/sub-01/func/sub-01_task-rest_desc-confounds_timeseries.tsv", sep="\t"
    )
    assert sorted(table.columns) == sorted(
        ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "white_matter", "csf"]
    )


def test_hcp_maps_mninonlinear_run_movement_and_behavioural_csv(tmp_path):
    ds = make_hcp(tmp_path / "hcp")
    params = {
        "path": str(ds),
        "run": "REST1_LR",
        "participants": str(ds / "behavioral.csv"),
        "atlas": tiny_atlas(tmp_path),
    }
    assert run_source("hcp", params, tmp_path / "out") == ["sub-100307", "sub-100408"]
    func = tmp_path / "out/raw/sub-100307/func"
    assert json.loads((func / "sub-100307_task-rest_bold.json").read_text())[
        "RepetitionTime"
    ] == pytest.approx(0.72)
    moves = pd.read_csv(func / "sub-100307_task-rest_desc-confounds_timeseries.tsv", sep="\t")
    assert moves.shape == (N_VOLUMES, 12) and moves.columns[0] == "trans_x"
    table = pd.read_csv(tmp_path / "out/raw/participants.tsv", sep="\t")
    assert table["age"].tolist() == [23.5, 36.0] and table["sex"].tolist() == ["F", "M"]


def test_brats_writes_four_contrasts_and_segmentation_without_bold(tmp_path):
    ds = make_brats(tmp_path / "brats")
    out = tmp_path / "out"
    assert run_source("brats", {"path": str(ds)}, out) == [
        "sub-BraTS20Training001",
        "sub-BraTS20Training002",
    ]
    anat = out / "raw/sub-BraTS20Training001/anat"
    names = sorted(p.name.removeprefix("sub-BraTS20Training001_") for p in anat.iterdir())
    assert names == [
        "FLAIR.nii.gz",
        "T1w.nii.gz",
        "T2w.nii.gz",
        "ce-gd_T1w.nii.gz",
        "dseg.nii.gz",
        "dseg.tsv",
    ]
    assert not (out / "raw/sub-BraTS20Training001/func").exists() and not (out / "atlas").exists()
    assert set(np.unique(nib.load(anat / "sub-BraTS20Training001_dseg.nii.gz").get_fdata())) == {
        0,
        1,
        2,
        4,
    }


def test_adni_maps_visit_image_and_clinical_columns_to_participants(tmp_path):
    ds = make_adni(tmp_path / "adni")
    params = {"path": str(ds), "visit": "m12", "atlas": tiny_atlas(tmp_path)}
    assert run_source("adni", params, tmp_path / "out") == ["sub-002S0295", "sub-011S0002"]
    t1 = tmp_path / "out/raw/sub-002S0295/anat/sub-002S0295_T1w.nii.gz"
    assert nib.load(t1).shape == (4, 5, 4)  # .nii recompressed to the contract's .nii.gz
    table = pd.read_csv(tmp_path / "out/raw/participants.tsv", sep="\t")
    assert table.loc[0, ["age", "sex", "group", "MMSE"]].tolist() == [71.0, "M", "CN", 28.0]
    assert list(table.columns) == [
        "participant_id",
        "age",
        "sex",
        "group",
        "MMSE",
        "CDRSB",
        "ADAS13",
        "PTEDUCAT",
        "APOE4",
    ]


def test_adni_missing_tabular_column_names_the_csv(tmp_path):
    ds = make_adni(tmp_path / "adni")
    with pytest.raises(ValueError, match=r"ADNIMERGE.csv: has no tabular column\(s\) \['ABETA'\]"):
        get_source("adni").subject_ids({"path": str(ds), "tabular": ["ABETA"]})


def test_the_workflow_expects_bold_texts_and_confounds_only_from_sources_that_write_them():
    from modalmerge.stages.acquire import source_sample_unit, source_writes

    assert source_writes({"kind": "synthetic"}) == {"bold": True, "text": True, "confounds": False}
    for kind, bold, confounds in (
        ("bids", True, False),
        ("fmriprep", True, True),
        ("hcp", True, True),
        ("brainspace", True, True),
        ("adni", False, False),
        ("brats", False, False),
    ):
        expected = {"bold": bold, "text": False, "confounds": confounds}
        assert source_writes({"kind": kind}) == expected, kind
    assert source_sample_unit({"kind": "brainspace_group"}) == "region"
    assert source_sample_unit({"kind": "adni"}) == source_sample_unit({"kind": "synthetic"})


def test_capabilities_are_declared_once_on_the_source():
    """The workflow's questions are answered by Source attributes alone: no module
    constants, no branch on the kind (issue #10)."""
    from modalmerge.data.sources import _common
    from modalmerge.stages import acquire

    assert get_source("brats").extra_anatomy == ("ce-gd_T1w", "T2w", "FLAIR", "dseg")
    assert acquire.source_anatomy({"kind": "brats"}) == (
        ["ce-gd_T1w", "T2w", "FLAIR", "dseg"],
        ["dseg"],
    )
    assert acquire.source_anatomy({"kind": "synthetic"}) == ([], [])
    assert acquire.source_task({"kind": "synthetic", "params": {}}) == "motor"  # its paradigm
    assert acquire.source_task({"kind": "brainspace", "params": {"tr": 1.0}}) == "rest"
    assert acquire.source_task({"kind": "hcp", "params": {"task": "MOTOR"}}) == "MOTOR"
    assert acquire.source_task({"kind": "adni", "params": {}}) == "rest"
    assert acquire.source_subject_ids({"kind": "synthetic", "params": {"n_subjects": 3}}) == [
        "sub-001", "sub-002", "sub-003"
    ]  # fmt: skip
    code = inspect.getsource(acquire)
    assert '== "synthetic"' not in code and "getattr" not in code
    for kind in SOURCES:
        module = __import__(SOURCES[kind], fromlist=["SOURCE"])
        for constant in ("WRITES_BOLD", "WRITES_CONFOUNDS", "EXTRA_ANATOMY", "LABEL_ANATOMY",
                         "SAMPLE_UNIT"):  # fmt: skip
            assert not hasattr(module, constant), (kind, constant)
    with pytest.raises(TypeError, match="needs on_disk"):
        _common.Source(kind="half", on_disk=lambda params: [])


def test_fmriprep_scrubbing_mask_reaches_signal_clean(tmp_path):
    """A scrubbing strategy's sample mask travels from the source (raw sidecar
    ``SampleMask``) to preprocess, which drops the censored volume and names it."""
    from modalmerge.data.preprocess import preprocess_subject

    ds = make_fmriprep(tmp_path / "deriv", subjects=("01",))
    conf = next(ds.rglob("*desc-confounds_timeseries.tsv"))
    table = pd.read_csv(conf, sep="\t")
    table["framewise_displacement"] = 0.05
    table.loc[6, "framewise_displacement"] = 3.0  # one high-motion volume
    table["std_dvars"] = 1.0
    table.to_csv(conf, sep="\t", index=False, na_rep="n/a")
    params = {
        "path": str(ds),
        "task": "rest",
        "atlas": tiny_atlas(tmp_path),
        "confounds": {"strategy": "scrubbing", "fd_threshold": 0.5, "scrub": 0},
    }
    run_source("fmriprep", params, tmp_path / "out")
    raw = tmp_path / "out/raw/sub-01"
    sidecar = json.loads((raw / "func/sub-01_task-rest_bold.json").read_text())
    assert sidecar["SampleMask"] == [i for i in range(N_VOLUMES) if i != 6]
    out = tmp_path / "preproc"
    preprocess_subject(
        next((raw / "anat").glob("*_T1w.nii.gz")),
        raw / "func/sub-01_task-rest_bold.nii.gz",
        tmp_path / "out/atlas/atlas.nii.gz",
        out / "t1.nii.gz",
        out / "bold.nii.gz",
        {"high_pass": None, "low_pass": None},
        confounds_path=raw / "func/sub-01_task-rest_desc-confounds_timeseries.tsv",
    )
    assert nib.load(out / "bold.nii.gz").shape[3] == N_VOLUMES - 1
    assert json.loads((out / "bold.json").read_text())["CensoredVolumes"] == [6]
