"""Evaluation: metrics against hand values and library references, baselines, summary."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from modalmerge.evaluation.baselines import GroupMeanBaseline, RidgeBaseline
from modalmerge.evaluation.metrics import (
    connectivity,
    fc_similarity,
    mse,
    noise_ceiling,
    noise_ceiling_metrics,
    pearson_per_roi,
    r2_per_roi,
    time_series_metrics,
)
from modalmerge.evaluation.modality_metrics import (
    categorical_accuracy,
    image_metrics,
    mae,
    numeric_r2,
    perplexity,
    psnr,
    ssim,
    tabular_metrics,
    text_metrics,
    token_accuracy,
    token_nll,
)
from modalmerge.evaluation.summary import read_metrics, summarize, write_metrics
from modalmerge.io import InputError


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def series(rng):
    """(pred, true) ROI series, 3 subjects x 20 volumes x 5 ROIs."""
    true = rng.standard_normal((3, 20, 5))
    return true + 0.8 * rng.standard_normal(true.shape), true


# ------------------------------------------------------------- time series


def test_pearson_per_roi_matches_hand_computed_value():
    pred = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    true = np.array([1.0, 3.0, 2.0, 4.0]).reshape(1, 4, 1)
    # centred: [-1.5,-.5,.5,1.5] . [-1.5,.5,-.5,1.5] = 4; norms sqrt(5)*sqrt(5)
    assert pearson_per_roi(pred, true)[0, 0] == pytest.approx(0.8)


def test_pearson_per_roi_matches_scipy_for_every_subject_and_roi(series):
    pred, true = series
    r = pearson_per_roi(pred, true)
    assert r.shape == (3, 5)
    for s in range(3):
        for roi in range(5):
            assert r[s, roi] == pytest.approx(
                pearsonr(pred[s, :, roi], true[s, :, roi])[0], abs=1e-12
            )


def test_constant_series_scores_zero_by_default_and_raises_on_request(series):
    pred, true = series
    pred = pred.copy()
    pred[1, :, 2] = 3.0
    r = pearson_per_roi(pred, true)
    assert r[1, 2] == 0.0 and np.isfinite(r).all()
    with pytest.raises(ValueError, match=r"constant.*\(1, 2\)"):
        pearson_per_roi(pred, true, on_constant="raise")
    assert time_series_metrics(pred, true)["scores"]["n_constant_series"] == 1


def test_r2_per_roi_matches_sklearn_r2_score(series):
    pred, true = series
    r2 = r2_per_roi(pred, true)
    for s in range(3):
        expected = r2_score(true[s], pred[s], multioutput="raw_values")
        np.testing.assert_allclose(r2[s], expected, rtol=1e-12)


def test_r2_of_constant_truth_follows_sklearn_force_finite():
    true = np.ones((1, 5, 2))
    pred = np.stack([np.ones(5), np.arange(5.0)], axis=1)[None]
    np.testing.assert_array_equal(r2_per_roi(pred, true), [[1.0, 0.0]])
    with pytest.raises(ValueError, match="constant"):
        r2_per_roi(pred, true, on_constant="raise")


def test_mse_over_all_values_and_per_axis():
    pred, true = np.zeros((2, 2, 1)), np.array([[[1.0], [3.0]], [[0.0], [2.0]]])
    assert mse(pred, true) == pytest.approx((1 + 9 + 0 + 4) / 4)
    np.testing.assert_allclose(mse(pred, true, axis=(0, 1)), [3.5])


def test_connectivity_equals_numpy_corrcoef_and_zeroes_constant_rois(rng):
    x = rng.standard_normal((30, 4))
    np.testing.assert_allclose(connectivity(x), np.corrcoef(x.T), atol=1e-12)
    x[:, 1] = 2.0
    fc = connectivity(x)
    assert np.isfinite(fc).all() and fc[1, 1] == 1.0
    assert (fc[1, [0, 2, 3]] == 0).all() and (fc[[0, 2, 3], 1] == 0).all()


def test_fc_similarity_is_one_for_identical_and_lower_for_shuffled(rng):
    mixing = rng.standard_normal((6, 6))
    true = rng.standard_normal((2, 50, 6)) @ mixing  # structured connectivity
    np.testing.assert_allclose(fc_similarity(true, true), 1.0)
    shuffled = true[:, :, rng.permutation(6)]
    assert (fc_similarity(shuffled, true) < 0.99).all()


def test_fc_similarity_needs_three_rois(rng):
    x = rng.standard_normal((1, 10, 2))
    with pytest.raises(ValueError, match="at least 3 ROIs"):
        fc_similarity(x, x)


def test_noise_ceiling_of_truth_against_itself_is_one(rng):
    evoked = rng.standard_normal((2, 25, 4))
    np.testing.assert_allclose(noise_ceiling(evoked, evoked), 1.0)
    observed = evoked + rng.standard_normal(evoked.shape)
    nc = noise_ceiling(evoked, observed)
    assert nc.shape == (2, 4) and (nc < 1).all()
    assert noise_ceiling_metrics(evoked, observed)["scores"]["pearson_r"] == pytest.approx(
        nc.mean()
    )


def test_time_series_metrics_are_json_ready_means_and_per_roi_lists(series):
    pred, true = series
    out = time_series_metrics(pred, true)
    json.dumps(out)  # plain Python values only
    assert out["scores"]["pearson_r"] == pytest.approx(pearson_per_roi(pred, true).mean())
    assert out["scores"]["r2"] == pytest.approx(r2_per_roi(pred, true).mean())
    assert out["scores"]["mse"] == pytest.approx(mse(pred, true))
    assert out["scores"]["fc_similarity"] == pytest.approx(fc_similarity(pred, true).mean())
    assert all(len(v) == 5 for v in out["per_roi"].values())
    perfect = time_series_metrics(true, true)["scores"]
    assert perfect["pearson_r"] == pytest.approx(1) and perfect["r2"] == pytest.approx(1)
    assert perfect["mse"] == 0


@pytest.mark.parametrize(
    "pred_shape, bad, match",
    [
        ((3, 20, 4), None, "differs"),
        ((3, 20), None, "shaped"),
        ((3, 20, 5), "nan", "NaN"),
        ((3, 1, 5), None, "2 time points"),
    ],
)
def test_time_series_metrics_reject_bad_input(series, pred_shape, bad, match):
    _, true = series
    pred = np.zeros(pred_shape)
    if bad == "nan":
        pred[0, 0, 0] = np.nan
    if pred_shape[1] == 1:
        true = true[:, :1]
    with pytest.raises(ValueError, match=match):
        pearson_per_roi(pred, true)


def test_on_constant_rejects_unknown_policy(series):
    with pytest.raises(ValueError, match="on_constant"):
        pearson_per_roi(*series, on_constant="nan")


# ------------------------------------------------------------------ images


@pytest.mark.parametrize("shape", [(2, 1, 12, 12, 12), (2, 3, 16, 16)])
def test_ssim_is_one_and_psnr_infinite_for_identical_images(rng, shape):
    img = rng.random(shape)
    np.testing.assert_allclose(ssim(img, img, data_range=1.0), 1.0)
    assert np.isinf(psnr(img, img, data_range=1.0)).all()
    noisy = np.clip(img + 0.1 * rng.standard_normal(shape), 0, 1)
    assert (ssim(noisy, img, data_range=1.0) < 0.99).all()


def test_ssim_and_psnr_match_skimage_references(rng):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    true = rng.random((1, 1, 14, 14, 14))
    pred = true + 0.05 * rng.standard_normal(true.shape)
    ref = structural_similarity(
        pred[0, 0],
        true[0, 0],
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(pred, true, data_range=1.0)[0] == pytest.approx(ref)
    assert psnr(pred, true, data_range=1.0)[0] == pytest.approx(
        peak_signal_noise_ratio(true[0], pred[0], data_range=1.0)
    )


def test_psnr_hand_value():
    true = np.zeros((1, 1, 2, 2))
    pred = np.full_like(true, 0.1)  # mse 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert psnr(pred, true, data_range=1.0)[0] == pytest.approx(20.0)


def test_image_metrics_reject_small_images_bad_range_and_2d_input(rng):
    img = rng.random((1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="smaller sigma"):
        ssim(img, img, data_range=1.0)
    assert ssim(img, img, data_range=1.0, sigma=0.8)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="data_range"):
        psnr(img, img, data_range=0)
    with pytest.raises(ValueError, match="shaped"):
        psnr(img[0, 0], img[0, 0], data_range=1.0)
    assert set(image_metrics(img, img * 0.9, data_range=1.0, sigma=0.8)["scores"]) == {
        "ssim",
        "psnr",
        "mse",
    }


# -------------------------------------------------------------------- text


def test_token_accuracy_ignores_padding():
    true = np.array([[5, 6, 7, 0, 0]])
    pred = np.array([[5, 9, 7, 4, 4]])
    assert token_accuracy(pred, true) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="only padding"):
        token_accuracy(pred, np.zeros_like(true))


def test_perplexity_of_uniform_logits_is_vocabulary_size():
    logits = np.zeros((2, 3, 7))
    ids = np.array([[1, 4, 6], [2, 0, 0]])
    assert token_nll(logits, ids) == pytest.approx(np.log(7))
    assert perplexity(logits, ids) == pytest.approx(7.0)
    assert perplexity(np.log(7)) == pytest.approx(7.0)


def test_perplexity_matches_hand_softmax(rng):
    logits = rng.standard_normal((1, 2, 4))
    ids = np.array([[3, 1]])
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = np.exp(-(np.log(p[0, 0, 3]) + np.log(p[0, 1, 1])) / 2)
    assert perplexity(logits, ids) == pytest.approx(expected)
    out = text_metrics(logits, ids)["scores"]
    assert out["perplexity"] == pytest.approx(expected)


def test_perplexity_rejects_bad_input():
    with pytest.raises(ValueError, match="needs true_ids"):
        perplexity(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="vocabulary"):
        perplexity(np.zeros((1, 2, 3)), np.array([[1, 5]]))
    with pytest.raises(ValueError, match=">= 0"):
        perplexity(float("nan"))


# ----------------------------------------------------------------- tabular


def test_tabular_metrics_match_sklearn_and_hand_values(rng):
    true = rng.standard_normal((10, 2))
    pred = true + 0.3 * rng.standard_normal((10, 2))
    np.testing.assert_allclose(
        numeric_r2(pred, true), r2_score(true, pred, multioutput="raw_values")
    )
    np.testing.assert_allclose(mae(pred, true), np.abs(pred - true).mean(0))
    codes = np.array([[0, 1], [1, 1], [2, 0], [1, 0]])
    scores = [np.eye(3)[[0, 1, 1, 1]], np.eye(2)[[1, 1, 1, 1]]]  # argmax -> [0,1,1,1], [1,1,1,1]
    np.testing.assert_allclose(categorical_accuracy(scores, codes), [0.75, 0.5])
    np.testing.assert_allclose(categorical_accuracy(codes, codes), [1.0, 1.0])
    out = tabular_metrics(pred[:4], true[:4], scores, codes)["scores"]
    assert out["accuracy"] == pytest.approx(0.625)
    with pytest.raises(ValueError, match="whole-number"):
        categorical_accuracy(codes + 0.5, codes)
    with pytest.raises(ValueError, match="both"):
        tabular_metrics(pred, None)


# --------------------------------------------------------------- baselines


def test_group_mean_predicts_the_training_mean_at_every_test_subject(rng):
    train, test_x = rng.standard_normal((4, 12, 3)), np.zeros((2, 7))
    baseline = GroupMeanBaseline().fit(None, train)
    pred = baseline.predict(test_x)
    assert pred.shape == (2, 12, 3)
    np.testing.assert_allclose(pred[0], train.mean(axis=0), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(pred[0], pred[1])


def test_group_mean_aligns_windows_by_absolute_time(rng):
    full = rng.standard_normal((3, 10, 2))  # three training subjects, 10 volumes
    starts = np.array([0, 4, 6])
    windows = np.stack([full[s, o : o + 4] for s in range(3) for o in starts])
    offsets = np.tile(starts, 3)
    baseline = GroupMeanBaseline().fit(windows, windows, time_offsets=offsets)
    pred = baseline.predict(2, time_offsets=np.array([0, 6]))
    np.testing.assert_allclose(pred[0], full.mean(axis=0)[0:4])
    np.testing.assert_allclose(pred[1], full.mean(axis=0)[6:10])
    with pytest.raises(ValueError, match="no training window covered"):
        baseline.predict(1, time_offsets=np.array([8]))


def test_group_mean_for_continuous_and_categorical_targets():
    Y = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]])
    np.testing.assert_allclose(GroupMeanBaseline("mean").fit(Y, Y).predict(2), [[3.0, 3.0]] * 2)
    codes = np.array([[2, 0], [1, 0], [2, 1], [1, 1]])  # col 0: tie 1/2 -> 1
    np.testing.assert_array_equal(
        GroupMeanBaseline("majority").fit(None, codes).predict(1), [[1, 0]]
    )


def test_group_mean_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="NaN"):
        GroupMeanBaseline().fit(None, np.full((2, 3, 2), np.nan))
    with pytest.raises(ValueError, match="samples"):
        GroupMeanBaseline().fit(np.zeros((3, 1)), np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="time_offsets"):
        GroupMeanBaseline().fit(None, np.zeros((2, 3, 2)), time_offsets=[0, 1.5])
    with pytest.raises(RuntimeError, match="not fitted"):
        GroupMeanBaseline().predict(3)


def test_ridge_recovers_a_planted_linear_map_from_training_subjects_only(rng):
    W = rng.standard_normal((6, 8))
    X = rng.standard_normal((40, 6))
    Y = (X @ W).reshape(40, 4, 2)  # target shaped like a (T, R) series
    X_train, X_test, Y_test = X[:30], X[30:], Y[30:]
    ridge = RidgeBaseline().fit(X_train, Y[:30])
    pred = ridge.predict(X_test)
    assert pred.shape == (10, 4, 2)
    np.testing.assert_allclose(pred, Y_test, atol=0.05)
    assert ridge.alpha_ <= 0.1
    # each test subject's prediction depends on its own condition only
    np.testing.assert_allclose(ridge.predict(X_test[3:4])[0], pred[3], atol=1e-12)


def test_ridge_pca_on_wide_inputs_keeps_predictions(rng):
    X = rng.standard_normal((12, 300))  # features >> samples, like image voxels
    Y = X[:, :5] @ rng.standard_normal((5, 3))
    full = RidgeBaseline(alphas=[1.0], pca=False).fit(X[:9], Y[:9]).predict(X[9:])
    reduced_model = RidgeBaseline(alphas=[1.0]).fit(X[:9], Y[:9])
    assert "pca" in reduced_model.model_.regressor_.named_steps
    np.testing.assert_allclose(reduced_model.predict(X[9:]), full, atol=1e-8)


def test_ridge_one_hot_encodes_categorical_columns(rng):
    group = rng.integers(0, 3, 60)
    age = rng.standard_normal(60)
    X = np.column_stack([age, group])
    Y = (2 * age + np.array([0.0, 5.0, -5.0])[group])[:, None]  # nonlinear in the code
    pred = RidgeBaseline(categorical_columns=[1]).fit(X[:45], Y[:45]).predict(X[45:])
    np.testing.assert_allclose(pred, Y[45:], atol=0.1)


def test_ridge_rejects_bad_input(rng):
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    with pytest.raises(ValueError, match="samples"):
        RidgeBaseline().fit(X, Y[:4])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RidgeBaseline().fit(bad, Y)
    ridge = RidgeBaseline().fit(X, Y)
    with pytest.raises(ValueError, match="fitted on"):
        ridge.predict(rng.standard_normal((2, 4)))
    with pytest.raises(ValueError, match="do not exist"):
        RidgeBaseline(categorical_columns=[7]).fit(X, Y)
    with pytest.raises(ValueError, match="alphas"):
        RidgeBaseline(alphas=[0.0])


# ----------------------------------------------------------------- summary


def _record(name: str, **scores) -> dict:
    return {
        "experiment": name,
        "condition": "image",
        "target": "time_series",
        "method": "cross_attention",
        "n_test_subjects": 2,
        "scores": scores
        or {"model": {"pearson_r": 0.4, "mse": 0.9}, "group_mean": {"pearson_r": 0.3}},
        "per_roi": {"model": {"pearson_r": [0.1, 0.7]}},
    }


def test_summary_csv_has_one_long_row_per_predictor_and_metric(tmp_path):
    a = write_metrics(tmp_path / "eval" / "a" / "metrics.json", _record("a"))
    b = write_metrics(
        tmp_path / "eval" / "b" / "metrics.json",
        _record("b", model={"psnr": float("inf")}, noise_ceiling={"pearson_r": 0.6}),
    )
    out = summarize([a, b], tmp_path / "eval" / "summary.csv")
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "experiment",
        "condition",
        "target",
        "method",
        "model",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "p_wilcoxon",
        "verdict",
    ]
    # without per-unit scores there is no interval and no difference row
    assert all(r["ci_low"] == r["n"] == r["verdict"] == "" for r in rows)
    got = [(r["experiment"], r["model"], r["metric"], float(r["value"])) for r in rows]
    assert got == [
        ("a", "model", "pearson_r", 0.4),
        ("a", "model", "mse", 0.9),
        ("a", "group_mean", "pearson_r", 0.3),
        ("b", "model", "psnr", float("inf")),
        ("b", "noise_ceiling", "pearson_r", 0.6),
    ]
    assert read_metrics(a)["per_roi"]["model"]["pearson_r"] == [0.1, 0.7]


def test_summary_names_the_missing_or_corrupt_metrics_file(tmp_path):
    good = write_metrics(tmp_path / "a" / "metrics.json", _record("a"))
    corrupt = tmp_path / "b" / "metrics.json"
    corrupt.parent.mkdir()
    corrupt.write_text('{"experiment": "b", "scores": ')
    wrong = tmp_path / "c" / "metrics.json"
    wrong.parent.mkdir()
    wrong.write_text(json.dumps({**_record("c"), "scores": {"model": {"r": float("nan")}}}))
    out = tmp_path / "summary.csv"
    for bad, match in [
        (tmp_path / "missing.json", "missing"),
        (corrupt, "not valid JSON"),
        (wrong, "must be a number"),
        (good, "already came from"),
    ]:
        with pytest.raises(InputError, match=match) as err:
            summarize([good, bad], out)
        assert str(bad) in str(err.value)
    assert not out.exists()  # nothing half-written


def test_write_metrics_refuses_a_record_that_breaks_the_schema(tmp_path):
    path = tmp_path / "metrics.json"
    with pytest.raises(ValueError, match="unknown predictor 'psychic'"):
        write_metrics(path, _record("a", model={"r": 1.0}, psychic={"r": 1.0}))
    with pytest.raises(ValueError, match="n_test_subjects"):
        write_metrics(path, {**_record("a"), "n_test_subjects": 0})
    with pytest.raises(ValueError, match="differ in length"):
        write_metrics(path, {**_record("a"), "per_roi": {"model": {"r": [1.0], "r2": [1.0, 2.0]}}})
    assert not path.exists()
    with pytest.raises(ValueError, match="no metrics"):
        summarize([], tmp_path / "s.csv")


def test_the_parameter_count_is_a_row_beside_the_model_scores(tmp_path):
    record = {**_record("a"), "n_parameters": 171290}
    path = write_metrics(tmp_path / "a" / "metrics.json", record)
    plain = write_metrics(tmp_path / "b" / "metrics.json", _record("b"))  # optional
    with summarize([path, plain], tmp_path / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    got = [(r["experiment"], r["model"], r["metric"], r["value"]) for r in rows]
    assert got[:4] == [
        ("a", "model", "pearson_r", "0.4"),
        ("a", "model", "mse", "0.9"),
        ("a", "model", "n_parameters", "171290"),
        ("a", "group_mean", "pearson_r", "0.3"),
    ]
    assert [r for r in rows if r["metric"] == "n_parameters"] == [rows[2]]
    assert rows[2]["ci_low"] == rows[2]["n"] == rows[2]["verdict"] == ""
    for bad in (0, 1.5, True, "171290"):
        with pytest.raises(ValueError, match="n_parameters"):
            write_metrics(tmp_path / "c.json", {**record, "n_parameters": bad})


def test_two_methods_are_compared_by_their_paired_per_unit_difference(tmp_path):
    from modalmerge.evaluation.summary import compare_experiments

    units = ["sub-01", "sub-02", "sub-03", "sub-04", "sub-05"]
    xattn = [0.50, 0.42, 0.61, 0.55, 0.47]
    mix = [0.45, 0.40, 0.55, 0.52, 0.46]  # below xattn on every unit

    def record(name, method, scores, units=units):
        per_unit = {"units": units, "model": {"pearson_r": scores, "mse": [1.0] * len(units)}}
        return {**_record(name), "method": method, "per_unit": per_unit}

    a = write_metrics(tmp_path / "a.json", record("a", "cross_attention", xattn))
    b = write_metrics(tmp_path / "b.json", record("b", "spatial_mix", mix))
    diff, verdict = compare_experiments(a, b)
    assert diff.value == pytest.approx(np.mean(np.subtract(xattn, mix)))
    assert diff.n == 5 and diff.ci_low > 0 and verdict == "beats"
    back, verdict = compare_experiments(b, a)
    assert back.value == pytest.approx(-diff.value) and verdict == "does not beat"
    assert compare_experiments(a, b, "mse")[0].value == 0
    other = write_metrics(tmp_path / "c.json", record("c", "concat", mix, units[::-1]))
    with pytest.raises(InputError, match="other held-out units"):
        compare_experiments(a, other)
    with pytest.raises(InputError, match="no per-unit model scores of 'r2'"):
        compare_experiments(a, b, "r2")
    # two conditions, one target (surface cloud vs image): only when asked
    cloud = write_metrics(
        tmp_path / "d.json", {**record("d", "cross_attention", mix), "condition": "point_cloud"}
    )
    with pytest.raises(InputError, match="predicts point_cloud"):
        compare_experiments(a, cloud)
    assert compare_experiments(a, cloud, same_condition=False)[0].value == diff.value


def test_ridge_with_pca_is_deterministic_across_fits():
    """The baseline's PCA must not be randomised: two fits on the same data agree exactly."""
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((30, 2000)), rng.standard_normal((30, 40))
    first = RidgeBaseline(pca=True, n_components=10).fit(X, Y).predict(X[:5])
    second = RidgeBaseline(pca=True, n_components=10).fit(X, Y).predict(X[:5])
    np.testing.assert_array_equal(first, second)


