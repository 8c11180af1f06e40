"""Residual diffusion whose frozen mean head is a trained ensemble (``mean_from`` an
experiment with ``ensemble: K``, ``method_options.mean_members: K``): the mean head
predicts the members' mean, the denoiser reads member 0's tokens, and every member stays
frozen, is saved with the model and is refused where the counts disagree."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _model_fixtures import TINY_TRAIN, batch, tiny_shards
from test_models_diffusion_mean_from import FROZEN, Toy, _config, frozen_model, source_model
from torch.utils.data import DataLoader

from modalmerge.models.ensemble import ModelEnsemble, load_model
from modalmerge.models.generative import adopt_mean, mean_prediction
from modalmerge.models.model import MultiModalModel
from modalmerge.settings import from_config
from modalmerge.training.trainer import Trainer

ENSEMBLE = {**FROZEN, "mean_members": 3}


def ensemble_source():
    return ModelEnsemble([source_model(seed) for seed in (1, 2, 3)])


@torch.no_grad()
def _mean(model, condition):
    tokens, mask = model.eval().encode(condition)
    return mean_prediction(model, tokens, mask, None, condition)


@torch.no_grad()
def test_the_mean_head_predicts_the_ensembles_mean_and_the_samples_centre_on_it(tmp_path):
    source, model = ensemble_source(), frozen_model(ENSEMBLE)
    single = frozen_model()  # the same denoiser weights (seed 0), member 0 as its mean head
    adopt_mean(model, source)
    adopt_mean(single, source.members[0])
    condition = batch("image", seed=3)
    mean, first = _mean(model, condition), _mean(single, condition)
    assert torch.allclose(mean, source(condition).prediction, atol=1e-6)
    assert not torch.allclose(mean, first, atol=1e-3)  # not member 0 alone
    drawn = model.sample(condition, n_samples=2, seed=0).samples
    alone = single.sample(condition, n_samples=2, seed=0).samples
    torch.testing.assert_close(drawn - alone, (mean - first)[:, None].expand_as(drawn))
    with pytest.raises(ValueError, match="needs the condition batch"):
        tokens, mask = model.encode(condition)
        mean_prediction(model, tokens, mask, None, None)
    # saved with the model: a reload predicts and samples the same
    model.save(tmp_path / "model.pt")
    back = MultiModalModel.load(tmp_path / "model.pt")
    assert len(back.mean_members) == 2
    torch.testing.assert_close(_mean(back, condition), mean)
    torch.testing.assert_close(back.sample(condition, n_samples=2, seed=0).samples, drawn)


def test_training_the_denoiser_leaves_every_member_frozen():
    model = frozen_model(ENSEMBLE)
    adopt_mean(model, ensemble_source())
    before = copy.deepcopy(model.mean_members.state_dict())
    assert not any(p.requires_grad for p in model.mean_members.parameters())
    trainer = Trainer(model, lr=1e-2, progress=False, seed=0, device="cpu")
    trainer.train(DataLoader(Toy(), batch_size=4, shuffle=True), None, epochs=1)
    after = model.mean_members.state_dict()  # batch-norm statistics included
    assert all(torch.equal(after[k], v) for k, v in before.items())
    model.train()
    assert not model.mean_members.training and not model.mean_members[0].encoder.training


def test_counts_that_disagree_are_refused_naming_the_option():
    with pytest.raises(ValueError, match="is 1 model, this model's mean_members is 3"):
        adopt_mean(frozen_model(ENSEMBLE), source_model())
    with pytest.raises(ValueError, match="an ensemble of 3 models, this model's mean_members"):
        adopt_mean(frozen_model(), ensemble_source())
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="mean_members must be an integer >= 1"):
            frozen_model({**FROZEN, "mean_members": bad})
    options = {k: v for k, v in ENSEMBLE.items() if k != "mean_from"}
    with pytest.raises(ValueError, match="mean_members needs mean_from"):
        frozen_model(options)


@pytest.mark.parametrize("members, source_size, ok", [(3, 3, True), (1, 3, False), (2, 1, False)])
def test_the_config_needs_mean_members_equal_to_the_sources_ensemble(members, source_size, ok):
    config = _config(mean_members=members)
    xattn = next(e for e in config["experiments"] if e["name"] == "image_to_timeseries_xattn")
    xattn["ensemble"] = source_size
    if ok:
        from_config(config)
        return
    with pytest.raises(ValueError, match=f"set mean_members: {source_size}") as err:
        from_config(config)
    assert "experiments[4].method_options.mean_members" in str(err.value)


@pytest.mark.slow
def test_the_train_stage_adopts_a_trained_ensemble_and_evaluate_scores_it(tmp_path):
    """End to end: the cross-attention experiment trains an ensemble of 2 (one model.pt),
    the diffusion experiment adopts both members, whitens and calibrates on their mean
    prediction, and the evaluate stage scores its samples."""
    from test_models_diffusion_spread import SPREAD

    from modalmerge.stages.evaluate import evaluate_experiment
    from modalmerge.stages.train import train_experiment

    shards = tiny_shards(tmp_path)
    source = {
        "name": "xattn", "condition": "image", "target": "time_series", "encoder": "cnn",
        "decoder": "transformer", "method": "cross_attention", "embedding_dim": 8, "heads": 2,
        "encoder_options": {"channels": 4}, "decoder_options": {"query": "roi"}, "ensemble": 2,
    }  # fmt: skip
    diffusion = {**source, "name": "diff", "decoder": "denoiser", "method": "diffusion",
                 "decoder_options": {"n_layers": 1}, "ensemble": None,
                 "method_options": {**SPREAD, "mean_from": "xattn", "mean_members": 2,
                                    "whiten": True, "calibrate_mean": True}}  # fmt: skip
    models = tmp_path / "models"
    ensemble = load_model(train_experiment(shards, source, TINY_TRAIN, models / "xattn"))
    assert isinstance(ensemble, ModelEnsemble) and len(ensemble) == 2
    path = train_experiment(shards, diffusion, TINY_TRAIN, models / "diff")
    model = MultiModalModel.load(path)
    condition = batch("image", seed=4, shape=model.condition_shape)
    with torch.no_grad():
        expected = ensemble.eval()(condition).prediction
    torch.testing.assert_close(_mean(model, condition), expected)
    assert float(model.conditioner.spread) != 1.0
    record = evaluate_experiment(path, shards, diffusion, {"samples": 4},
                                 tmp_path / "m.json", tmp_path / "p.npz")  # fmt: skip
    assert np.isfinite(record["scores"]["model"]["crps"])
