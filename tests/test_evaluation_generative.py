"""Scores of generated samples: CRPS, spread-skill, realism ratios, per-subject scoring."""

from __future__ import annotations

import numpy as np
import pytest

from modalmerge.evaluation.generative import (
    crps_ensemble,
    realism_ratios,
    realism_statistics,
    score_samples,
    spread_skill,
)
from tests._model_fixtures import fit_and_evaluate


def test_crps_is_the_fair_pairwise_estimator():
    rng = np.random.default_rng(0)
    members, truth = rng.normal(size=(5, 7)), rng.normal(size=7)
    s = len(members)
    pairs = np.abs(members[:, None] - members[None]).sum(axis=(0, 1))
    expected = np.abs(members - truth).mean(axis=0) - pairs / (2 * s * (s - 1))
    assert np.allclose(crps_ensemble(members, truth), expected)


def test_crps_of_a_large_gaussian_ensemble_matches_the_closed_form():
    rng = np.random.default_rng(1)
    members = rng.normal(size=(4000, 1))
    y = np.array([0.7])
    # CRPS of N(0, 1) at y: y (2 Phi(y) - 1) + 2 phi(y) - 1 / sqrt(pi)
    from scipy.stats import norm

    closed = y * (2 * norm.cdf(y) - 1) + 2 * norm.pdf(y) - 1 / np.sqrt(np.pi)
    assert crps_ensemble(members, y) == pytest.approx(closed, abs=0.02)


def test_crps_of_exact_draws_is_unbiased_at_any_size_but_plug_in_and_recentred_sets_are_not():
    # What docs/benchmarks.md ("Where the CRPS is lost") rests on: a climatology or a
    # residual bootstrap (exact draws of the truth's distribution) scores the distribution's
    # own CRPS whatever its size; a Gaussian refitted to those draws' mean and SD pays for
    # the estimate; re-centring a small set on its own mean is rewarded.
    rng = np.random.default_rng(2)
    y = rng.normal(size=40_000)
    own = 1 / np.sqrt(np.pi)  # expected CRPS of N(0, 1) for truths drawn from it
    for n in (5, 45):
        draws = rng.normal(size=(n, y.size))
        assert crps_ensemble(draws, y).mean() == pytest.approx(own, rel=0.01)
    draws = rng.normal(size=(45, y.size))
    plug_in = draws.mean(axis=0) + draws.std(axis=0, ddof=1) * rng.normal(size=(64, y.size))
    assert crps_ensemble(plug_in, y).mean() > own * 1.008
    small = rng.normal(size=(9, y.size))
    assert crps_ensemble(small - small.mean(axis=0), y).mean() < own * 0.96