# --- scorers (modalmerge.evaluation.{time_series,image,tabular}) -------------------------


def _tiny_time_series_input():
    """Three training and two test subjects, runs of 8 volumes in windows of 4 (stride 2)."""
    from modalmerge.evaluation.scoring import BaselineSettings, ScoringInput
    from modalmerge.stages.common import SplitArrays

    t = np.arange(8, dtype=np.float32)

    def windows(subjects, offset):
        subs, starts, wins, conds = [], [], [], []
        for k, s in enumerate(subjects):
            phase, amp = 0.3 * k + offset, 1 + 0.1 * k
            run = np.stack([np.sin(t + phase) * amp, np.cos(0.7 * t + phase), t % 3 - 1 + phase], 1)
            for st in (0, 2, 4):
                subs.append(s)
                starts.append(st)
                wins.append(run[st : st + 4])
                conds.append(run[st : st + 4, :2] * 0.5)
        return subs, np.asarray(starts), np.stack(wins).astype(np.float32), np.stack(conds)

    trs, trst, trt, trc = windows(["sub-1", "sub-2", "sub-3"], 0.0)
    tes, test_, tet, tec = windows(["sub-4", "sub-5"], 0.1)
    train = SplitArrays(subjects=trs, window_start=trst, condition=trc, target=trt)
    prediction = tet * 0.5 + 0.1 * np.roll(tet, 1, axis=1)
    test = SplitArrays(tes, test_, condition=tec, target=tet, prediction=prediction)
    return ScoringInput(
        condition="time_series",
        train=train,
        test=test,
        x_train=trc.reshape(len(trc), -1),
        x_test=tec.reshape(len(tec), -1),
        baselines=BaselineSettings(alphas=np.array([0.1, 1.0, 10.0])),
    )


