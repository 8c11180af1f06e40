"""BIDS (OpenNeuro) downloads as users have them (issue #16): each test one real variant."""

from __future__ import annotations

import json
import logging

import pytest
from _real_layouts import make_openneuro
from _sources_fixtures import tiny_atlas

from modalmerge.data.sources import get_source


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def placed(tmp_path, ds, subject="sub-01", **params):
    """Write ``subject`` with ``params``; return its placed BOLD sidecar."""
    params = {"path": str(ds), "task": "rest", "atlas": tiny_atlas(tmp_path), **params}
    source = get_source("bids")
    out = tmp_path / "out"
    source.write_subject(params, subject, out)
    return json.loads((out / f"raw/{subject}/func/{subject}_task-rest_bold.json").read_text())


def test_multi_echo_needs_an_echo_and_the_message_names_it(tmp_path):
    names = [f"task-rest_echo-{e}_bold" for e in (1, 2, 3)]
    ds = make_openneuro(tmp_path / "ds000258", subjects=("01",), bold=names)
    with pytest.raises(ValueError, match=r"3 BOLD run files match .*they differ in echo \(1, 2, 3\): "
                       r"set dataset.params.entities.echo"):  # fmt: skip
        placed(tmp_path, ds)
    assert placed(tmp_path, ds, entities={"echo": 2})["Sources"][0].endswith("_echo-2_bold.nii.gz")


def test_phase_encoding_pair_is_chosen_by_dir(tmp_path):
    ds = make_openneuro(tmp_path / "ds", subjects=("01",),
                        bold=["task-rest_dir-AP_bold", "task-rest_dir-PA_bold"])  # fmt: skip
    with pytest.raises(
        ValueError, match=r"differ in dir \(AP, PA\): set dataset.params.entities.dir"
    ):
        placed(tmp_path, ds)
    assert "_dir-PA_" in placed(tmp_path, ds, entities={"dir": "PA"})["Sources"][0]


def test_zero_padded_runs_match_numerically(tmp_path):
    ds = make_openneuro(tmp_path / "ds", subjects=("01",),
                        bold=["task-rest_run-001_bold", "task-rest_run-002_bold"])  # fmt: skip
    with pytest.raises(ValueError, match=r"differ in run \(001, 002\): set dataset.params.run"):
        placed(tmp_path, ds)
    assert placed(tmp_path, ds, run=2)["Sources"][0].endswith("_run-002_bold.nii.gz")
    assert placed(tmp_path, ds, run="01")["Sources"][0].endswith("_run-001_bold.nii.gz")


def test_uncompressed_nii_is_read_and_placed_as_nii_gz(tmp_path):
    ds = make_openneuro(tmp_path / "ds", ext=".nii", bold=["task-rest_bold"])
    params = {"path": str(ds), "task": "rest", "atlas": tiny_atlas(tmp_path)}
    source = get_source("bids")
    assert source.subject_ids(params) == ["sub-01", "sub-02"]
    source.write_subject(params, "sub-01", tmp_path / "out")
    assert (tmp_path / "out/raw/sub-01/anat/sub-01_T1w.nii.gz").is_file()
    assert (tmp_path / "out/raw/sub-01/func/sub-01_task-rest_bold.nii.gz").is_file()


def test_several_t1w_follow_the_preference_rule_or_t1w_entities(tmp_path):
    ds = make_openneuro(tmp_path / "runs", subjects=("01",), t1w=["run-2_T1w", "run-1_T1w"])
    assert placed(tmp_path, ds)["Sources"][1].endswith("sub-01_run-1_T1w.nii.gz")
    ds = make_openneuro(tmp_path / "acq", subjects=("01",), t1w=["acq-fast_T1w", "T1w"])
    assert placed(tmp_path, ds)["Sources"][1].endswith("sub-01_T1w.nii.gz")
    assert placed(tmp_path, ds, t1w_entities={"acq": "fast"})["Sources"][1].endswith(
        "_acq-fast_T1w.nii.gz"
    )
    ds = make_openneuro(
        tmp_path / "tie", subjects=("01",), t1w=["acq-mprage_T1w", "acq-mp2rage_T1w"]
    )
    with pytest.raises(ValueError, match=r"2 T1w image files match .*differ in acq \(mp2rage, mprage\): "
                       r"set dataset.params.t1w_entities.acq"):  # fmt: skip
        placed(tmp_path, ds)


def test_header_tr_disagreeing_with_the_sidecar_warns_and_the_sidecar_wins(tmp_path, caplog):
    ds = make_openneuro(tmp_path / "ds", subjects=("01",), header_tr=2.5)
    with caplog.at_level(logging.WARNING):
        meta = placed(tmp_path, ds)
    assert meta["RepetitionTime"] == 2.0 and "2.5 s in the NIfTI header" in meta["TRWarning"]
    assert "sidecar" in caplog.text and "2.5" in caplog.text


def test_partial_download_and_subject_without_the_task_are_left_out_with_a_warning(
    tmp_path, caplog
):
    ds = make_openneuro(tmp_path / "ds", subjects=("01", "02", "03"), listed=("04", "05"))
    for image in (ds / "sub-03/func").iterdir():  # sub-03 has anatomy only
        image.unlink()
    params = {"path": str(ds), "task": "rest", "atlas": tiny_atlas(tmp_path)}
    source = get_source("bids")
    with caplog.at_level(logging.WARNING):
        assert source.subject_ids(params) == ["sub-01", "sub-02"]
    assert "sub-04, sub-05" in caplog.text and "partial download" in caplog.text
    assert "no BOLD run matching" in caplog.text and "sub-03" in caplog.text
    source.write_cohort(params, tmp_path / "out")
    table = (tmp_path / "out/raw/participants.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in table[1:]] == ["sub-01", "sub-02"]


def test_an_entity_missing_from_some_files_shows_as_none_and_null_selects_them(tmp_path):
    ds = make_openneuro(
        tmp_path / "ds", subjects=("01",), bold=["task-rest_acq-mb4_bold", "task-rest_bold"]
    )
    with pytest.raises(
        ValueError, match=r"differ in acq \(mb4, none\): set dataset.params.entities.acq"
    ):
        placed(tmp_path, ds)
    assert placed(tmp_path, ds, entities={"acq": None})["Sources"][0].endswith(
        "sub-01_task-rest_bold.nii.gz"
    )
    assert "_acq-mb4_" in placed(tmp_path, ds, entities={"acq": "mb4"})["Sources"][0]