def test_crps_needs_two_members_and_matching_shapes():
    with pytest.raises(ValueError, match="at least 2"):
        crps_ensemble(np.zeros((1, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="differ in shape"):
        crps_ensemble(np.zeros((3, 3)), np.zeros(4))


def test_spread_skill_is_one_for_a_calibrated_ensemble_and_low_for_an_overconfident_one():
    rng = np.random.default_rng(2)
    n, s = 4000, 8
    truth = rng.normal(size=n)
    calibrated = rng.normal(size=(s, n))  # truth and members from the same N(0, 1)
    assert spread_skill(calibrated, truth) == pytest.approx(1.0, abs=0.05)
    assert spread_skill(0.3 * calibrated, truth) < 0.5


def _ar1(rng, n, t, r, phi):
    x = np.zeros((n, t, r))
    for i in range(1, t):
        x[:, i] = phi * x[:, i - 1] + rng.normal(size=(n, r))
    return x


def test_realism_ratios_are_one_for_the_truth_and_flag_white_noise():
    rng = np.random.default_rng(3)
    truth = _ar1(rng, 20, 50, 4, 0.8)
    assert all(v == pytest.approx(1.0) for v in realism_ratios(truth, truth, 2.0).values())
    noise = realism_ratios(rng.normal(size=truth.shape), truth, 2.0)
    assert noise["realism_ratio_lag1_autocorrelation"] < 0.3  # white noise: no memory
    assert noise["realism_ratio_spectral_slope"] < 0.3  # and a flat spectrum
    stats = realism_statistics(truth, 2.0)
    assert stats["spectral_slope"] < 0 and 0 < stats["low_frequency_share"] < 1


def test_score_samples_reports_per_subject_crps_against_the_climatology():
    rng = np.random.default_rng(4)
    n, s, t, r = 6, 4, 20, 3
    truth = rng.normal(size=(n, t, r))
    subjects = ["a", "a", "b", "b", "c", "c"]
    starts = np.array([0, 10, 0, 10, 0, 10])
    train, train_starts = rng.normal(size=(8, t, r)), np.array([0, 10] * 4)
    good = truth[:, None] + 0.1 * rng.normal(size=(n, s, t, r))  # close to the truth
    found = score_samples(good, truth, subjects, starts, train, train_starts, 2.0)
    assert found.units == ["a", "b", "c"]
    model, clim = found.per_unit["model"], found.per_unit["climatology"]
    assert len(model["crps"]) == 3 and all(len(v) == 3 for v in model.values())
    assert all(m < c for m, c in zip(model["crps"], clim["crps"], strict=True))
    assert found.scores["model"]["crps_climatology"] == pytest.approx(np.mean(clim["crps"]))
    assert found.scores["model"]["fc_sample_true"] > 0.8
    with pytest.raises(ValueError, match="do not match"):
        score_samples(good[:, 0], truth, subjects, starts, train, train_starts, 2.0)


def test_the_evaluate_stage_scores_a_diffusion_experiment_from_its_samples(tmp_path):
    import json

    from test_shards import PARAMS, make_inputs

    from modalmerge.data.shards.subjects import write_shards

    write_shards(*make_inputs(tmp_path), tmp_path / "shards", PARAMS)
    experiment = {
        "name": "tiny_diffusion", "condition": "image", "target": "time_series",
        "encoder": "cnn", "decoder": "denoiser", "method": "diffusion",
        "embedding_dim": 16, "heads": 2, "encoder_options": {"channels": 4, "n_blocks": 1},
        "decoder_options": {"n_layers": 1, "time_patch": 2},
        "method_options": {"train_steps": 20, "sample_steps": 5, "target_scale": 0.01},
    }  # fmt: skip
    record, out = fit_and_evaluate(tmp_path, experiment, {"samples": 3})
    scores = record["scores"]["model"]
    for key in ("crps", "crps_climatology", "spread_skill", "sample_fc_top1"):
        assert np.isfinite(scores[key]), key
    assert all(f"realism_ratio_{k}" in scores for k in ("lag1_autocorrelation", "spectral_slope"))
    assert record["scores"]["climatology"]["crps"] == scores["crps_climatology"]
    written = json.loads((out / "m.json").read_text())
    units = written["per_unit"]["units"]
    assert len(written["per_unit"]["model"]["crps"]) == len(units) == 2
    arrays = np.load(out / "p.npz")
    assert arrays["samples"].shape[1:] == (3, 8, 5)  # (windows, S, T, R)
    assert written["generative"]["samples_per_window"] == 3


def test_image_mmd_separates_shifted_image_sets_and_diversity_sees_identical_samples():
    from modalmerge.evaluation.generative import mmd, sample_diversity

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(30, 1, 4, 4, 4)), rng.normal(size=(30, 1, 4, 4, 4))
    same, shifted = mmd(a, b), mmd(a, b + 1.0)
    assert abs(same) < 0.05 and shifted > 0.2
    assert sample_diversity(np.repeat(a[:1], 4, axis=0), a[0]) == pytest.approx(0.0, abs=1e-6)
    assert sample_diversity(a[:4], a[0]) == pytest.approx(np.sqrt(2), rel=0.3)
    with pytest.raises(ValueError, match="at least 2"):
        mmd(a[:1], b)


def _image_split(images, repeats):
    """A split whose subjects each repeat their image once per window, as in the shards."""
    from modalmerge.stages.common import SplitArrays

    subjects = [f"sub-{i:02d}" for i in range(len(images)) for _ in range(repeats)]
    target = np.repeat(images, repeats, axis=0)
    return SplitArrays(subjects=subjects, window_start=np.zeros(len(target)), target=target)


def test_image_distances_count_each_subject_once_and_share_one_bandwidth():
    from modalmerge.evaluation.generative import mmd
    from modalmerge.stages.evaluate_samples import image_distances

    rng = np.random.default_rng(3)
    train_images, test_images = rng.normal(size=(40, 1, 4, 4, 4)), rng.normal(size=(20, 1, 4, 4, 4))
    train, test = _image_split(train_images, 3), _image_split(test_images, 3)
    # samples: independent draws of the image distribution, 4 per window
    samples = rng.normal(size=(len(test.subjects), 4, 1, 4, 4, 4))
    found = image_distances(
        samples, test, train, {"group_mean": np.repeat(train_images.mean(0, keepdims=True), 20, 0)}
    )
    model = found["model"]
    assert found["n_real_test"] == found["n_generated_per_set"] == 20
    assert found["n_real_train"] == 40
    # real vs real and generated vs real are ~0: the windows' duplicated images would
    # otherwise put kernel values of 1 into the within-set terms
    assert abs(model["image_mmd_reference"]) < 0.05 and abs(model["image_mmd"]) < 0.05
    once = mmd(train_images, test_images, found["bandwidth"])
    assert model["image_mmd_reference"] == pytest.approx(once)
    assert mmd(train.target, test.target, found["bandwidth"]) > once + 0.01  # duplicates
    # one image for every subject (the group mean) is far from the real distribution
    assert found["predictors"]["group_mean"]["image_mmd"] > 0.04 > abs(model["image_mmd"])
    # the bandwidth comes from the training images only: the same for other samples
    shifted = image_distances(samples + 1.0, test, train)
    assert shifted["bandwidth"] == found["bandwidth"]
    assert shifted["model"]["image_mmd"] > 0.1 + model["image_mmd"]


def test_the_evaluate_stage_scores_an_image_diffusion_experiment_per_subject(tmp_path):
    import json

    from test_shards import PARAMS, make_inputs

    from modalmerge.data.shards.subjects import write_shards

    write_shards(*make_inputs(tmp_path), tmp_path / "shards", PARAMS)
    experiment = {
        "name": "tiny_image_diffusion", "condition": "time_series", "target": "image",
        "encoder": "transformer", "decoder": "diffusion_unet", "method": "diffusion",
        "embedding_dim": 8, "heads": 2, "encoder_options": {"tokenize": "roi"},
        "decoder_options": {"channels": [8], "norm_num_groups": 4},
        "method_options": {"train_steps": 20, "sample_steps": 2},
    }  # fmt: skip
    record, out = fit_and_evaluate(tmp_path, experiment, {"samples": 3})
    written = json.loads((out / "m.json").read_text())
    units = written["per_unit"]["units"]
    assert len(units) == 2 and len(written["per_unit"]["model"]["sample_diversity"]) == 2
    scores = record["scores"]
    for key in ("ssim", "psnr", "sample_diversity", "image_mmd", "image_mmd_reference"):
        assert np.isfinite(scores["model"][key]), key
    assert np.isfinite(scores["model"]["image_mmd_sample_mean"])
    assert np.isfinite(scores["group_mean"]["image_mmd"])
    assert written["image_mmd"]["n_real_test"] == 2 and written["image_mmd"]["bandwidth"] > 0
    arrays = np.load(out / "p.npz")
    # one kept window per held-out subject: (subjects, S, C, *spatial)
    assert arrays["samples"].shape[:2] == (2, 3)
    assert arrays["samples"].shape[2:] == arrays["sample_target"].shape[1:]
    assert sorted(arrays["sample_subjects"].tolist()) == sorted(units)


def test_image_samples_figure_has_a_row_per_subject_and_checks_shapes():
    from modalmerge.viz.samples import image_samples_beside_truth

    rng = np.random.default_rng(0)
    samples, truth = rng.normal(size=(2, 5, 1, 4, 6, 4)), rng.normal(size=(2, 1, 4, 6, 4))
    fig = image_samples_beside_truth(samples, truth, ["sub-1", "sub-2"], n_shown=3)
    assert len(fig.axes) == 2 * (2 + 3)
    assert fig.axes[0].get_title() == "truth" and fig.axes[1].get_title() == "mean of 5"
    assert len(image_samples_beside_truth(samples, truth, max_rows=1).axes) == 2 + 4
    with pytest.raises(ValueError, match="do not match"):
        image_samples_beside_truth(samples[:, :, :, :3], truth)


def _shared_signal(rng, n, t, r, weight):
    """Windows ``(n, t, r)`` whose ROIs share a common signal of ``weight`` (their mean
    inter-ROI correlation grows with it; 0 leaves independent ROIs)."""
    common = rng.normal(size=(n, t, 1))
    return weight * common + rng.normal(size=(n, t, r))


def test_the_realism_score_is_the_ratio_of_means_and_survives_a_subject_near_zero():
    """One subject whose true mean inter-ROI correlation is near zero: its own ratio is
    far outside any band and drags the mean of the subjects' ratios, while the score over
    subjects (the ratio of the means of the parts) stays near the samples' true ratio."""
    rng = np.random.default_rng(3)
    t, r, s = 40, 6, 4
    weights = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0}  # d: uncorrelated ROIs
    truth = np.concatenate([_shared_signal(rng, 2, t, r, w) for w in weights.values()])
    subjects = [u for u in weights for _ in range(2)]
    # draws: the truth plus noise with a weak shared part of its own (0.03 to the samples'
    # mean inter-ROI correlation): a few hundredths off, as a model's draws are
    noise = [0.5 * _shared_signal(rng, len(truth), t, r, 0.35) for _ in range(s)]
    samples = np.stack([truth + e for e in noise], axis=1)
    starts = np.zeros(len(truth), dtype=int)
    found = score_samples(samples, truth, subjects, starts, truth, starts, 2.0)
    model, key = found.per_unit["model"], "realism_ratio_inter_roi_correlation"
    parts = model["realism_inter_roi_correlation"], model["realism_truth_inter_roi_correlation"]
    assert found.scores["model"][key] == pytest.approx(np.mean(parts[0]) / np.mean(parts[1]))
    assert abs(model["realism_truth_inter_roi_correlation"][3]) < 0.05  # d's truth: near 0
    assert abs(model[key][3] - 1) > 0.5  # d's own ratio: far off
    assert 0.75 < found.scores["model"][key] < 1.05  # a, b, c: about 0.9 each
    assert found.scores["model"][key] != pytest.approx(np.mean(model[key]))
    # the deterministic predictors' and the ensemble mean's ratios pool the same way
    group = {"group_mean": truth.mean(axis=0, keepdims=True).repeat(len(truth), axis=0)}
    found = score_samples(samples, truth, subjects, starts, truth, starts, 2.0, group)
    pooled = found.per_unit["group_mean"]
    assert found.scores["group_mean"][key] == pytest.approx(
        np.mean(pooled["realism_inter_roi_correlation"])
        / np.mean(pooled["realism_truth_inter_roi_correlation"])
    )
    mean_key = f"ensemble_mean_{key}"
    assert found.scores["model"][mean_key] == pytest.approx(
        np.mean(model["ensemble_mean_realism_inter_roi_correlation"]) / np.mean(parts[1])
    )