def test_time_series_scorer_output_is_pinned_on_a_tiny_fixed_input():
    from modalmerge.evaluation.time_series import score_time_series

    data = _tiny_time_series_input()
    before = {k: np.copy(v) for k, v in vars(data.test).items() if isinstance(v, np.ndarray)}
    out = score_time_series(data)
    expected = {
        "model": (0.984865, 0.744104, 0.13548, 0.999918),
        "group_mean": (0.990281, 0.963494, 0.018859, 0.999616),
        "ridge": (0.786718, 0.690938, 0.188333, 0.989348),
    }
    assert list(out.scores) == list(expected)
    for name, values in expected.items():
        got = out.scores[name]
        assert [got[m] for m in ("pearson_r", "r2", "mse", "fc_similarity")] == pytest.approx(
            values, abs=2e-6
        )
        assert got["n_constant_series"] == 0
        assert len(out.per_roi[name]["pearson_r"]) == 3
    assert out.extra == {
        "split_by": "subject",
        "primary_metric": "pearson_r",
        "fc_identifiability_chance": {"fc_top1": 0.5, "fc_mean_rank": 0.5, "fc_demeaned_r": 0.0},
    }
    assert out.per_unit["units"] == ["sub-4", "sub-5"]
    for name in expected:  # per-unit scores average to the headline scores
        for metric in ("pearson_r", "r2", "mse", "fc_similarity", "fc_top1", "fc_mean_rank"):
            assert np.mean(out.per_unit[name][metric]) == pytest.approx(out.scores[name][metric])
    assert list(out.arrays["subjects"]) == ["sub-4", "sub-5"]
    assert out.arrays["prediction"].shape == out.arrays["ridge"].shape == (2, 8, 3)
    np.testing.assert_array_equal(out.arrays["time_index"], np.arange(8))
    for key, value in before.items():  # a scorer returns; it changes nothing it was given
        np.testing.assert_array_equal(getattr(data.test, key), value)


