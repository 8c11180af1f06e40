"""Evidence per held-out unit: identifiability, the parcel ridge, per-unit scores and
the intervals and verdicts of summary.csv (issue 18, items 1, 4, 9)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from modalmerge.evaluation.identifiability import fc_triangles, identifiability
from modalmerge.evaluation.scoring import BaselineSettings, ScoringInput
from modalmerge.evaluation.summary import experiment_rows, summarize, write_metrics
from modalmerge.stages.common import SplitArrays

# ------------------------------------------------------------ identifiability


def _subject_fc(rng, n=6, rois=8, t=200):
    """FC triangles of n subjects who share a group pattern and differ individually."""
    group = rng.standard_normal((2, rois))

    def subject():
        own = rng.standard_normal((2, rois))
        latents = rng.standard_normal((t, 4))
        return (
            latents[:, :2] @ group
            + 0.7 * latents[:, 2:] @ own
            + 0.5 * rng.standard_normal((t, rois))
        )

    return fc_triangles(np.stack([subject() for _ in range(n)]))


def test_perfect_prediction_is_identified_and_ranks_first():
    rng = np.random.default_rng(0)
    true = _subject_fc(rng)
    found = identifiability(true, true, true.mean(axis=0))
    np.testing.assert_array_equal(found["fc_top1"], 1.0)
    np.testing.assert_array_equal(found["fc_mean_rank"], 1.0)
    assert found["fc_demeaned_r"] == pytest.approx(np.ones(len(true)))


def test_the_same_fc_for_everyone_scores_chance():
    rng = np.random.default_rng(1)
    true = _subject_fc(rng)
    train_mean = _subject_fc(rng, n=10).mean(axis=0)
    same = np.tile(train_mean, (len(true), 1))
    found = identifiability(same, true, train_mean)
    np.testing.assert_allclose(found["fc_mean_rank"], 0.5)
    np.testing.assert_allclose(found["fc_top1"], 1 / len(true))
    np.testing.assert_array_equal(found["fc_demeaned_r"], 0.0)  # nothing individual left
    # a different shared FC: still chance for top-1 and rank
    other = np.tile(true[0] + 0.3, (len(true), 1))
    np.testing.assert_allclose(identifiability(other, true, train_mean)["fc_mean_rank"], 0.5)


def test_swapped_predictions_are_never_identified():
    rng = np.random.default_rng(2)
    true = _subject_fc(rng)
    found = identifiability(np.roll(true, 1, axis=0), true, true.mean(axis=0))
    np.testing.assert_array_equal(found["fc_top1"], 0.0)
    assert (found["fc_mean_rank"] < 1).all()


def test_group_plus_individual_part_is_scored_on_the_individual_part():
    rng = np.random.default_rng(3)
    true = _subject_fc(rng, n=8)
    mean = true.mean(axis=0)
    noisy = true + 0.02 * rng.standard_normal(true.shape)
    # a high raw FC similarity from the shared part alone ...
    assert np.corrcoef(mean, true[0])[0, 1] > 0.5
    # ... the demeaned r separates the individual prediction from the group average
    assert identifiability(noisy, true, mean)["fc_demeaned_r"].mean() > 0.9
    with pytest.raises(ValueError, match="at least 2"):
        identifiability(true[:1], true[:1], mean)


# --------------------------------------------------- scorers per held-out unit


def _whole_run_input(rng, n_train=24, n_test=6, t=40, rois=5, window=10):
    """An 'image' condition whose voxels are noise and whose parcel features set the
    target run linearly: only the parcel ridge can predict it."""
    basis = rng.standard_normal((3, t, rois))
    shared = rng.standard_normal((1, t, rois))

    def split(n, prefix):
        feats = rng.standard_normal((n, 3))
        runs = np.einsum("nk,ktr->ntr", feats, basis) + shared
        subs, starts, wins, voxels, parcel = [], [], [], [], []
        for i in range(n):
            noise = rng.standard_normal(30)
            for st in range(0, t - window + 1, window // 2):
                subs.append(f"{prefix}-{i:02d}")
                starts.append(st)
                wins.append(runs[i, st : st + window])
                voxels.append(noise)
                parcel.append(feats[i])
        return (
            SplitArrays(subs, np.asarray(starts), target=np.stack(wins).astype(np.float32)),
            np.stack(voxels),
            np.stack(parcel),
        )

    train, x_train, p_train = split(n_train, "tr")
    test, x_test, p_test = split(n_test, "te")
    test.prediction = test.target + rng.standard_normal(test.target.shape).astype(np.float32)
    return ScoringInput(
        condition="image",
        train=train,
        test=test,
        x_train=x_train,
        x_test=x_test,
        baselines=BaselineSettings(alphas=np.array([1e-3, 1e-1, 10.0])),
        parcel_train=p_train,
        parcel_test=p_test,
    )


def test_parcel_ridge_reads_the_parcel_features_not_the_voxels():
    from modalmerge.evaluation.time_series import score_time_series

    out = score_time_series(_whole_run_input(np.random.default_rng(4)))
    assert out.scores["ridge_parcel"]["pearson_r"] > 0.95
    assert out.scores["ridge_parcel"]["pearson_r"] > out.scores["ridge"]["pearson_r"] + 0.2
    assert out.arrays["ridge_parcel"].shape == out.arrays["prediction"].shape
    assert out.per_unit["units"] == [f"te-{i:02d}" for i in range(6)]
    # parcel ridge predicts individual FC: identified above chance
    assert out.scores["ridge_parcel"]["fc_top1"] > out.scores["group_mean"]["fc_top1"]
    assert out.scores["group_mean"]["fc_mean_rank"] == pytest.approx(0.5)


def test_baselines_do_not_move_when_the_model_predictions_change(tmp_path):
    from modalmerge.evaluation.time_series import score_time_series

    data = _whole_run_input(np.random.default_rng(5))
    first = score_time_series(data)
    data.test.prediction = data.test.prediction * -3.0 + 1.0
    second = score_time_series(data)
    assert first.scores["model"] != second.scores["model"]
    for name in ("group_mean", "ridge", "ridge_parcel"):
        assert first.scores[name] == second.scores[name]
        assert first.per_unit[name] == second.per_unit[name]
    rows = [experiment_rows(_as_record(s)) for s in (first, second)]

    def baseline_rows(table):
        return [r for r in table if r[4] in ("group_mean", "ridge", "ridge_parcel")]

    assert baseline_rows(rows[0]) == baseline_rows(rows[1])  # values and intervals
    assert [r[4] for r in rows[0]] == [r[4] for r in rows[1]]


def _as_record(scored, name="exp"):
    return {
        "experiment": name,
        "condition": "image",
        "target": "time_series",
        "method": "cross_attention",
        "n_test_subjects": len(scored.per_unit["units"]),
        "scores": scored.scores,
        "per_unit": scored.per_unit,
        **scored.extra,
    }


def test_table_row_scores_average_to_the_headline_r2():
    from modalmerge.evaluation.modality_metrics import tabular_metrics
    from modalmerge.evaluation.tabular import row_scores

    rng = np.random.default_rng(6)
    true = np.concatenate([rng.standard_normal((7, 3)), rng.integers(0, 3, (7, 2))], axis=1)
    pred = true + np.concatenate([0.5 * rng.standard_normal((7, 3)), np.zeros((7, 2))], 1)
    pred[0, 3] = (pred[0, 3] + 1) % 3  # one wrong category
    rows = row_scores(pred, true, n_numeric=3)
    headline = tabular_metrics(pred[:, :3], true[:, :3], pred[:, 3:], true[:, 3:])["scores"]
    assert np.mean(rows["r2"]) == pytest.approx(headline["r2"])
    assert np.mean(rows["mae"]) == pytest.approx(headline["mae"])
    assert np.mean(rows["accuracy"]) == pytest.approx(headline["accuracy"])
    assert rows["accuracy"][0] == 0.5 and rows["accuracy"][1:] == [1.0] * 6
    assert row_scores(true, true, 3)["r2"] == [1.0] * 7


def test_image_per_unit_scores_average_to_the_scores():
    from modalmerge.evaluation.modality_metrics import image_metrics

    rng = np.random.default_rng(7)
    true = rng.random((4, 1, 12, 12, 12))
    pred = true + 0.1 * rng.standard_normal(true.shape)
    out = image_metrics(pred, true, data_range=1.0, sigma=0.8)
    for metric, values in out["per_image"].items():
        assert len(values) == 4
        assert np.mean(values) == pytest.approx(out["scores"][metric])


# -------------------------------------------------------------- summary.csv


def _record(model, baseline, metric="pearson_r", **extra):
    n = len(model)
    return {
        "experiment": "exp",
        "condition": "image",
        "target": "time_series",
        "method": "cross_attention",
        "n_test_subjects": n,
        "scores": {
            "model": {metric: float(np.mean(model)), "mse": 1.0},
            "ridge": {metric: float(np.mean(baseline)), "mse": 1.0},
        },
        "per_unit": {
            "units": [f"sub-{i}" for i in range(n)],
            "model": {metric: list(model), "mse": [1.0] * n},
            "ridge": {metric: list(baseline), "mse": [1.0] * n},
        },
        **extra,
    }


def _rows(tmp_path, record):
    path = write_metrics(tmp_path / "exp" / "metrics.json", record)
    out = summarize([path], tmp_path / "summary.csv")
    with out.open() as handle:
        return {(r["model"], r["metric"]): r for r in csv.DictReader(handle)}


def test_summary_rows_carry_intervals_differences_and_verdicts(tmp_path):
    rng = np.random.default_rng(8)
    ridge = rng.uniform(0.3, 0.6, 9)
    model = ridge + 0.05 + rng.normal(0, 0.01, 9)
    rows = _rows(tmp_path, _record(model.tolist(), ridge.tolist()))
    own = rows[("model", "pearson_r")]
    assert float(own["ci_low"]) < float(own["value"]) < float(own["ci_high"])
    assert own["n"] == "9" and own["verdict"] == own["p_wilcoxon"] == ""
    diff = rows[("model-ridge", "pearson_r")]
    assert float(diff["value"]) == pytest.approx((model - ridge).mean())
    assert float(diff["ci_low"]) > 0 and diff["verdict"] == "beats"
    assert float(diff["p_wilcoxon"]) < 0.01
    # a non-primary metric gets its difference but no verdict
    assert rows[("model-ridge", "mse")]["verdict"] == ""
    assert float(rows[("model-ridge", "mse")]["value"]) == 0.0


def test_a_difference_whose_interval_reaches_zero_does_not_beat(tmp_path):
    rng = np.random.default_rng(9)
    ridge = rng.uniform(0.3, 0.6, 9)
    model = ridge + rng.normal(0, 0.05, 9)  # no systematic gain
    rows = _rows(tmp_path, _record(model.tolist(), ridge.tolist()))
    diff = rows[("model-ridge", "pearson_r")]
    assert float(diff["ci_low"]) <= 0 and diff["verdict"] == "does not beat"


def test_the_verdict_is_drawn_on_the_named_primary_metric(tmp_path):
    rng = np.random.default_rng(10)
    ridge = rng.uniform(0.3, 0.6, 6)
    rows = _rows(
        tmp_path, _record((ridge + 0.1).tolist(), ridge.tolist(), "ssim", primary_metric="ssim")
    )
    assert rows[("model-ridge", "ssim")]["verdict"] == "beats"


def test_one_unit_gives_empty_intervals_and_no_beat(tmp_path):
    rows = _rows(tmp_path, _record([0.9], [0.1]))
    diff = rows[("model-ridge", "pearson_r")]
    assert diff["ci_low"] == diff["ci_high"] == diff["p_wilcoxon"] == ""
    assert diff["n"] == "1" and diff["verdict"] == "does not beat"


def test_per_unit_lists_must_match_the_units(tmp_path):
    record = _record([0.5, 0.6], [0.4, 0.5])
    record["per_unit"]["model"]["pearson_r"] = [0.5]
    with pytest.raises(ValueError, match="1 values for 2 units"):
        write_metrics(tmp_path / "m.json", record)
    record["per_unit"]["model"]["pearson_r"] = [0.5, math.nan]
    with pytest.raises(ValueError, match="list of numbers"):
        write_metrics(tmp_path / "m.json", record)


def test_per_roi_and_per_unit_lists_are_checked_by_one_rule():
    """Both blocks are ``{predictor: {metric: [numbers]}}`` and refuse the same faults in the
    same words (one checker since cleanup2); per_roi lists share a length, per_unit lists
    have one value per unit."""
    from modalmerge.evaluation.summary import validate_metrics

    record = _record([0.5, 0.6], [0.4, 0.5])
    record["per_roi"] = {"model": {"pearson_r": [0.1, "x"], "mse": [1.0]}, "nope": {}}
    record["per_roi"]["ridge"] = {"pearson_r": [0.1, 0.2]}
    record["per_unit"]["nope"] = {"pearson_r": [1.0, 2.0]}
    record["per_unit"]["model"]["pearson_r"] = ["x", 0.5]
    record["per_unit"]["ridge"]["mse"] = [1.0]
    assert sorted(validate_metrics(record)) == [  # sorted: the order of faults is no contract
        "per_roi lists differ in length: [1, 2]",
        "per_roi['model']['pearson_r'] must be a list of numbers",
        "per_roi['nope'] must be a known predictor mapping metric -> list",
        "per_unit['model']['pearson_r'] must be a list of numbers",
        "per_unit['nope'] must be a known predictor mapping metric -> list",
        "per_unit['ridge']['mse'] has 1 values for 2 units",
    ]
    assert validate_metrics(_record([0.5, 0.6], [0.4, 0.5], per_roi={})) == []


def _subject_level_input(rng, target_shape, n_train=12, n_test=5):
    """One sample per subject; conditions are random features, targets random arrays."""

    def split(n, prefix):
        subjects = [f"{prefix}-{i}" for i in range(n)]
        target = rng.standard_normal((n, *target_shape)).astype(np.float32)
        return SplitArrays(subjects, np.zeros(n, np.int64), target=target), rng.standard_normal(
            (n, 6)
        )

    (train, x_train), (test, x_test) = split(n_train, "tr"), split(n_test, "te")
    test.prediction = test.target + 0.3 * rng.standard_normal(test.target.shape).astype(np.float32)
    return ScoringInput(
        condition="image",
        train=train,
        test=test,
        x_train=x_train,
        x_test=x_test,
        baselines=BaselineSettings(alphas=np.array([0.1, 1.0, 10.0])),
        parcel_train=rng.standard_normal((n_train, 4)),
        parcel_test=rng.standard_normal((n_test, 4)),
    )


@pytest.mark.parametrize("target", ["image", "tabular"])
def test_image_and_table_baselines_ignore_the_model_predictions(target):
    from modalmerge.evaluation.image import score_image
    from modalmerge.evaluation.tabular import score_tabular

    shape = (1, 12, 12, 12) if target == "image" else (4,)
    data = _subject_level_input(np.random.default_rng(11), shape)

    def score():
        return score_image(data) if target == "image" else score_tabular(data, n_categorical=0)

    first = score()
    data.test.prediction = data.test.prediction[::-1] * 2.0
    second = score()
    assert first.extra["primary_metric"] == ("ssim" if target == "image" else "r2")
    assert first.per_unit["units"] == [f"te-{i}" for i in range(5)]
    assert first.per_unit["model"] != second.per_unit["model"]
    for name in ("group_mean", "ridge", "ridge_parcel"):
        assert first.scores[name] == second.scores[name]
        assert first.per_unit[name] == second.per_unit[name]
        for metric, values in first.per_unit[name].items():
            assert np.mean(values) == pytest.approx(first.scores[name][metric])


def test_a_table_of_categorical_columns_only_is_scored_by_accuracy_against_the_majority():
    """E.g. text -> (sex, group): no numeric column, so no ridge; the majority is the baseline."""
    from modalmerge.evaluation.tabular import score_tabular

    data = _subject_level_input(np.random.default_rng(3), (2,), n_train=10, n_test=6)
    data.train.target = np.array([[0, 1]] * 7 + [[1, 0]] * 3, np.float32)  # majority (0, 1)
    data.test.target = np.array([[0, 1], [1, 1], [1, 0], [0, 0], [1, 1], [0, 1]], np.float32)
    data.test.categorical_scores = [np.eye(2)[data.test.target[:, j].astype(int)] for j in (0, 1)]
    scored = score_tabular(data, n_categorical=2)
    assert scored.extra["primary_metric"] == "accuracy"
    assert set(scored.scores) == {"model", "group_mean"}
    assert scored.per_unit["model"]["accuracy"] == [1.0] * 6  # class scores of the truth
    assert scored.per_unit["group_mean"]["accuracy"] == [1.0, 0.5, 0.0, 0.5, 0.5, 1.0]


def test_region_profiles_give_one_unit_per_test_region():
    from modalmerge.evaluation.region_profiles import ProfileTable, score_region_profiles
    from modalmerge.evaluation.scoring import Scored

    regions = ["L_1", "L_2", "L_3", "R_1"]
    rng = np.random.default_rng(12)
    true = rng.standard_normal((3, 4))
    table = ProfileTable(
        target_names=[f"fc_{r}" for r in regions],
        condition_names=[f"mpc_{r}" for r in regions],
        target_regions=regions,
        mean=np.zeros(4),
        std=np.ones(4),
        holdout=None,
        regions=set(regions),
    )
    arrays = {"subjects": np.array(regions[:3]), "prediction": true + 0.1, "target": true,
              "group_mean": np.tile(true.mean(0), (3, 1)), "ridge": -true}  # fmt: skip
    out = score_region_profiles(Scored(scores={"model": {"r2": 0.5}}, arrays=arrays), table)
    assert out.per_unit["units"] == regions[:3]
    assert out.extra["primary_metric"] == "pearson_r"
    assert out.per_unit["model"]["pearson_r"] == pytest.approx([1.0] * 3)
    assert out.per_unit["ridge"]["pearson_r"] == pytest.approx([-1.0] * 3)
    for name in ("model", "group_mean", "ridge"):
        assert np.mean(out.per_unit[name]["pearson_r"]) == pytest.approx(
            out.scores[name]["pearson_r"]
        )
