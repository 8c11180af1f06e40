"""``method_options: {calibrate_spread: true, calibrate_mean: true}``: the validation
calibration also scales the mean head's prediction, so a mean head that predicts held-out
subjects too large is shrunk, jointly with the spread of the residual draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _model_fixtures import batch
from test_models_diffusion_mean_from import FROZEN, _config, frozen_model, source_model

from modalmerge.evaluation.generative import crps_ensemble, spread_skill
from modalmerge.mean_sources import check_mean_sources
from modalmerge.models.generative import adopt_mean
from modalmerge.models.spread import MEAN_SCALE_BOUNDS, ScaledResiduals, calibrate_spread
from modalmerge.settings import from_config

BOTH = {**FROZEN, "calibrate_spread": True, "calibrate_mean": True}


def _windows(slope=0.6, n=60, s=16, shape=(12, 3), noise_sd=1.0, draw_sd=0.5, seed=0):
    """Windows whose truth is ``slope`` times the mean head's prediction plus noise of
    ``noise_sd``, with residual draws of SD ``draw_sd``: a mean head ``1 / slope`` too
    large, and draws too narrow."""
    rng = np.random.default_rng(seed)
    mean = 1.5 * rng.normal(size=(n, *shape))
    truth = slope * mean + noise_sd * rng.normal(size=(n, *shape))
    residuals = draw_sd * rng.normal(size=(n, s, *shape))
    subjects = [f"sub-{i % 6:02d}" for i in range(n)]
    return mean, residuals, truth, subjects


@pytest.mark.parametrize("scale, mean_scale", [(1.0, 1.0), (1.7, 0.4), (0.5, 0.0)])
def test_the_crps_of_a_shrunk_mean_is_the_evaluate_stages_fair_crps(scale, mean_scale):
    mean, residuals, truth, subjects = _windows(n=30, s=8)
    scored = ScaledResiduals(mean, residuals, truth, subjects)
    per_window = np.array([
        crps_ensemble(mean_scale * mean[i] + scale * residuals[i], truth[i]).mean()
        for i in range(len(truth))
    ])  # fmt: skip
    per_subject = [per_window[np.asarray(subjects) == u].mean() for u in sorted(set(subjects))]
    assert scored.crps(scale, mean_scale) == pytest.approx(np.mean(per_subject), rel=1e-12)
    members = mean_scale * mean[:, None] + scale * residuals
    expected = spread_skill(np.moveaxis(members, 1, 0), truth)
    assert scored.spread_skill(scale, mean_scale) == pytest.approx(expected, rel=1e-12)


def test_the_joint_optimum_finds_the_true_slope_and_the_error_spread():
    """Truth = 0.6 mu + noise of SD 1 and draws of SD 0.5: the joint search shrinks the
    mean to about 0.6 and widens the draws to about 2, and scores below the spread-only
    calibration; a mean head that predicts nothing is shrunk to about 0."""
    scored = ScaledResiduals(*_windows(slope=0.6))
    scale, mean_scale = scored.best_scales()
    assert 0.55 < mean_scale < 0.65 and 1.85 < scale < 2.2
    alone = scored.best_scale()
    assert scored.crps(scale, mean_scale) < scored.crps(alone) - 0.05
    assert 0.9 < scored.spread_skill(scale, mean_scale) < 1.1
    _, useless = ScaledResiduals(*_windows(slope=0.0)).best_scales()
    assert useless < 0.1
    _, exact = ScaledResiduals(*_windows(slope=1.0)).best_scales()
    assert 0.95 < exact < 1.05  # a mean head of the right size is left alone


def test_calibration_shrinks_a_mean_head_that_predicts_too_large():
    """Validation targets at 0.3 times the mean head's prediction plus noise: the
    calibration sets a mean scale well below 1 and lowers the validation CRPS further than
    the spread alone would."""
    model = frozen_model(BOTH)
    adopt_mean(model, source_model())
    out, rng = [], torch.Generator().manual_seed(0)
    for i in range(3):
        condition = batch("image", seed=30 + i)
        with torch.no_grad():
            mean = model.eval().mean_head(*model.encode(condition))
        target = 0.3 * mean + mean.std() * torch.randn(mean.shape, generator=rng)
        out.append({"condition": condition, "target": target, "time_offset": None,
                    "subject": [f"sub-{i}{j}" for j in range(len(condition))]})  # fmt: skip
    found = calibrate_spread(model, out, n_samples=4, seed=0)
    assert MEAN_SCALE_BOUNDS[0] <= found.mean_scale < 0.7
    assert float(model.conditioner.mean_scale) == pytest.approx(found.mean_scale)
    assert float(model.conditioner.spread) == pytest.approx(found.scale)
    assert found.crps_after < found.crps_before


def test_calibrate_mean_without_calibrate_spread_is_refused():
    with pytest.raises(ValueError, match="calibrate_mean needs calibrate_spread: true"):
        frozen_model({**FROZEN, "calibrate_mean": True})
    with pytest.raises(ValueError, match="calibrate_mean must be true or false"):
        frozen_model({**BOTH, "calibrate_mean": "yes"})


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"calibrate_mean": "yes", "calibrate_spread": True}, "true or false, got 'yes'"),
        ({"calibrate_mean": True}, "needs calibrate_spread: true"),
    ],
)
def test_a_bad_calibrate_mean_stops_the_config_naming_the_key(edit, message):
    with pytest.raises(ValueError, match=message) as err:
        check_mean_sources(from_config(_config(**edit)).experiments)
    assert str(err.value).startswith("experiments[4].method_options.calibrate_mean: ")
    check_mean_sources(from_config(_config(calibrate_spread=True, calibrate_mean=True)).experiments)