def test_time_series_scorer_adds_the_noise_ceiling_from_the_truth_it_is_given():
    from modalmerge.evaluation.time_series import RunTruth, score_time_series

    data = _tiny_time_series_input()
    true = score_time_series(data).arrays["target"]  # (2 subjects, 8 volumes, 3 ROIs)
    subjects = ["sub-4", "sub-5"]
    index = np.arange(8)
    # noise-free runs that equal the observed ones but for scale, regional truth likewise
    truths = {
        s: RunTruth(evoked=true[i] * 2.0, noisefree=true[i] * 3.0 + 1.0, volume_index=index)
        for i, s in enumerate(subjects)
    }
    out = score_time_series(data, truth=lambda ids: {s: truths[s] for s in ids})
    assert out.scores["noise_ceiling"]["pearson_r"] == pytest.approx(1.0)
    assert out.scores["oracle"]["pearson_r"] == pytest.approx(1.0)
    assert out.scores["regional_truth"]["pearson_r"] == pytest.approx(1.0)
    assert out.scores["model"]["fraction_of_noise_ceiling"] == pytest.approx(
        out.scores["model"]["pearson_r"]
    )
    np.testing.assert_array_equal(out.arrays["truth_evoked"], true * 2.0)
    np.testing.assert_allclose(out.arrays["oracle"], true * 3.0 + 1.0, rtol=1e-6)
    # the ceiling's direct path and the oracle's windows are separate: a noise-free run
    # missing a scored volume is an error, not a silently shorter ceiling
    short = {s: RunTruth(t.evoked, t.noisefree[:6], index[:6]) for s, t in truths.items()}
    with pytest.raises(ValueError, match="lacks scored volumes"):
        score_time_series(data, truth=lambda ids: {s: short[s] for s in ids})


