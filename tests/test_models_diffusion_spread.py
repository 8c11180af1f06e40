"""``method_options: {calibrate_spread: true}``: a residual diffusion model whose residual
draws are scaled by one number chosen after training on the validation subjects' CRPS,
so that draws as narrow as the training residuals widen to the held-out error."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from _model_fixtures import TINY_TRAIN, batch, tiny_shards
from test_models_diffusion_mean_from import FROZEN, _config, frozen_model, source_model

from modalmerge.evaluation.generative import crps_ensemble
from modalmerge.mean_sources import check_mean_sources
from modalmerge.models import MultiModalModel
from modalmerge.models.generative import adopt_mean
from modalmerge.models.spread import ScaledResiduals, calibrate_spread, fit_spread
from modalmerge.settings import from_config

SPREAD = {**FROZEN, "calibrate_spread": True}


def _windows(n=30, s=8, shape=(12, 3), truth_sd=1.0, draw_sd=0.5, seed=0):
    """Windows whose truth departs from the mean by ``truth_sd`` and whose residual draws
    spread ``draw_sd``: under-dispersed by ``truth_sd / draw_sd``."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(n, *shape))
    truth = mean + truth_sd * rng.normal(size=(n, *shape))
    residuals = draw_sd * rng.normal(size=(n, s, *shape))
    subjects = [f"sub-{i % 6:02d}" for i in range(n)]  # five windows per subject
    return mean, residuals, truth, subjects


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.7])
def test_the_scaled_crps_is_the_evaluate_stages_fair_crps_per_subject(scale):
    mean, residuals, truth, subjects = _windows()
    scored = ScaledResiduals(mean, residuals, truth, subjects)
    per_window = np.array([
        crps_ensemble(mean[i] + scale * residuals[i], truth[i]).mean() for i in range(len(truth))
    ])  # fmt: skip
    per_subject = [per_window[np.asarray(subjects) == s].mean() for s in sorted(set(subjects))]
    assert scored.crps(scale) == pytest.approx(np.mean(per_subject), rel=1e-12)


def test_the_best_scale_widens_under_dispersed_draws_to_the_error():
    """Draws at half the error's SD: the chosen scale is near 2 and brings the spread-skill
    to about 1 and the CRPS down; draws already calibrated keep a scale near 1."""
    scored = ScaledResiduals(*_windows(n=60, s=16, draw_sd=0.5))
    scale = scored.best_scale()
    assert 1.85 < scale < 2.15
    assert scored.crps(scale) < scored.crps(1.0) - 0.03  # 0.572 against 0.618
    assert scored.spread_skill(1.0) < 0.6 and 0.9 < scored.spread_skill(scale) < 1.1
    assert 0.9 < ScaledResiduals(*_windows(n=60, s=16, draw_sd=1.0)).best_scale() < 1.1


def test_scaled_residuals_refuse_broken_draws():
    mean, residuals, truth, subjects = _windows(n=6)
    with pytest.raises(ValueError, match=r"S >= 2"):
        ScaledResiduals(mean, residuals[:, :1], truth, subjects)
    with pytest.raises(ValueError, match="differ"):
        ScaledResiduals(mean[:, :5], residuals, truth, subjects)
    with pytest.raises(ValueError, match="5 subjects for 6 windows"):
        ScaledResiduals(mean, residuals, truth, subjects[:5])
    residuals[2, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="the residuals hold NaN"):
        ScaledResiduals(mean, residuals, truth, subjects)


@torch.no_grad()
@pytest.mark.parametrize("calibrate_mean", [False, True])
def test_samples_are_the_scaled_mean_plus_the_scaled_draws_and_saved_with_the_model(
    tmp_path, calibrate_mean
):
    """Samples are ``a mu + s r``: ``s`` the spread, ``a`` the mean's scale
    (``calibrate_mean``; 1 without), for trajectories too, and both survive save/load."""
    model = frozen_model({**SPREAD, "calibrate_mean": calibrate_mean})
    adopt_mean(model, source_model())
    model.eval()
    assert float(model.conditioner.spread) == 1.0  # until calibrated
    condition = batch("image", seed=2)
    mean = model.mean_head(*model.encode(condition))[:, None]
    before = model.sample(condition, n_samples=3, seed=5).samples
    model.conditioner.spread.fill_(1.5)
    shrink = 0.5 if calibrate_mean else 1.0
    if calibrate_mean:
        assert float(model.conditioner.mean_scale) == 1.0  # until calibrated
        model.conditioner.mean_scale.fill_(shrink)
    else:
        assert not hasattr(model.conditioner, "mean_scale")
    after = model.sample(condition, n_samples=3, seed=5).samples
    expected = shrink * mean + 1.5 * (before - mean)
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-5)
    trajectory = model.sample(condition, n_samples=3, seed=5, return_trajectory=True).trajectory
    torch.testing.assert_close(trajectory[-1], after, atol=1e-5, rtol=1e-5)
    model.save(tmp_path / "model.pt")
    loaded = MultiModalModel.load(tmp_path / "model.pt").eval()
    assert float(loaded.conditioner.spread) == 1.5
    assert float(getattr(loaded.conditioner, "mean_scale", torch.ones(()))) == shrink
    assert torch.equal(loaded.sample(condition, n_samples=3, seed=5).samples, after)


