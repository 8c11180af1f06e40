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
    from modalmerge.stages.evaluate import evaluate_experiment
    from modalmerge.stages.train import train_experiment

    write_shards(*make_inputs(tmp_path), tmp_path / "shards", PARAMS)
    experiment = {
        "name": "tiny_diffusion", "condition": "image", "target": "time_series",
        "encoder": "cnn", "decoder": "denoiser", "method": "diffusion",
        "embedding_dim": 16, "heads": 2, "encoder_options": {"channels": 4, "n_blocks": 1},
        "decoder_options": {"n_layers": 1, "time_patch": 2},
        "method_options": {"train_steps": 20, "sample_steps": 5, "target_scale": 0.01},
    }  # fmt: skip
    settings = {"seed": 0, "epochs": 1, "batch_size": 4, "lr": 0.003, "patience": 5}
    model = train_experiment(tmp_path / "shards", experiment, settings, tmp_path / "model")
    out = tmp_path / "eval"
    record = evaluate_experiment(
        model, tmp_path / "shards", experiment, {"samples": 3}, out / "m.json", out / "p.npz"
    )
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