def test_homolog_attention_scores_peaks_on_the_other_hemisphere():
    from modalmerge.evaluation.homologs import homolog_attention

    attention = np.array([[0.1, 0.9, 0.0], [0.2, 0.3, 0.5]])  # target R_a, R_b; cond L_b, L_a, x
    scores, record = homolog_attention(attention, ["R_a", "R_b"], ["L_b", "L_a", "x"])
    assert scores["homolog_attention_fraction"] == 0.5
    assert scores["homolog_attention_chance"] == 1 / 3
    assert {"homolog_attention_null", "homolog_attention_null_p95"} <= set(scores)
    assert 0 < scores["homolog_attention_p_value"] <= 1
    assert record["null_permutations"] == 1000 and record["null_seed"] == 0
    assert record["peaks_on_homolog"] == ["R_a"] and record["n_pairs"] == 2
    assert homolog_attention(attention, ["a", "b"], ["c", "d", "e"]) is None


def test_attention_null_is_chance_for_random_attention_and_small_p_for_planted():
    from modalmerge.evaluation.homologs import homolog_attention
    from modalmerge.evaluation.scoring import attention_peak_null

    n = 40
    rng = np.random.default_rng(3)
    targets = [f"R_{i}" for i in range(n)]
    conditions = [f"L_{i}" for i in range(n)]
    # planted: every target row peaks on its homolog
    planted = np.eye(n) + 0.1 * rng.random((n, n))
    scores, _ = homolog_attention(planted, targets, conditions)
    assert scores["homolog_attention_fraction"] == 1.0
    assert abs(scores["homolog_attention_null"] - 1 / n) < 0.2 / n
    assert scores["homolog_attention_null_p95"] < 0.1
    assert scores["homolog_attention_p_value"] == 1 / 1001
    # uniform random attention: observed about the null, p not small
    pairs = {i: i for i in range(n)}
    p_values = []
    for seed in range(20):
        uniform = np.random.default_rng(100 + seed).random((n, n))
        observed = float(np.mean(uniform.argmax(axis=1) == np.arange(n)))
        null = attention_peak_null(uniform, pairs, seed=seed)
        assert abs(null["null"] - 1 / n) < 0.2 / n and observed <= null["null_p95"] + 2 / n
        p_values.append(null["p_value"])
    assert p_values[0] > 0.2  # this matrix: p not small
    # p is about uniform under the null: rarely small (one draw of 20 here)
    assert np.median(p_values) > 0.2 and np.mean(np.array(p_values) < 0.05) <= 0.15
    # seeded: the same attention gives the same null
    assert attention_peak_null(planted, pairs) == attention_peak_null(planted, pairs)


