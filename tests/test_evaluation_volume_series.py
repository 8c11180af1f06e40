"""Scores of volume_series targets (windows of BOLD volumes): voxel-wise r over time and MSE
per held-out subject, against the training subjects' mean window."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from modalmerge.evaluation.intervals import BEATS, DOES_NOT_BEAT, paired_difference, verdict
from modalmerge.evaluation.scoring import Scored
from modalmerge.evaluation.volume_series import (
    add_volume_sample_scores,
    brain_mask,
    score_volume_series,
    volume_realism_statistics,
    window_scores,
)
from tests._model_fixtures import fit_and_evaluate

T, GRID = 6, (3, 4, 2)
STARTS = (0, 6)


def _cohort(rng, common, n_subjects, shared=0.5):
    """Windows ``(n, T, D, H, W)`` of n subjects at STARTS: a small shared time course (what
    the group mean can know) plus each subject's own fluctuations; voxel (0, 0, 0) is out of
    the brain (always 0)."""
    windows, subjects, starts = [], [], []
    for i in range(n_subjects):
        for s in STARTS:
            w = shared * common[s] + rng.normal(size=(T, *GRID))
            w[:, 0, 0, 0] = 0.0
            windows.append(w)
            subjects.append(f"sub-{i:02d}")
            starts.append(s)
    return np.asarray(windows, dtype=np.float32), subjects, np.asarray(starts)


def _data(prediction, seed=0, n_test=6):
    rng = np.random.default_rng(seed)
    common = {s: rng.normal(size=(T, *GRID)) for s in STARTS}  # shared by every subject
    train_y, train_s, train_start = _cohort(rng, common, 12)
    test_y, test_s, test_start = _cohort(rng, common, n_test)
    train = SimpleNamespace(target=train_y, subjects=train_s, window_start=train_start)
    pred = prediction(test_y, rng)
    test = SimpleNamespace(target=test_y, subjects=test_s, window_start=test_start, prediction=pred)
    return SimpleNamespace(train=train, test=test)


def _verdict(scored: Scored, metric="pearson_r"):
    unit = scored.per_unit
    return verdict(paired_difference(unit["model"][metric], unit["group_mean"][metric]))


def test_a_perfect_prediction_scores_r_one_and_beats_the_group_mean():
    scored = score_volume_series(_data(lambda y, rng: y.copy()))
    model = scored.scores["model"]
    assert model["pearson_r"] == pytest.approx(1.0)
    assert model["mse"] == pytest.approx(0.0)
    group = scored.scores["group_mean"]
    assert 0.0 < group["pearson_r"] < 0.5 and group["mse"] > 0.5
    assert scored.per_unit["units"] == [f"sub-{i:02d}" for i in range(6)]
    assert len(scored.per_unit["model"]["mse"]) == 6
    assert _verdict(scored) == BEATS
    assert scored.extra["primary_metric"] == "pearson_r"
    assert scored.extra["volume_series"]["in_brain_voxels"] == int(np.prod(GRID)) - 1
    assert not scored.arrays["brain_mask"][0, 0, 0]


def test_a_shuffled_prediction_does_not_beat_the_group_mean():
    def shuffled(y, rng):  # another subject's window, its volumes in another order
        return y[np.roll(np.arange(len(y)), 2)][:, rng.permutation(T)]

    scored = score_volume_series(_data(shuffled))
    assert abs(scored.scores["model"]["pearson_r"]) < 0.15
    assert scored.scores["model"]["mse"] > scored.scores["group_mean"]["mse"]
    assert _verdict(scored) == DOES_NOT_BEAT


def test_the_group_mean_is_the_training_mean_window_at_the_same_start():
    data = _data(lambda y, rng: y.copy())
    scored = score_volume_series(data)
    train = data.train
    expected = train.target[train.window_start == data.test.window_start[1]].mean(axis=0)
    np.testing.assert_allclose(scored.arrays["group_mean"][1], expected, rtol=1e-5, atol=1e-6)


def test_window_scores_count_constant_voxels_as_zero_and_ignore_voxels_outside_the_brain():
    true = np.random.default_rng(1).normal(size=(T, *GRID))
    mask = np.ones(GRID, dtype=bool)
    pred = true.copy()
    pred[:, 1, 1, 1] = 3.0  # constant in time: r = 0 for that voxel
    r, _ = window_scores(pred, true, mask)
    assert r == pytest.approx(1.0 - 1.0 / mask.sum())
    mask[1, 1, 1] = False
    assert window_scores(pred, true, mask) == (pytest.approx(1.0), pytest.approx(0.0))


def test_mismatched_shapes_are_a_clear_error():
    data = _data(lambda y, rng: y[:, :, :, :, :1].copy())
    with pytest.raises(ValueError, match=r"predictions of shape .* but targets of shape"):
        score_volume_series(data)
    with pytest.raises(ValueError, match="predicted window of shape"):
        window_scores(np.zeros((T, *GRID)), np.zeros((T - 1, *GRID)), np.ones(GRID, bool))
    with pytest.raises(ValueError, match=r"\(n, T, D, H, W\)"):
        brain_mask(np.zeros((4, T, 3)))
    data = _data(lambda y, rng: y.copy())
    data.train.target = data.train.target[:, :-1]
    with pytest.raises(ValueError, match="training windows of shape"):
        score_volume_series(data)


def test_sample_diversity_is_zero_for_identical_samples_and_grows_with_their_spread():
    data = _data(lambda y, rng: y.copy())
    test = data.test
    n = len(test.target)
    found = {}
    for spread in (0.0, 0.5, 2.0):
        rng = np.random.default_rng(2)
        samples = test.target[:, None] + spread * rng.normal(size=(n, 4, T, *GRID))
        scored = score_volume_series(data)
        add_volume_sample_scores(scored, samples.astype(np.float32), test, data.train)
        found[spread] = scored.scores["model"]["sample_diversity"]
        assert len(scored.per_unit["model"]["sample_diversity"]) == 6
        assert scored.arrays["samples"].shape[1:] == (4, T, *GRID)
    assert found[0.0] == 0.0 and 0.4 < found[0.5] < 0.6 and 1.6 < found[2.0] < 2.4
    with pytest.raises(ValueError, match="samples of shape"):
        add_volume_sample_scores(scored, np.zeros((n, 4, T, 3, 4, 1)), test, data.train)


def _known_mean_data(seed=0, spread=0.3, n_samples=8):
    """Held-out windows ``m + spread * noise`` whose mean m a model knows (the fixture's
    windows): a perfect ensemble draws ``m + spread * noise'``; the climatology (training
    windows at the same start) spreads about 1 around the shared course only."""
    data = _data(lambda y, rng: y.copy(), seed=seed)
    rng = np.random.default_rng(seed + 10)
    m = data.test.target.astype(np.float64)
    data.test.target = (m + spread * rng.normal(size=m.shape)).astype(np.float32)
    data.test.target[:, :, 0, 0, 0] = 0.0  # out of the brain
    draws = m[:, None] + spread * rng.normal(size=(len(m), n_samples, *m.shape[1:]))
    data.test.prediction = draws.mean(axis=1).astype(np.float32)
    return data, draws.astype(np.float32)


def _sample_scores(data, samples):
    scored = score_volume_series(data)
    add_volume_sample_scores(scored, samples, data.test, data.train)
    return scored


def test_a_perfect_ensemble_is_calibrated_realistic_and_beats_climatology_on_crps():
    data, samples = _known_mean_data()
    scored = _sample_scores(data, samples)
    model = scored.scores["model"]
    assert 0.85 < model["spread_skill"] < 1.15
    assert model["crps"] < 0.5 * model["crps_climatology"]
    assert scored.scores["climatology"]["crps"] == model["crps_climatology"]
    diff = scored.extra["generative"]["crps_climatology_minus_model"]
    assert diff["ci_low"] > 0 and diff["n"] == 6  # per held-out subject
    for stat in ("lag1_autocorrelation", "inter_voxel_correlation", "temporal_sd"):
        assert len(scored.per_unit["model"][f"realism_ratio_{stat}"]) == 6
    assert 0.9 < model["realism_ratio_temporal_sd"] < 1.1  # the samples vary like the truth
    # the ensemble mean (the prediction) is smoother: its temporal SD ratio is lower
    assert model["ensemble_mean_realism_ratio_temporal_sd"] < model["realism_ratio_temporal_sd"]
    assert "realism_ratio_temporal_sd" in scored.scores["group_mean"]


def test_a_constant_ensemble_has_no_spread_and_loses_to_a_spread_one_on_crps():
    data, samples = _known_mean_data()
    constant = np.repeat(samples.mean(axis=1, keepdims=True), samples.shape[1], axis=1)
    flat = _sample_scores(data, constant).scores["model"]
    assert flat["spread_skill"] == 0.0 and flat["sample_diversity"] == 0.0
    assert flat["crps"] > _sample_scores(data, samples).scores["model"]["crps"]
    with pytest.raises(ValueError, match=">= 2 samples"):
        _sample_scores(data, samples[:, :1])


def test_volume_realism_statistics_of_known_windows():
    t = np.arange(8, dtype=np.float64)
    ramp = np.stack([t, t, -t, np.full(8, 2.0)], axis=1)[None]  # (1, T, V): 4th voxel constant
    found = volume_realism_statistics(ramp)
    # pairs of the 3 varying voxels: r = +1 once, -1 twice -> mean -1/3
    assert found["inter_voxel_correlation"] == pytest.approx(-1 / 3)
    # a ramp: lag-1 r near 1 (centred on the whole window's mean, as the ROI realism is)
    assert found["lag1_autocorrelation"] == pytest.approx(0.9375)
    assert found["temporal_sd"] == pytest.approx(3 * t.std() / 4)  # the constant voxel: SD 0
    noise = np.random.default_rng(0).normal(size=(50, 40, 30))
    white = volume_realism_statistics(noise)
    assert abs(white["lag1_autocorrelation"]) < 0.05
    assert abs(white["inter_voxel_correlation"]) < 0.02


def _write_volume_shards(tmp_path):
    """Tiny shards with the volume_series view (test_shards' inputs, test_shards_volumes' runs)."""
    from test_shards import PARAMS, make_inputs
    from test_shards_volumes import VOLUMES, write_bold, write_events

    from modalmerge.data.shards.subjects import write_shards

    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    bold, events = write_bold(tmp_path, subjects), write_events(tmp_path)
    params = PARAMS | {"volume_series": VOLUMES}
    write_shards(subjects, parc, anat, tsv, texts, tmp_path / "shards", params, bold=bold,
                 events=events)  # fmt: skip
    return tmp_path / "shards"


def test_the_evaluate_stage_scores_a_volume_series_experiment(tmp_path):
    import json

    from modalmerge.evaluation.summary import summarize

    _write_volume_shards(tmp_path)
    experiment = {
        "name": "tiny_volumes", "condition": "image", "target": "volume_series",
        "encoder": "cnn", "decoder": "deconv", "method": "cross_attention",
        "embedding_dim": 16, "heads": 2, "encoder_options": {"channels": 4},
    }  # fmt: skip
    record, out = fit_and_evaluate(tmp_path, experiment)
    assert set(record["scores"]) == {"model", "group_mean"}
    written = json.loads((out / "m.json").read_text())
    assert written["primary_metric"] == "pearson_r"
    units = written["per_unit"]["units"]
    for name in ("model", "group_mean"):
        assert len(written["per_unit"][name]["pearson_r"]) == len(units) >= 2
        assert np.isfinite(written["scores"][name]["mse"])
    arrays = np.load(out / "p.npz")
    assert arrays["prediction"].shape[1:] == arrays["target"].shape[1:] == (8, 3, 4, 2)
    summarize([out / "m.json"], tmp_path / "summary.csv")
    rows = (tmp_path / "summary.csv").read_text()
    assert "model-group_mean,pearson_r" in rows and "model-group_mean,mse" in rows


def test_the_evaluate_stage_scores_a_volume_diffusion_experiment_from_its_sample_mean(tmp_path):
    import json

    from modalmerge.evaluation.summary import summarize

    _write_volume_shards(tmp_path)
    experiment = {
        "name": "tiny_volume_diffusion", "condition": "image", "target": "volume_series",
        "encoder": "cnn", "decoder": "diffusion_unet", "method": "diffusion",
        "embedding_dim": 8, "heads": 2, "encoder_options": {"channels": 4},
        # one level (odd sides); the window start in the timestep embedding: trained through
        # MONAI's inferer, saved, loaded and sampled with it
        "decoder_options": {"channels": [8], "norm_num_groups": 4, "start_embedding": True},
        "method_options": {"train_steps": 20, "sample_steps": 5},
    }  # fmt: skip
    record, out = fit_and_evaluate(tmp_path, experiment, {"samples": 3})
    written = json.loads((out / "m.json").read_text())
    units = written["per_unit"]["units"]
    assert len(written["per_unit"]["model"]["sample_diversity"]) == len(units) >= 2
    assert record["scores"]["model"]["sample_diversity"] > 0
    assert written["generative"]["samples_per_window"] == 3
    arrays = np.load(out / "p.npz")
    assert arrays["samples"].shape[1:] == (3, 8, 3, 4, 2)  # (windows, S, T, D, H, W)
    # the prediction is the samples' mean
    np.testing.assert_allclose(arrays["prediction"], arrays["samples"].mean(axis=1), atol=1e-5)
    # the samples' scores per held-out subject, and the paired CRPS row against climatology
    for key in ("crps", "crps_climatology", "spread_skill", "realism_ratio_temporal_sd"):
        assert len(written["per_unit"]["model"][key]) == len(units), key
    assert (
        written["scores"]["climatology"]["crps"] == written["scores"]["model"]["crps_climatology"]
    )
    summarize([out / "m.json"], tmp_path / "summary.csv")
    assert "model-climatology,crps," in (tmp_path / "summary.csv").read_text()


def test_a_sampler_ignoring_the_window_start_does_not_beat_the_climatology_on_crps():
    """Samples drawn from every training window whatever the held-out window's start (real
    BOLD windows, realistic but not in step with the task) lose to the climatology of the
    windows at the same start; the perfect ensemble of the same data beats it."""
    data, perfect = _known_mean_data()
    rng = np.random.default_rng(5)
    pool = data.train.target
    n, s = perfect.shape[:2]
    # (n, S, T, D, H, W): S distinct training windows per held-out window, any start
    agnostic = np.stack([pool[rng.choice(len(pool), s, replace=False)] for _ in range(n)])
    found = {}
    for name, samples in (("agnostic", agnostic), ("perfect", perfect)):
        scored = _sample_scores(data, samples.astype(np.float32))
        diff = scored.extra["generative"]["crps_climatology_minus_model"]
        found[name] = verdict(paired_difference(*(
            scored.per_unit["model"][k] for k in ("crps_climatology", "crps")
        )))  # fmt: skip
        assert diff["n"] == 6
        if name == "agnostic":
            assert diff["ci_high"] < 0  # worse than the climatology at the same start
            assert 0.8 < scored.scores["model"]["realism_ratio_temporal_sd"] < 1.25
    assert found == {"agnostic": DOES_NOT_BEAT, "perfect": BEATS}


def test_the_volume_figure_draws_truth_group_mean_mean_and_samples_on_one_slice():
    from modalmerge.stages.figures_modalities import volume_rows_figure

    rng = np.random.default_rng(0)
    mask = np.ones(GRID, bool)
    mask[0, 0, 0] = False
    arrays = {
        "target": rng.normal(size=(2, T, *GRID)), "group_mean": np.zeros((2, T, *GRID)),
        "prediction": rng.normal(size=(2, T, *GRID)), "subjects": np.array(["sub-01"] * 2),
        "window_start": np.array([12, 22]), "brain_mask": mask,
    }  # fmt: skip
    fig = volume_rows_figure(arrays, "det")
    assert len(fig.axes) == 3 * 5 + 1  # truth, group mean, prediction x 5 volumes + colour bar
    arrays["samples"] = rng.normal(size=(2, 3, T, *GRID))
    fig = volume_rows_figure(arrays, "gen")
    panels = fig.axes[:-1]
    assert len(panels) == 5 * 5 and panels[10].get_ylabel() == "mean of samples"
    assert "window start 12" in fig._suptitle.get_text()
    shown = panels[0].get_images()[0].get_array()  # truth, volume 0, slice z = 1
    want = np.where(mask, arrays["target"][0][0], np.nan)[:, :, GRID[2] // 2].T
    np.testing.assert_allclose(np.ma.filled(shown, np.nan), want)
    assert np.isnan(np.ma.filled(panels[0].get_images()[0].get_array(), np.nan)).sum() == (
        (~mask[:, :, GRID[2] // 2]).sum()
    )
