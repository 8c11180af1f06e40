"""``method_options: {whiten: true}``: a ``mean_from`` residual diffusion model whose chain runs
on the residuals whitened across ROIs by the training residuals' covariance, so that its
draws carry that covariance even where the denoiser leaves the ROIs independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _model_fixtures import TINY_TRAIN, batch, tiny_model, tiny_shards
from sklearn.covariance import ledoit_wolf
from test_models_diffusion_mean_from import FROZEN, _config, frozen_model, source_model

from modalmerge.mean_sources import check_mean_sources
from modalmerge.models import MultiModalModel
from modalmerge.models.generative import adopt_mean
from modalmerge.models.whitening import RunningLedoitWolf, fit_whitening
from modalmerge.settings import from_config

WHITE = {**FROZEN, "whiten": True}


def _correlated(n_rows, n_rois, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(n_rois, n_rois)) + 2.0  # a shared component: positive correlations
    return rng.normal(size=(n_rows, n_rois)) @ mixing


@pytest.mark.parametrize("n_rows, n_rois", [(300, 7), (20, 30)])  # rows above and below ROIs
def test_the_running_estimate_is_scikit_learns_ledoit_wolf_on_all_rows(n_rows, n_rois):
    rows = _correlated(n_rows, n_rois)
    running = RunningLedoitWolf(n_rois)
    for block in np.array_split(rows, 4):
        running.add(block)
    covariance, shrinkage = running.estimate()
    expected, expected_shrinkage = ledoit_wolf(rows, assume_centered=True)
    np.testing.assert_allclose(covariance, expected, rtol=1e-10, atol=1e-12)
    assert shrinkage == pytest.approx(expected_shrinkage, rel=1e-10)


def test_the_running_estimate_refuses_broken_rows():
    running = RunningLedoitWolf(3)
    with pytest.raises(ValueError, match=r"rows must be \(n, 3\)"):
        running.add(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        running.add(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match="at least 2 rows"):
        running.estimate()


def test_whitening_maps_the_covariance_to_identity_and_back():
    model = frozen_model(WHITE)
    conditioner = model.conditioner
    assert torch.equal(conditioner.whitening, torch.eye(3))  # identity until fitted
    covariance = torch.from_numpy(np.cov(_correlated(500, 3), rowvar=False))
    conditioner.set_whitening(covariance)
    w, c = conditioner.whitening.double(), conditioner.coloring.double()
    torch.testing.assert_close(
        w @ covariance @ w, torch.eye(3, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(c @ c, covariance, atol=1e-4, rtol=1e-5)
    x = torch.randn(2, 6, 3)
    torch.testing.assert_close(
        conditioner.from_chain(conditioner.to_chain(x)), x, atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match=r"finite \(3, 3\) covariance"):
        conditioner.set_whitening(torch.full((3, 3), float("nan")))
    with pytest.raises(ValueError, match=r"finite \(3, 3\) covariance"):
        conditioner.set_whitening(torch.eye(4))


def _roi_correlation(samples):
    values = samples.reshape(-1, samples.shape[-1]).double().numpy()
    return np.corrcoef(values, rowvar=False)


@torch.no_grad()
def test_draws_carry_the_whitened_covariance_where_the_denoiser_leaves_rois_independent():
    """The untrained denoiser's output layer is zero: its draws are noise shaped by the
    schedule alone, independent across ROIs in the chain's space. Coloured, they take the
    fitted correlation; without ``whiten`` they stay uncorrelated."""
    condition = batch("image", seed=4)
    covariance = np.array([[1.0, 0.8, 0.6], [0.8, 1.0, 0.7], [0.6, 0.7, 1.0]])
    white = frozen_model(WHITE).eval()
    white.conditioner.set_whitening(torch.from_numpy(covariance))
    plain = frozen_model().eval()
    drawn = white.sample(condition, n_samples=400, seed=0).samples
    mean = white.mean_head(*white.encode(condition))
    corr = _roi_correlation(drawn - mean[:, None])
    np.testing.assert_allclose(corr, covariance, atol=0.08)
    plain_drawn = plain.sample(condition, n_samples=400, seed=0).samples
    plain_corr = _roi_correlation(plain_drawn - plain.mean_head(*plain.encode(condition))[:, None])
    np.testing.assert_allclose(plain_corr, np.eye(3), atol=0.08)


def test_fit_whitening_estimates_the_frozen_mean_heads_residual_covariance():
    source, model = source_model(), frozen_model(WHITE)
    adopt_mean(model, source)
    rng = np.random.default_rng(1)
    batches = []
    for i in range(3):
        target = torch.from_numpy(_correlated(4 * 6, 3, seed=i).reshape(4, 6, 3)).float()
        batches.append({"condition": batch("image", seed=20 + i).repeat(2, 1, 1, 1, 1),
                        "target": target + float(rng.normal())})  # fmt: skip
    model.train()
    shrinkage = fit_whitening(model, batches)
    assert model.training and not model.mean_head.training  # mode restored, head frozen
    with torch.no_grad():
        rows = np.concatenate([
            (b["target"] - source(b["condition"]).prediction).reshape(-1, 3).numpy()
            for b in batches
        ])  # fmt: skip
    expected, expected_shrinkage = ledoit_wolf(rows.astype(np.float64), assume_centered=True)
    assert shrinkage == pytest.approx(expected_shrinkage, rel=1e-4, abs=1e-6)
    coloring = model.conditioner.coloring.double().numpy()
    np.testing.assert_allclose(coloring @ coloring, expected, rtol=1e-4, atol=1e-5)


def test_whiten_is_refused_without_mean_from_and_for_image_targets():
    options = {k: v for k, v in WHITE.items() if k != "mean_from"}
    with pytest.raises(ValueError, match="whiten needs mean_from"):
        frozen_model(options)
    with pytest.raises(ValueError, match="whiten whitens time series across ROIs, not 'image'"):
        torch.manual_seed(0)
        tiny_model("time_series", "image", "diffusion", target_decoder=None,
                   conditioning_options={**WHITE, "mean_decoder_options": {}})  # fmt: skip
    with pytest.raises(ValueError, match="built with whiten=True"):
        fit_whitening(frozen_model(), [])


def test_the_fitted_whitening_is_saved_with_the_model(tmp_path):
    model = frozen_model(WHITE)
    adopt_mean(model, source_model())
    model.conditioner.set_whitening(
        torch.tensor([[2.0, 1.0, 0.5], [1.0, 2.0, 0.2], [0.5, 0.2, 1.0]])
    )
    model.save(tmp_path / "model.pt")
    loaded = MultiModalModel.load(tmp_path / "model.pt")
    assert torch.equal(loaded.conditioner.coloring, model.conditioner.coloring)
    condition = batch("image", seed=2)
    a = model.eval().sample(condition, n_samples=3, seed=5).samples
    assert torch.equal(loaded.eval().sample(condition, n_samples=3, seed=5).samples, a)


@pytest.mark.slow
def test_the_train_stage_fits_the_whitening_on_the_training_residuals(tmp_path):
    """End to end through the train stage: the saved model's colouring squared is the
    Ledoit-Wolf covariance of the training windows' residuals from the trained source."""
    from modalmerge.stages.common import experiment_dataset
    from modalmerge.stages.evaluate import evaluate_experiment
    from modalmerge.stages.train import train_experiment

    shards = tiny_shards(tmp_path)
    source = {
        "name": "xattn",
        "condition": "image",
        "target": "time_series",
        "encoder": "cnn",
        "decoder": "transformer",
        "method": "cross_attention",
        "embedding_dim": 8,
        "heads": 2,
        "encoder_options": {"channels": 4},
        "decoder_options": {"query": "roi"},
    }
    diffusion = {**source, "name": "diff", "decoder": "denoiser", "method": "diffusion",
                 "decoder_options": {"n_layers": 1},
                 "method_options": {**WHITE, "mean_from": "xattn"}}  # fmt: skip
    models = tmp_path / "models"
    xattn = MultiModalModel.load(train_experiment(shards, source, TINY_TRAIN, models / "xattn"))
    path = train_experiment(shards, diffusion, TINY_TRAIN, models / "diff")
    dataset = experiment_dataset(shards, "train", diffusion)
    data = dataset.get_batch(list(range(len(dataset))))
    with torch.no_grad():
        prediction = xattn.eval()(data["condition"], time_offset=data.get("time_offset"))
    residual = (data["target"] - prediction.prediction).reshape(-1, data["target"].shape[-1])
    expected, _ = ledoit_wolf(residual.double().numpy(), assume_centered=True)
    coloring = MultiModalModel.load(path).conditioner.coloring.double().numpy()
    np.testing.assert_allclose(coloring @ coloring, expected, rtol=1e-3, atol=1e-5)
    record = evaluate_experiment(path, shards, diffusion, {"samples": 4},
                                 tmp_path / "m.json", tmp_path / "p.npz")  # fmt: skip
    assert (
        np.isfinite(record["scores"]["model"]["crps"])
        and record["scores"]["model"]["spread_skill"] > 0
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"whiten": "yes"}, "whiten: true or false, got 'yes'"),
        ({"whiten": True, "mean_from": None}, "needs mean_from and a time_series target"),
    ],
)
def test_a_bad_whiten_stops_the_config_naming_the_key(edit, message):
    config = _config(**edit)
    options = config["experiments"][-1]["method_options"]
    if options.get("mean_from", "") is None:
        del options["mean_from"]
    with pytest.raises(ValueError, match=message) as err:
        check_mean_sources(from_config(config).experiments)
    assert str(err.value).startswith("experiments[4].method_options.whiten: ")
    check_mean_sources(from_config(_config(whiten=True)).experiments)  # a good one passes