def test_dice_scores_on_a_tiny_label_image():
    from modalmerge.evaluation.image import dice_scores, nearest_label

    labels = np.array([0.0, 1.0, 2.0])
    true = np.array([[0, 1, 1, 2]], dtype=float)
    pred = nearest_label(np.array([[0.2, 0.9, 1.6, 2.4]]), labels)
    np.testing.assert_array_equal(pred, [[0, 1, 2, 2]])
    scores = dice_scores(pred, true, labels)
    assert scores["dice_foreground"] == 1.0
    assert scores["dice"] == pytest.approx(np.mean([2 * 1 / 3, 2 * 1 / 3]))
    assert dice_scores(np.zeros(3), np.zeros(3), labels) == {"dice_foreground": 1.0}


# --- one definition of FC and of FC similarity (issue #10) --------------------------------


def test_one_connectivity_definition_is_exact_pearson_everywhere(rng):
    """Parcellation, scores and figures share one FC: ``correlation`` is the exact sample
    Pearson matrix (not nilearn's Ledoit-Wolf shrunk one, whose off-diagonals are smaller)."""
    from modalmerge.data.parcellation.connectivity import connectivity as data_connectivity
    from modalmerge.evaluation import metrics

    assert metrics.connectivity is data_connectivity
    x = rng.standard_normal((12, 8))  # few volumes: shrinkage would be large here
    np.testing.assert_allclose(data_connectivity(x), np.corrcoef(x.T), atol=1e-12)
    stacked = data_connectivity([x, x[::-1]])
    np.testing.assert_allclose(stacked[1], np.corrcoef(x[::-1].T), atol=1e-12)
    x[:, 3] = 1.5  # a constant ROI: 0 off the diagonal, 1 on it, never NaN
    fc = data_connectivity(x)
    assert fc[3, 3] == 1.0 and not fc[3, np.arange(8) != 3].any()
    assert data_connectivity(x[:2]).shape == (8, 8)  # two volumes suffice for a correlation
    with pytest.raises(ValueError, match="T >= 3"):
        data_connectivity(x[:2], "partial correlation")


