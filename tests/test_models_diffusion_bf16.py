"""Diffusion models under bf16 autocast: what the Trainer wraps every training step in on a
bf16 GPU (``training.device.autocast``), run here on the CPU, whose autocast casts the same
op families (linear, convolution, matmul, attention) to bf16. The denoising loss and the
samples must stay finite and close to fp32, the gradients reach the denoiser only, and the
samples come back in fp32. No GPU is needed; a CUDA run is the GPU benchmark's job."""

from __future__ import annotations

import pytest
import torch
from _model_fixtures import batch
from test_models_diffusion import diffusion_model, nonzero
from test_models_diffusion_mean_ensemble import ENSEMBLE, ensemble_source
from test_models_diffusion_mean_from import frozen_model

from modalmerge.models.generative import adopt_mean, frozen_parts
from modalmerge.training.losses import make_loss


def plain():
    return nonzero(diffusion_model())


def residual_ensemble(**extra):
    model = frozen_model({**ENSEMBLE, **extra})
    adopt_mean(model, ensemble_source())
    if extra.get("whiten"):  # a whitening that is not the identity: ROIs correlated
        g = torch.Generator().manual_seed(5)
        mix = torch.randn(model.target_shape[-1], model.target_shape[-1], generator=g)
        model.conditioner.set_whitening(mix @ mix.T + torch.eye(len(mix)))
    return nonzero(model)


def image_target():
    """MONAI's U-Net starts with its output convolution at zero: randomise it too."""
    model = diffusion_model("time_series", "image")
    with torch.no_grad():
        for weight in model.decoder.parameters():
            if weight.dim() > 1 and not weight.any():
                weight.normal_(std=0.1)
    return model


MODELS = {
    "series": plain,
    "residual-ensemble": residual_ensemble,
    "residual-ensemble-whitened": lambda: residual_ensemble(whiten=True),
    "image": image_target,
}


def _loss(model, condition, target, bf16: bool) -> torch.Tensor:
    torch.manual_seed(0)  # the same timesteps, noise and condition dropout in both
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        terms = model.train()(condition, target=target).prediction
    return make_loss("diffusion")(terms, target)  # what the Trainer scores them with


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_the_denoising_loss_under_bf16_is_finite_close_to_fp32_and_trains_the_denoiser(build):
    model = build()
    target_type = "image" if build is image_target else "time_series"
    condition = batch("time_series" if target_type == "image" else "image", seed=3)
    target = batch(target_type, seed=4)
    reference = _loss(model, condition, target, bf16=False)
    model.zero_grad(set_to_none=True)
    loss = _loss(model, condition, target, bf16=True)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() != reference.item()  # bf16 did run
    torch.testing.assert_close(loss, reference, rtol=0.05, atol=1e-3)
    loss.backward()
    frozen = {id(p) for part in frozen_parts(model) for p in part.parameters()}
    grads = [p.grad for p in model.decoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in model.parameters() if id(p) in frozen)


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_samples_drawn_under_bf16_come_back_in_fp32_close_to_the_fp32_draws(build):
    model = build().eval()
    condition = batch("time_series" if build is image_target else "image", seed=3)
    reference = model.sample(condition, n_samples=2, seed=0).samples
    with torch.autocast("cpu", dtype=torch.bfloat16):
        drawn = model.sample(condition, n_samples=2, seed=0).samples
    assert drawn.dtype == torch.float32 and torch.isfinite(drawn).all()
    assert not torch.equal(drawn, reference)
    scale = reference.std().item()
    assert (drawn - reference).abs().mean().item() < 0.05 * scale