def test_summary_rows_give_a_realism_ratio_its_ratio_of_means_interval():
    from modalmerge.evaluation.intervals import ratio_of_means_ci
    from modalmerge.evaluation.summary import experiment_rows

    mine, true = [0.2, 0.25, 0.1, 0.05], [0.22, 0.2, 0.12, 0.01]
    ratios = [a / b for a, b in zip(mine, true, strict=True)]
    record = {
        "experiment": "e", "condition": "image", "target": "time_series", "method": "diffusion",
        "scores": {"model": {"realism_ratio_inter_roi_correlation": sum(mine) / sum(true)}},
        "per_unit": {"units": list("abcd"), "model": {
            "realism_ratio_inter_roi_correlation": ratios,
            "realism_inter_roi_correlation": mine,
            "realism_truth_inter_roi_correlation": true}},
    }  # fmt: skip
    row = next(r for r in experiment_rows(record) if r[5] == "realism_ratio_inter_roi_correlation")
    low, high = ratio_of_means_ci(mine, true)
    assert (float(row[7]), float(row[8]), row[9]) == (low, high, "4")
    assert low < sum(mine) / sum(true) < high


def test_summary_difference_rows_of_a_realism_ratio_use_the_ratios_of_means():
    """model − group mean on a realism ratio: the difference of the two ratios of means over
    the same truth (a subject whose true statistic is near zero does not dominate it)."""
    from modalmerge.evaluation.intervals import paired_ratio_difference
    from modalmerge.evaluation.summary import experiment_rows

    key, true = "inter_roi_correlation", [0.22, 0.2, 0.12, 0.01, 0.18]
    mine, group = [0.2, 0.25, 0.1, 0.05, 0.16], [0.02, -0.03, 0.01, 0.04, 0.0]

    def units(values):
        return {f"realism_ratio_{key}": [v / t for v, t in zip(values, true, strict=True)],
                f"realism_{key}": values, f"realism_truth_{key}": true}  # fmt: skip

    record = {
        "experiment": "e", "condition": "image", "target": "time_series", "method": "diffusion",
        "scores": {"model": {}, "group_mean": {}},
        "per_unit": {"units": list("abcde"), "model": units(mine), "group_mean": units(group)},
    }  # fmt: skip
    rows = [r for r in experiment_rows(record) if r[4] == "model-group_mean"]
    assert {r[5] for r in rows} == {f"realism_ratio_{key}", f"realism_{key}"}
    row = next(r for r in rows if r[5] == f"realism_ratio_{key}")
    expected = paired_ratio_difference(mine, group, true)
    assert float(row[6]) == pytest.approx((sum(mine) - sum(group)) / sum(true))
    assert (float(row[7]), float(row[8]), row[9]) == (expected.ci_low, expected.ci_high, "5")