def test_fc_similarity_of_matrices_defines_the_constant_case(rng):
    from modalmerge.evaluation.metrics import fc_matrix_similarity

    true = np.corrcoef(rng.standard_normal((5, 40)))
    assert fc_matrix_similarity(true * 0.5 + 0.1, true) == pytest.approx(1.0)
    flat = np.eye(5)  # e.g. the connectivity of an all-constant prediction
    assert fc_matrix_similarity(flat, true) == 0.0
    with pytest.raises(ValueError, match="constant"):
        fc_matrix_similarity(flat, true, on_constant="raise")
    with pytest.raises(ValueError, match="at least 3 ROIs"):
        fc_matrix_similarity(np.eye(2), np.eye(2))
    series = rng.standard_normal((2, 30, 5))  # the series form is the same number
    expected = [fc_matrix_similarity(np.corrcoef(p.T), np.corrcoef(t.T)) for p, t in
                zip(series, series[::-1], strict=True)]  # fmt: skip
    np.testing.assert_allclose(fc_similarity(series, series[::-1]), expected, atol=1e-12)
    constant = np.ones((1, 30, 5))
    assert fc_similarity(constant, series[:1])[0] == 0.0


def test_region_profile_scores_leave_out_the_self_column_and_mutate_nothing():
    from modalmerge.evaluation.region_profiles import ProfileTable, score_region_profiles
    from modalmerge.evaluation.scoring import Scored

    regions = ["L_1", "L_2", "L_3", "R_1"]
    true = np.array([[1.0, 5, 2, 3], [4, 1.0, 0, 2], [2, 3, 1.0, 1]])  # rows: test L_1..L_3
    pred = true.copy()
    pred[[0, 1, 2], [0, 1, 2]] = [-9.0, 9.0, -9.0]  # only the self columns differ
    table = ProfileTable(
        target_names=[f"fc_{r}" for r in regions],
        condition_names=[f"mpc_{r}" for r in regions],
        target_regions=regions,
        mean=np.zeros(4),
        std=np.ones(4),
        holdout=None,
        regions=set(regions),
    )
    arrays = {"subjects": np.array(regions[:3]), "prediction": pred, "target": true,
              "group_mean": np.tile(true.mean(0), (3, 1)), "ridge": pred}  # fmt: skip
    scored = Scored(scores={"model": {"r2": 0.5}}, arrays=dict(arrays))
    attention = np.eye(4)[[0, 1, 3, 2]]  # R_1 and L_3 attend elsewhere
    out = score_region_profiles(scored, table, attention)
    assert out.scores["model"]["r2"] == 0.5 and out.scores["model"]["pearson_r"] == 1.0
    assert out.scores["ridge"]["pearson_r"] == 1.0
    assert out.scores["model"]["matched_attention_fraction"] == 0.5
    assert 0 < out.scores["model"]["matched_attention_p_value"] <= 1
    assert out.extra["matched_attention"]["null_permutations"] == 1000
    assert out.extra["profile"] == {"prefix": "fc", "columns": table.target_names}
    assert scored.scores == {"model": {"r2": 0.5}} and set(scored.arrays) == set(arrays)
    assert "model_raw" in out.arrays and scored.extra == {}


