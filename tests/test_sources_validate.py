"""Bad real data fails with one line naming the file and the fault; exclude mode; nothing half-written."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _sources_fixtures import (
    SHAPE,
    make_bids,
    make_brats,
    make_fmriprep,
    make_hcp,
    nifti,
    tiny_atlas,
)

from modalmerge.data.sources import get_source, validate
from modalmerge.io import InputError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def fails(call, path: Path, fault: str) -> InputError:
    """``call()`` raises one line ``<path>: ...<fault>...``."""
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path) + ": "), message
    assert fault in message, message
    return info.value


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def assert_nothing_written(root: Path, subject: str) -> None:
    assert not (root / "raw" / subject).exists()
    assert not list(root.rglob(".tmp-*")) if root.exists() else True


@pytest.fixture
def bids(tmp_path):
    ds = make_bids(tmp_path / "ds", subjects=("01", "02"))
    return ds, {"path": str(ds), "task": "rest", "atlas": tiny_atlas(tmp_path)}


def bold_of(ds: Path, sub: str) -> Path:
    return ds / f"sub-{sub}/func/sub-{sub}_task-rest_bold.nii.gz"


def test_truncated_gzip_names_the_file_and_writes_nothing(bids, tmp_path):
    ds, params = bids
    truncate(bold_of(ds, "01"))
    out = tmp_path / "out"
    fails(
        lambda: get_source("bids").write_subject(params, "sub-01", out),
        bold_of(ds, "01"),
        "truncated or corrupt",
    )
    assert_nothing_written(out, "sub-01")


def test_three_dimensional_bold_is_rejected(bids, tmp_path):
    ds, params = bids
    nifti(bold_of(ds, "01"), shape=SHAPE)
    fails(
        lambda: get_source("bids").write_subject(params, "sub-01", tmp_path / "o"),
        bold_of(ds, "01"),
        "must be 4D",
    )


def test_nan_voxels_are_rejected(bids, tmp_path):
    ds, params = bids
    t1 = ds / "sub-02/anat/sub-02_T1w.nii.gz"
    data = np.ones(SHAPE, np.float32)
    data[1, 1, 1] = np.nan
    data[2, 2, 2] = np.inf
    nifti(t1, data=data)
    fails(
        lambda: get_source("bids").write_subject(params, "sub-02", tmp_path / "o"),
        t1,
        "2 voxel value(s) are NaN or inf",
    )


def test_grid_mismatch_between_bold_and_atlas_when_required(bids, tmp_path):
    ds, params = bids
    atlas = tiny_atlas(tmp_path)
    nifti(Path(atlas["image"]), data=np.ones((6, 5, 4), np.int16))
    params = {**params, "same_grid": True, "atlas": atlas}
    fails(
        lambda: get_source("bids").write_subject(params, "sub-01", tmp_path / "o"),
        Path(atlas["image"]),
        "does not match",
    )


def test_brats_contrast_with_another_affine_is_rejected(tmp_path):
    ds = make_brats(tmp_path / "b", cases=("C1",))
    t2 = ds / "C1/C1_t2.nii.gz"
    nifti(t2, affine=np.diag([2.0, 2.0, 2.5, 1.0]))
    fails(
        lambda: get_source("brats").write_subject({"path": str(ds)}, "sub-C1", tmp_path / "o"),
        t2,
        "affine differs",
    )


def test_brats_unknown_segmentation_label_is_rejected(tmp_path):
    ds = make_brats(tmp_path / "b", cases=("C1",))
    seg = ds / "C1/C1_seg.nii.gz"
    nifti(seg, data=np.full(SHAPE, 3, np.uint8))
    fails(
        lambda: get_source("brats").write_subject({"path": str(ds)}, "sub-C1", tmp_path / "o"),
        seg,
        "label(s) [3]",
    )


def test_fmriprep_run_in_another_space_than_declared(tmp_path):
    ds = make_fmriprep(tmp_path / "d", subjects=("01",), space="MNI152NLin6Asym")
    params = {"path": str(ds), "task": "rest", "atlas": tiny_atlas(tmp_path)}
    bold = ds / "sub-01/func/sub-01_task-rest_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz"
    fails(
        lambda: get_source("fmriprep").write_subject(params, "sub-01", tmp_path / "o"),
        bold,
        "declares 'MNI152NLin2009cAsym'",
    )


def test_fmriprep_mask_on_another_grid(tmp_path):
    ds = make_fmriprep(tmp_path / "d", subjects=("01",))
    mask = next(ds.rglob("*desc-brain_mask.nii.gz"))
    nifti(mask, data=np.ones((4, 5, 5), np.uint8))
    params = {"path": str(ds), "task": "rest", "atlas": tiny_atlas(tmp_path)}
    fails(
        lambda: get_source("fmriprep").write_subject(params, "sub-01", tmp_path / "o"),
        mask,
        "does not match",
    )


def test_fmriprep_empty_and_short_confounds(tmp_path):
    ds = make_fmriprep(tmp_path / "d", subjects=("01",))
    conf = next(ds.rglob("*desc-confounds_timeseries.tsv"))
    params = {"path": str(ds), "task": "rest", "atlas": tiny_atlas(tmp_path)}
    write = lambda: get_source("fmriprep").write_subject(params, "sub-01", tmp_path / "o")  # noqa: E731
    table = pd.read_csv(conf, sep="\t")
    table.iloc[:0].to_csv(conf, sep="\t", index=False)
    fails(write, conf, "confounds table is empty")
    table.iloc[:-2].to_csv(conf, sep="\t", index=False, na_rep="n/a")
    fails(write, conf, "confounds have 10 rows but the BOLD has 12 volumes")


def test_hcp_movement_regressors_of_wrong_length(tmp_path):
    ds = make_hcp(tmp_path / "h", ids=("100307",))
    moves = next(ds.rglob("Movement_Regressors.txt"))
    np.savetxt(moves, np.zeros((5, 12)))
    fails(
        lambda: get_source("hcp").write_subject(
            {"path": str(ds), "run": "REST1_LR"}, "sub-100307", tmp_path / "o"
        ),
        moves,
        "5 rows",
    )


def test_missing_and_inconsistent_repetition_time(bids, tmp_path):
    ds, params = bids
    bold = bold_of(ds, "01")
    sidecar = bold.with_name("sub-01_task-rest_bold.json")
    write = lambda: get_source("bids").write_subject(params, "sub-01", tmp_path / "o")  # noqa: E731
    sidecar.write_text(json.dumps({"RepetitionTime": 3.0}))  # the sidecar wins, with a note
    write()
    placed = json.loads((tmp_path / "o/raw/sub-01/func/sub-01_task-rest_bold.json").read_text())
    assert placed["RepetitionTime"] == 3.0
    assert (
        "3 s in sidecar sub-01_task-rest_bold.json, 2 s in the NIfTI header" in placed["TRWarning"]
    )
    sidecar.write_text(json.dumps({"TaskName": "rest"}))
    fails(write, bold, "no RepetitionTime in sidecar")
    sidecar.unlink()
    fails(write, bold, "no JSON sidecar gives RepetitionTime")
    (ds / "task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))  # BIDS inheritance
    write()


def test_participants_listed_but_missing_unlisted_and_duplicated(bids, caplog):
    ds, params = bids
    tsv = ds / "participants.tsv"
    table = pd.read_csv(tsv, sep="\t")
    source = get_source("bids")
    pd.concat([table, table.iloc[[0]].assign(participant_id="sub-09")]).to_csv(
        tsv, sep="\t", index=False
    )
    assert source.subject_ids(params) == ["sub-01", "sub-02"]  # a partial download: a warning
    assert "sub-09" in caplog.text and "partial download" in caplog.text
    table.iloc[[0]].to_csv(tsv, sep="\t", index=False)
    fails(lambda: source.subject_ids(params), tsv, "does not list sub-02, which has files")
    pd.concat([table, table.iloc[[1]]]).to_csv(tsv, sep="\t", index=False)
    fails(lambda: source.subject_ids(params), tsv, "participant_id sub-02 is listed 2 times")


def test_exclude_mode_drops_failing_subjects_and_reports_why(tmp_path, monkeypatch):
    ds = make_bids(tmp_path / "ds", subjects=("01", "02", "03"))
    truncate(bold_of(ds, "02"))
    tsv = ds / "participants.tsv"
    pd.read_csv(tsv, sep="\t").iloc[:2].to_csv(tsv, sep="\t", index=False)  # sub-03 unlisted
    params = {"path": str(ds), "task": "rest", "atlas": tiny_atlas(tmp_path), "on_error": "exclude"}
    source = get_source("bids")
    assert source.subject_ids(params) == ["sub-01"]
    out = tmp_path / "out"
    source.write_cohort(params, out)
    excluded = pd.read_csv(out / "raw/excluded.tsv", sep="\t")
    assert excluded["participant_id"].tolist() == ["sub-02", "sub-03"]
    assert (
        "truncated or corrupt" in excluded["reason"][0]
        and "does not list sub-03" in excluded["reason"][1]
    )
    assert pd.read_csv(out / "raw/participants.tsv", sep="\t")["participant_id"].tolist() == [
        "sub-01"
    ]
    calls = []
    monkeypatch.setattr(validate, "check_voxels", lambda path: calls.append(path))
    assert source.subject_ids(params) == ["sub-01"]  # voxel checks are memoised on size and mtime
    assert calls == []


def test_stop_mode_is_the_default_and_raises_on_first_fault(bids):
    ds, params = bids
    (ds / "sub-03").mkdir()
    shutil.copytree(ds / "sub-02/func", ds / "sub-03/func")
    fails(
        lambda: get_source("bids").subject_ids(params),
        ds / "participants.tsv",
        "does not list sub-03",
    )


def test_failed_rewrite_keeps_the_previous_subject_output(bids, tmp_path):
    ds, params = bids
    out = tmp_path / "out"
    source = get_source("bids")
    source.write_subject(params, "sub-01", out)
    before = sorted(p.name for p in (out / "raw/sub-01").rglob("*"))
    truncate(bold_of(ds, "01"))
    with pytest.raises(InputError):
        source.write_subject(params, "sub-01", out)
    assert sorted(p.name for p in (out / "raw/sub-01").rglob("*")) == before
    assert not list(out.rglob(".tmp-*"))


def test_failed_cohort_writes_nothing(bids, tmp_path):
    ds, params = bids
    params = {
        **params,
        "atlas": {"kind": "nifti", "image": str(tmp_path / "none.nii.gz"), "labels": "x.tsv"},
    }
    out = tmp_path / "out"
    with pytest.raises(InputError, match="none.nii.gz: atlas image is missing"):
        get_source("bids").write_cohort(params, out)
    assert not out.exists() or not any(out.rglob("*"))


def test_check_voxels_reads_plain_gzip_errors_as_input_errors(tmp_path):
    bad = tmp_path / "x.nii.gz"
    bad.write_bytes(gzip.compress(b"not a nifti header at all" * 20))
    fails(lambda: validate.check_voxels(bad), bad, "not a readable NIfTI")


def test_voxel_check_streams_a_run_in_blocks_of_volumes(tmp_path, monkeypatch):
    """Issue #16: memory is bounded by a block, not the run; a NaN in the last block is found."""
    import nibabel as nib
    import numpy as np
    from nibabel.arrayproxy import ArrayProxy

    data = np.ones((4, 5, 4, 30), np.float32)
    data[1, 1, 1, 29] = np.nan
    path = tmp_path / "run.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    monkeypatch.setattr(validate, "CHUNK_BYTES", 8 * 4 * 5 * 4 * 7)  # 7 volumes as float64
    shapes = []
    original = ArrayProxy.__getitem__

    def spy(self, key):
        out = original(self, key)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(ArrayProxy, "__getitem__", spy)
    fails(lambda: validate.check_voxels(path), path, "1 voxel value(s) are NaN or inf")
    assert [s[3] for s in shapes] == [7, 7, 7, 7, 2]
