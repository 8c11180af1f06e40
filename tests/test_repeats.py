"""Repeats (top-level ``repeats: K``): seeds and paths per repeat, and summary_repeats.csv."""

from __future__ import annotations

import csv
import statistics

import pytest

from modalmerge.evaluation.summary import SUMMARY_COLUMNS
from modalmerge.evaluation.summary_repeats import REPEATS_COLUMNS, summarize_repeats
from modalmerge.io import InputError
from modalmerge.repeats import repeat_dataset, repeat_index, repeat_seed, repeat_suffix
from modalmerge.settings import from_config

ID = ["image_to_ts", "image", "time_series", "cross_attention"]


def _summary(path, rows):
    """A hand-made summary.csv: rows of (model, metric, value, verdict)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SUMMARY_COLUMNS)
        for model, metric, value, verdict in rows:
            writer.writerow([*ID, model, metric, value, "", "", "9", "", verdict])
    return path


def _read(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == REPEATS_COLUMNS
        return {(r["model"], r["metric"]): r for r in reader}


def test_summary_repeats_gives_mean_sd_and_beats_counts(tmp_path):
    rep0 = _summary(
        tmp_path / "s0.csv",
        [
            ("model", "pearson_r", "0.5", ""),
            ("group_mean", "pearson_r", "0.4", ""),
            ("model-group_mean", "pearson_r", "0.1", "beats"),
            ("model-group_mean", "mse", "-0.2", ""),
        ],
    )
    rep1 = _summary(
        tmp_path / "s1.csv",
        [
            ("model", "pearson_r", "0.3", ""),
            ("group_mean", "pearson_r", "0.4", ""),
            ("model-group_mean", "pearson_r", "-0.1", "does not beat"),
            ("model-group_mean", "mse", "0.2", ""),
        ],
    )
    rows = _read(summarize_repeats([rep0, rep1], tmp_path / "out.csv"))
    model = rows[("model", "pearson_r")]
    assert float(model["mean"]) == pytest.approx(0.4)
    assert float(model["sd"]) == pytest.approx(statistics.stdev([0.5, 0.3]))
    assert model["n_repeats"] == "2" and model["beats"] == "" and model["n_verdicts"] == ""
    assert float(rows[("group_mean", "pearson_r")]["sd"]) == 0.0
    diff = rows[("model-group_mean", "pearson_r")]
    assert (diff["beats"], diff["n_verdicts"]) == ("1", "2")  # beats in 1 of 2 repeats
    assert float(diff["mean"]) == pytest.approx(0.0)
    assert rows[("model-group_mean", "mse")]["beats"] == ""  # no verdict off the primary metric
    assert list(rows) == [(r[0], r[1]) for r in [("model", "pearson_r"),
        ("group_mean", "pearson_r"), ("model-group_mean", "pearson_r"),
        ("model-group_mean", "mse")]]  # fmt: skip


def test_summary_repeats_skips_undefined_values_and_needs_two_for_an_sd(tmp_path):
    rep0 = _summary(tmp_path / "s0.csv", [("model", "psnr", "", ""), ("model", "ssim", "0.8", "")])
    rep1 = _summary(tmp_path / "s1.csv", [("model", "psnr", "30", ""), ("model", "ssim", "", "")])
    rows = _read(summarize_repeats([rep0, rep1], tmp_path / "out.csv"))
    psnr = rows[("model", "psnr")]
    assert (psnr["n_repeats"], float(psnr["mean"]), psnr["sd"]) == ("1", 30.0, "")


def test_summary_repeats_refuses_repeats_with_other_rows_naming_the_file(tmp_path):
    rep0 = _summary(tmp_path / "s0.csv", [("model", "pearson_r", "0.5", "")])
    rep1 = _summary(tmp_path / "s1.csv", [("model", "r2", "0.5", "")])
    with pytest.raises(InputError, match="s1.csv.*lacks row"):
        summarize_repeats([rep0, rep1], tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_repeat_zero_is_the_unrepeated_run_and_later_repeats_shift_every_seed():
    dataset = {"name": "d", "kind": "synthetic", "params": {"n_subjects": 8}}
    assert repeat_dataset(dataset, 0) is dataset  # same params: repeat 0 never reruns
    assert repeat_dataset(dataset, 3)["params"] == {"n_subjects": 8, "seed": 3}  # default 0 + 3
    assert dataset["params"] == {"n_subjects": 8}  # not modified in place
    real = {"name": "r", "kind": "bids", "params": {"path": "/data"}}
    assert repeat_dataset(real, 2) is real  # real data: same subjects, new split/training seeds
    assert [repeat_seed(5, k) for k in range(3)] == [5, 6, 7]
    assert [repeat_suffix(k) for k in (0, 1, 12)] == ["", "/rep-1", "/rep-12"]
    assert repeat_index(repeat_suffix(12)) == 12
    with pytest.raises(ValueError, match="rep-0"):
        repeat_index("/rep-0")  # repeat 0 has no directory of its own


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_repeats_must_be_a_positive_integer(value):
    config = {"dataset": {"name": "d", "kind": "synthetic"}, "experiments": [
        {"name": "e", "condition": "image", "target": "time_series"}], "repeats": value}  # fmt: skip
    with pytest.raises(ValueError, match="repeats: must be an integer >= 1"):
        from_config(config)