def _time_split_input(n_test_volumes=43, rois=3):
    """One subject, split in time: training windows of 2 on volumes 0..59, test windows
    on volumes 70..70+n_test_volumes-1, a model that is the target plus noise."""
    from modalmerge.evaluation.scoring import BaselineSettings, ScoringInput
    from modalmerge.stages.common import SplitArrays

    rng = np.random.default_rng(11)
    run = rng.standard_normal((70 + n_test_volumes, 2 * rois)).astype(np.float32)
    run[:, rois:] += run[:, :rois]  # the "right" ROIs follow the "left" ones

    def windows(first, last):
        starts = np.arange(first, last - 1)
        wins = np.stack([run[s : s + 2] for s in starts])
        return ["sub-1"] * len(starts), starts, wins[..., :rois], wins[..., rois:]

    subs, starts, cond, target = windows(0, 60)
    train = SplitArrays(subjects=subs, window_start=starts, condition=cond, target=target)
    subs, starts, cond, target = windows(70, 70 + n_test_volumes)
    prediction = target + rng.standard_normal(target.shape).astype(np.float32)
    test = SplitArrays(subs, starts, condition=cond, target=target, prediction=prediction)
    return ScoringInput(
        condition="time_series",
        train=train,
        test=test,
        x_train=cond.reshape(len(cond), -1),
        x_test=cond.reshape(len(cond), -1),
        baselines=BaselineSettings(alphas=np.array([0.1, 1.0, 10.0])),
    ), run[70:, rois:]


def test_time_split_test_block_is_cut_into_scored_units():
    """evaluate.time_units: the test block becomes n contiguous units of equal length (the
    remainder left out), each scored like a run, so intervals have n units; the whole
    block stays in predictions.npz."""
    from modalmerge.evaluation.metrics import pearson_per_roi
    from modalmerge.evaluation.time_series import score_time_series

    data, truth = _time_split_input()
    whole = score_time_series(data, by_time=True)
    assert whole.per_unit["units"] == ["sub-1:test"]
    cut = score_time_series(data, by_time=True, time_units=5)
    assert cut.per_unit["units"] == [f"sub-1:test-{k:02d}" for k in range(5)]
    assert cut.extra["time_units"] == 5
    model = cut.arrays["prediction"][0]  # whole block: 43 volumes
    assert model.shape == (43, 3) and np.array_equal(cut.arrays["target"][0], truth)
    for k in range(5):  # 43 // 5 = 8 volumes per unit, the last 3 volumes left out
        part = slice(8 * k, 8 * (k + 1))
        r = pearson_per_roi(model[None, part], truth[None, part]).mean()
        assert cut.per_unit["model"]["pearson_r"][k] == pytest.approx(r, abs=1e-6)
    for name in ("model", "group_mean", "ridge"):  # paired: every predictor on the same units
        assert len(cut.per_unit[name]["pearson_r"]) == 5
        assert cut.scores[name]["pearson_r"] == pytest.approx(
            np.mean(cut.per_unit[name]["pearson_r"])
        )
    with pytest.raises(ValueError, match="time_units 20"):
        score_time_series(data, by_time=True, time_units=20)  # 2 volumes per unit


def test_two_experiments_realism_ratios_are_compared_as_ratios_of_means(tmp_path):
    """compare_experiments on a realism ratio with its parts: the difference of the two
    ratios of means over the common truth; without the truth in common, per unit."""
    from modalmerge.evaluation.intervals import paired_ratio_difference
    from modalmerge.evaluation.summary import compare_experiments

    units, key = ["sub-01", "sub-02", "sub-03", "sub-04", "sub-05"], "inter_roi_correlation"
    true = [0.22, 0.2, 0.12, 0.01, 0.18]

    def record(name, mine, truth=true):
        per_unit = {"units": units, "model": {
            f"realism_ratio_{key}": [m / t for m, t in zip(mine, truth, strict=True)],
            f"realism_{key}": mine, f"realism_truth_{key}": truth}}  # fmt: skip
        return {**_record(name), "method": "diffusion", "per_unit": per_unit}

    mine, other = [0.2, 0.25, 0.1, 0.05, 0.16], [0.15, 0.2, 0.08, 0.0, 0.12]
    a = write_metrics(tmp_path / "a.json", record("a", mine))
    b = write_metrics(tmp_path / "b.json", record("b", other))
    diff, _ = compare_experiments(a, b, f"realism_ratio_{key}")
    assert diff == paired_ratio_difference(mine, other, true)
    assert diff.value == pytest.approx((sum(mine) - sum(other)) / sum(true))
    shifted = write_metrics(tmp_path / "c.json", record("c", other, [t + 0.1 for t in true]))
    per_unit, _ = compare_experiments(a, shifted, f"realism_ratio_{key}")
    assert per_unit.value == pytest.approx(
        np.mean([m / t - o / (t + 0.1) for m, o, t in zip(mine, other, true, strict=True)])
    )