def _batches(model, n_batches=3, truth_sd=2.0):
    """Validation-like batches whose targets are the mean head's prediction plus noise of
    ``truth_sd``: far wider than an untrained denoiser's draws."""
    out, rng = [], torch.Generator().manual_seed(0)
    for i in range(n_batches):
        condition = batch("image", seed=30 + i)
        with torch.no_grad():
            mean = model.eval().mean_head(*model.encode(condition))
        target = mean + truth_sd * torch.randn(mean.shape, generator=rng)
        out.append({"condition": condition, "target": target, "time_offset": None,
                    "subject": [f"sub-{i}{j}" for j in range(len(condition))]})  # fmt: skip
    return out


def test_calibration_sets_the_scale_that_lowers_the_validation_crps(caplog):
    model = frozen_model(SPREAD)
    adopt_mean(model, source_model())
    batches = _batches(model)
    model.train()
    with caplog.at_level(logging.INFO, logger="modalmerge.models.spread"):
        found = calibrate_spread(model, batches, n_samples=4, seed=0)
    assert model.training  # mode restored
    assert float(model.conditioner.spread) == pytest.approx(found.scale)
    assert found.scale > 1.2 and found.crps_after < found.crps_before
    assert found.spread_skill_after > found.spread_skill_before
    assert (found.n_subjects, found.n_samples) == (found.n_windows, 4)
    assert "spread calibrated on" in caplog.text
    assert fit_spread(frozen_model(), _batches(model)) is None  # not asked for: untouched


def test_calibration_refuses_models_without_it_and_empty_validation():
    with pytest.raises(ValueError, match="built with calibrate_spread"):
        calibrate_spread(frozen_model(), [])
    model = frozen_model(SPREAD)
    with pytest.raises(ValueError, match="validation split has none"):
        calibrate_spread(model, [])
    options = {k: v for k, v in SPREAD.items() if k not in ("mean_from", "mean_decoder_options")}
    with pytest.raises(ValueError, match="calibrate_spread needs residual: true"):
        frozen_model({**options, "residual": False})


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"calibrate_spread": "yes"}, "calibrate_spread: true or false, got 'yes'"),
        ({"calibrate_spread": True, "residual": False}, "needs method diffusion with residual"),
    ],
)
def test_a_bad_calibrate_spread_stops_the_config_naming_the_key(edit, message):
    config = _config(**edit)
    with pytest.raises(ValueError, match=message) as err:
        check_mean_sources(from_config(config).experiments)
    assert str(err.value).startswith("experiments[4].method_options.calibrate_spread: ")
    check_mean_sources(from_config(_config(calibrate_spread=True)).experiments)


@pytest.mark.slow
@pytest.mark.parametrize("calibrate_mean", [False, True])
def test_the_train_stage_calibrates_on_validation_and_evaluate_records_the_scale(
    tmp_path, calibrate_mean
):
    """End to end through the train and evaluate stages: the saved model carries a scale
    other than 1 (and a mean scale with ``calibrate_mean``), chosen on the validation split
    (recomputed here from the saved model's own draws), and metrics.json records them
    beside the sample scores."""
    from modalmerge.stages.common import experiment_dataset
    from modalmerge.stages.evaluate import evaluate_experiment
    from modalmerge.stages.train import SPREAD_SAMPLES, _loader, train_experiment

    shards = tiny_shards(tmp_path)
    source = {
        "name": "xattn", "condition": "image", "target": "time_series", "encoder": "cnn",
        "decoder": "transformer", "method": "cross_attention", "embedding_dim": 8, "heads": 2,
        "encoder_options": {"channels": 4}, "decoder_options": {"query": "roi"},
    }  # fmt: skip
    diffusion = {**source, "name": "diff", "decoder": "denoiser", "method": "diffusion",
                 "decoder_options": {"n_layers": 1},
                 "method_options": {**SPREAD, "mean_from": "xattn",
                                    "calibrate_mean": calibrate_mean}}  # fmt: skip
    models = tmp_path / "models"
    train_experiment(shards, source, TINY_TRAIN, models / "xattn")
    path = train_experiment(shards, diffusion, TINY_TRAIN, models / "diff")
    model = MultiModalModel.load(path)
    scale = float(model.conditioner.spread)
    mean_scale = float(getattr(model.conditioner, "mean_scale", torch.ones(())))
    assert scale != 1.0 and (mean_scale != 1.0) == calibrate_mean
    model.conditioner.spread.fill_(1.0)
    val = experiment_dataset(shards, "val", diffusion)
    again = calibrate_spread(model, _loader(val, TINY_TRAIN["batch_size"], False, 0, 0, False),
                             n_samples=SPREAD_SAMPLES, seed=TINY_TRAIN["seed"])  # fmt: skip
    assert again.scale == pytest.approx(scale, rel=1e-5)
    assert again.mean_scale == pytest.approx(mean_scale, rel=1e-5)
    record = evaluate_experiment(path, shards, diffusion, {"samples": 4},
                                 tmp_path / "m.json", tmp_path / "p.npz")  # fmt: skip
    assert record["generative"]["spread_scale"] == pytest.approx(scale)
    assert record["generative"].get("mean_scale", 1.0) == pytest.approx(mean_scale)
    assert np.isfinite(record["scores"]["model"]["crps"])
