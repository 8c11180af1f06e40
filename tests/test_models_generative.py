"""The generative branch of MultiModalModel in its own module (models/generative.py): the
model's public calls (``sample``, ``model(condition)``, ``model(condition, target)``) are
its functions, and a generative model keeps the parts (and checkpoint keys) it had."""

from __future__ import annotations

import pytest
import torch
from _model_fixtures import batch, tiny_model

from modalmerge.models.generative import (
    DEFAULT_DENOISERS,
    draw_samples,
    generative_forward,
    generative_target,
)
from modalmerge.models.model import DEFAULT_DENOISERS as MODEL_DENOISERS

OPTIONS = {"train_steps": 20, "sample_steps": 5}
RESIDUAL = {**OPTIONS, "residual": True, "mean_decoder_options": {"n_layers": 1}}


def _model(options):
    torch.manual_seed(0)
    model = tiny_model(
        "image", "time_series", "diffusion", target_decoder=None,
        conditioning_options=dict(options), decoder_options={"n_layers": 1},
    )  # fmt: skip
    with torch.no_grad():  # an untrained denoiser's read-out is zero: randomise it
        model.decoder.value_out.weight.normal_()
    return model.eval()


def test_which_methods_generate_and_for_which_targets():
    assert MODEL_DENOISERS is DEFAULT_DENOISERS  # one table, re-exported by model.py
    assert generative_target("diffusion", "time_series") is True
    assert generative_target("cross_attention", "tabular") is False
    with pytest.raises(ValueError, match="generates .* targets, not 'tabular'"):
        generative_target("diffusion", "tabular")
    with pytest.raises(ValueError, match="not 'tabular'"):  # the model refuses it the same way
        tiny_model("image", "tabular", "diffusion")


@pytest.mark.parametrize("options", [OPTIONS, RESIDUAL], ids=["plain", "residual"])
def test_sample_and_the_ensemble_mean_are_the_module_s_draws(options):
    model = _model(options)
    x = batch("image")
    tokens, mask = model.encode(x)
    with torch.no_grad():
        drawn = draw_samples(model, tokens, mask, 3, None, 2.0, 0.0, 7, None, True, True)
        mean, attention = generative_forward(model, tokens, mask, None, None, True)
    public = model.sample(x, n_samples=3, guidance=2.0, seed=7, return_attention=True,
                          return_trajectory=True)  # fmt: skip
    for ours, theirs in zip(drawn, public, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert drawn.samples.shape == (2, 3, *model.target_shape)
    with torch.no_grad():
        output = model(x, return_attention=True)
    torch.testing.assert_close(output.prediction, mean, rtol=0, atol=0)
    torch.testing.assert_close(output.attention, attention, rtol=0, atol=0)


def test_a_generative_model_keeps_its_parts_and_the_loss_path_returns_denoising_terms():
    model = _model(RESIDUAL).train()
    parts = list(dict.fromkeys(key.split(".")[0] for key in model.state_dict()))
    assert parts == ["encoder", "decoder", "conditioner", "mean_head"]  # saved models still load
    assert list(dict.fromkeys(k.split(".")[0] for k in _model(OPTIONS).state_dict())) == [
        "encoder", "decoder", "conditioner",
    ]  # fmt: skip
    terms = model(batch("image"), target=batch("time_series")).prediction
    assert terms.mean_loss == "mse" and terms.mean.shape == (2, *model.target_shape)
    model.conditioner.mean_loss = "target"  # the target modality's own loss, named for it
    assert model(batch("image"), target=batch("time_series")).prediction.mean_loss == "time_series"
    assert terms.predicted.shape == terms.wanted.shape == (2, *model.target_shape)
    with pytest.raises(ValueError, match="sample\\(\\) needs a generative model"):
        tiny_model("image", "time_series").sample(batch("image"))
