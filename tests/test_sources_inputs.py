"""What the workflow declares about a source (issue 17): the files each acquire job reads,
each subject's own params, the atlas's own params and the two cohort parts; the data
stages' memory; the shard stage's inputs file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _sources_fixtures import make_bids, make_fmriprep, make_hcp, tiny_atlas

from modalmerge.cli import main
from modalmerge.data.sources import get_source
from modalmerge.stages.resources import MEM_PER_INPUT_MB, check_stage_memory, stage_mem_mb


def test_a_bids_subject_lists_its_images_sidecars_and_events(tmp_path):
    root = make_bids(tmp_path / "bids", subjects=("01", "02"))
    (root / "sub-01" / "func" / "sub-01_task-rest_events.tsv").write_text("onset\n0\n")
    (root / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))  # inherited
    params = {"path": str(root), "task": "rest"}
    files = {
        Path(p).relative_to(root).as_posix()
        for p in get_source("bids").input_files(params, "sub-01")
    }
    assert files == {
        "sub-01/anat/sub-01_T1w.nii.gz",
        "sub-01/func/sub-01_task-rest_bold.nii.gz",
        "sub-01/func/sub-01_task-rest_bold.json",
        "sub-01/func/sub-01_task-rest_events.tsv",
        "task-rest_bold.json",
    }
    assert not any("sub-02" in f for f in files)
    table = get_source("bids").cohort_input_files(params, "table")
    assert table == sorted([str(root / "participants.tsv"), str(root / "task-rest_events.tsv")])


def test_an_fmriprep_subject_lists_its_confounds_and_mask(tmp_path):
    root = make_fmriprep(tmp_path / "fmriprep")
    params = {"path": str(root), "task": "rest"}
    names = {Path(p).name for p in get_source("fmriprep").input_files(params, "sub-01")}
    assert "sub-01_task-rest_desc-confounds_timeseries.tsv" in names
    assert any(n.endswith("desc-brain_mask.nii.gz") for n in names)
    assert any(n.endswith("desc-preproc_bold.json") for n in names)


def test_an_hcp_subject_lists_its_movement_regressors(tmp_path):
    root = make_hcp(tmp_path / "hcp")
    params = {
        "path": str(root),
        "run": "rfMRI_REST1_LR",
        "participants": str(root / "behavioral.csv"),
    }
    names = {Path(p).name for p in get_source("hcp").input_files(params, "sub-100307")}
    assert {"Movement_Regressors.txt", "rfMRI_REST1_LR.nii.gz", "T1w_restore_brain.nii.gz"} <= names
    assert get_source("hcp").cohort_input_files(params) == [str(root / "behavioral.csv")]


def test_a_broken_subject_lists_nothing_so_its_job_says_why(tmp_path):
    root = make_bids(tmp_path / "bids")
    for bold in (root / "sub-01" / "func").glob("*_bold.*"):
        bold.unlink()
    assert get_source("bids").input_files({"path": str(root), "task": "rest"}, "sub-01") == []


def test_self_writing_sources_read_no_files():
    params = {"n_subjects": 4}
    assert get_source("synthetic").input_files(params, "sub-001") == []
    assert get_source("synthetic").cohort_input_files(params) == []


def test_a_subject_s_params_ignore_the_cohort_around_it(tmp_path):
    synthetic = get_source("synthetic")
    small = synthetic.subject_params({"seed": 3, "n_subjects": 64}, "sub-007")
    assert small == synthetic.subject_params({"seed": 3, "n_subjects": 65}, "sub-007")
    assert small != synthetic.subject_params({"seed": 4, "n_subjects": 64}, "sub-007")
    # 4-digit ids keep their width, so the subject's params still name a valid cohort
    assert synthetic.subject_params({"n_subjects": 1200}, "sub-0005")["n_subjects"] == 1000
    bids = get_source("bids")
    base = {"path": "/data", "task": "rest", "atlas": {"kind": "dk"}}
    one = bids.subject_params({**base, "subjects": ["01"], "on_error": "stop"}, "sub-01")
    assert one == bids.subject_params({**base, "subjects": ["01", "02"]}, "sub-01")
    assert "atlas" not in one  # a subject's files do not depend on the atlas ...
    assert "atlas" in bids.subject_params(
        {**base, "same_grid": True}, "sub-01"
    )  # ... unless checked


def test_the_synthetic_subject_written_from_its_own_params_is_the_same(tmp_path):
    synthetic = get_source("synthetic")
    params = {"seed": 2, "n_subjects": 12, "grid_shape": [18, 22, 18], "voxel_size_mm": 8.0,
              "n_regions": 8, "n_timepoints": 60}  # fmt: skip
    synthetic.write_subject(params, "sub-011", tmp_path / "a")
    synthetic.write_subject(synthetic.subject_params(params, "sub-011"), "sub-011", tmp_path / "b")
    for path in sorted((tmp_path / "a").rglob("*.*")):
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert twin.read_bytes() == path.read_bytes(), path.name


def test_the_atlas_part_is_written_alone_from_its_own_params(tmp_path):
    root = make_bids(tmp_path / "bids")
    atlas = tiny_atlas(tmp_path)
    bids = get_source("bids")
    params = {"path": str(root), "task": "rest", "atlas": atlas}
    assert bids.atlas_params(params) == {"atlas": atlas}
    assert bids.atlas_params({**params, "subjects": ["01"]}) == {"atlas": atlas}
    assert bids.cohort_input_files(params, "atlas") == sorted([atlas["image"], atlas["labels"]])
    bids.write_cohort(bids.atlas_params(params), tmp_path / "out", parts=("atlas",))
    assert (tmp_path / "out" / "atlas" / "atlas.nii.gz").exists()
    assert not (tmp_path / "out" / "raw").exists()
    bids.write_cohort(params, tmp_path / "out", parts=("table",))
    assert (tmp_path / "out" / "raw" / "participants.tsv").exists()


def test_a_self_writing_source_writes_only_the_part_asked_for(tmp_path):
    synthetic = get_source("synthetic")
    params = {"n_subjects": 3, "grid_shape": [18, 22, 18], "voxel_size_mm": 8.0, "n_regions": 8,
              "n_timepoints": 60}  # fmt: skip
    synthetic.write_cohort(params, tmp_path, parts=("table",))
    assert (tmp_path / "raw" / "participants.tsv").exists() and not (tmp_path / "atlas").exists()
    synthetic.write_cohort(synthetic.atlas_params(params), tmp_path, parts=("atlas",))
    assert (tmp_path / "atlas" / "labels.tsv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atlas", "raw"]  # no temporary left
    assert "n_subjects" not in synthetic.atlas_params(params)


def test_memory_grows_with_the_input_and_each_retry():
    cluster = {"mem_mb": 2000}
    first = stage_mem_mb("preprocess", 500.0, 1, cluster)
    assert first == 2000 + MEM_PER_INPUT_MB["preprocess"] * 500
    assert stage_mem_mb("preprocess", 500.0, 2, cluster) == 2 * first
    assert stage_mem_mb("preprocess", 1000.0, 1, cluster) > first
    override = {"mem_mb": 2000, "stage_mem_mb": {"preprocess": 6000},
                "mem_per_input_mb": {"preprocess": 1}}  # fmt: skip
    assert stage_mem_mb("preprocess", 500.0, 1, override) == 6500
    assert stage_mem_mb("parcellate", 0.0, 1, override) == 2000  # other stages: mem_mb
    with pytest.raises(ValueError, match="cluster.stage_mem_mb.preproces"):
        check_stage_memory({"stage_mem_mb": {"preproces": 6000}})
    with pytest.raises(ValueError, match="mem_per_input_mb.shard"):
        check_stage_memory({"mem_per_input_mb": {"shard": -1}})


def test_shard_reads_its_lists_from_an_inputs_file(tmp_path, capsys):
    spec = tmp_path / "inputs.json"
    spec.write_text(json.dumps({"subjects": ["sub-01"], "anatomy": ["a.nii.gz"], "oops": 1}))
    settings = json.dumps({"window": 4, "stride": 2})
    code = main(["shard", "--settings", settings, "--inputs-json", str(spec), "--out", "x"])
    assert code == 1 and "unknown key(s) ['oops']" in capsys.readouterr().err
    spec.write_text(json.dumps({"subjects": ["sub-01"]}))
    code = main(["shard", "--settings", settings, "--inputs-json", str(spec), "--out", "x"])
    assert code == 1 and "--parcellated" in capsys.readouterr().err
