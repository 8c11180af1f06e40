"""Residual diffusion (``method_options: {residual: true}``): a deterministic mean head
predicts the conditional mean, the diffusion chain models what is left."""

from __future__ import annotations

import pytest
import torch
from _model_fixtures import batch, tiny_model
from test_models_diffusion import Interrupt, _fit  # a killed job, as for plain diffusion
from torch.utils.data import DataLoader, Dataset

from modalmerge.models import MultiModalModel
from modalmerge.models.diffusion import DenoisingTerms
from modalmerge.training.losses import make_loss
from modalmerge.training.trainer import Trainer

SERIES = (6, 3)
OPTIONS = {"train_steps": 20, "sample_steps": 5}
RESIDUAL = {**OPTIONS, "residual": True, "mean_decoder_options": {"n_layers": 1}}


def diffusion_model(condition="image", target="time_series", options=None, **kw):
    torch.manual_seed(0)
    args = dict(
        target_decoder=None,
        conditioning_options=dict(RESIDUAL if options is None else options),
        decoder_options={"n_layers": 1} if target == "time_series" else {
            "channels": [4, 8], "norm_num_groups": 4
        },
    )  # fmt: skip
    args.update(kw)
    return tiny_model(condition, target, "diffusion", **args)


class RampToy(Dataset):
    """condition: one column s = +-1; target: s * a (time x ROI) pattern + noise of SD 0.3.
    The conditional mean is s * pattern; the residual is the noise."""

    pattern = torch.linspace(-1, 1, SERIES[0])[:, None] * torch.tensor([[1.0, -0.5, 0.8]])

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.sign = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
        self.noise = torch.randn(n, *SERIES, generator=g) * 0.3

    def __len__(self):
        return len(self.sign)

    def __getitem__(self, i):
        return {
            "condition": self.sign[i : i + 1],
            "target": self.sign[i] * self.pattern + self.noise[i],
        }


def _toy_model(method: str, options: dict | None) -> MultiModalModel:
    torch.manual_seed(0)
    return tiny_model(
        "tabular", "time_series", method, n_numeric=1, categorical_cardinalities=[],
        conditioning_options=options, decoder_options={"n_layers": 1},
    )  # fmt: skip


def _train(model, loss=None, epochs=40):
    trainer = Trainer(model, lr=1e-2, progress=False, seed=0, device="cpu", loss=loss)
    train = DataLoader(RampToy(128, seed=0), batch_size=32, shuffle=True)
    trainer.train(train, None, epochs=epochs)
    return model.eval()


@pytest.fixture(scope="module")
def toy_residual():
    options = {"train_steps": 50, "sample_steps": 10, "residual": True}
    return _train(_toy_model("diffusion", {**options, "mean_decoder_options": {"n_layers": 1}}))


SIGNS = torch.tensor([[1.0], [-1.0]])


def test_the_mean_head_learns_what_a_deterministic_model_learns(toy_residual):
    """Both reach the conditional mean s * pattern; the mean head's residual is the noise."""
    tokens, mask = toy_residual.encode(SIGNS)
    with torch.no_grad():
        mean = toy_residual.mean_head(tokens, mask)
    deterministic = _train(
        _toy_model("cross_attention", None), loss=make_loss("time_series", correlation_weight=0)
    )
    with torch.no_grad():
        reference = deterministic(SIGNS).prediction
    truth = SIGNS[:, :, None] * RampToy.pattern
    # noise SD 0.3 over 128 windows: the class means are known to ~0.04 (the pattern's
    # mean absolute value is 0.46: predicting zero or the wrong sign fails)
    assert (mean - truth).abs().mean() < 0.1, (mean - truth).abs().mean()
    assert (mean - reference).abs().mean() < 0.1, (mean - reference).abs().mean()


def test_the_ensemble_mean_tends_to_the_mean_head_as_the_ensemble_grows(toy_residual):
    tokens, mask = toy_residual.encode(SIGNS)
    with torch.no_grad():
        mean = toy_residual.mean_head(tokens, mask)
    samples = toy_residual.sample(SIGNS, n_samples=256, seed=0).samples  # (2, 256, 6, 3)
    gap = [(samples[:, :n].mean(1) - mean).pow(2).mean().sqrt().item() for n in (1, 16, 256)]
    assert gap[0] > gap[1] > gap[2], gap
    assert gap[2] < 0.06, gap  # the residual's SD is 0.3: the samples carry the spread
    spread = samples.std(1).mean().item()
    assert 0.15 < spread < 0.45, spread
    # model(condition) is the ensemble mean of n_ensemble samples, mean head included
    expected = toy_residual.sample(SIGNS, n_samples=8, seed=0).samples.mean(1)
    assert torch.allclose(toy_residual(SIGNS).prediction, expected, atol=1e-5)


def test_the_option_off_leaves_the_model_as_before():
    """Same weights and samples as without the option (the mean head is built last)."""
    plain, off = (
        diffusion_model(options=OPTIONS),
        diffusion_model(options={**OPTIONS, "residual": False}),
    )
    on = diffusion_model()
    assert not any(k.startswith("mean_head") for k in plain.state_dict())
    for k, v in plain.state_dict().items():
        assert torch.equal(v, off.state_dict()[k])
        assert torch.equal(v, on.state_dict()[k])  # the shared parts start the same
    with torch.no_grad():
        plain.decoder.value_out.weight.normal_(generator=torch.Generator().manual_seed(1))
    x = batch("image")
    samples = plain.eval().sample(x, n_samples=2, seed=3).samples
    # recorded at 1ae2e4a, the commit before residual diffusion (torch 2.13.0, CPU)
    assert samples[0, 0, 0].tolist() == pytest.approx([-2.559349, -1.974381, -3.300668], abs=1e-4)
    assert samples.pow(2).sum().item() == pytest.approx(394.3858, abs=1e-2)


def test_denoising_gradients_do_not_reach_the_mean_head_and_the_loss_adds_its_mse():
    model = diffusion_model(options={**RESIDUAL, "mean_weight": 0.5})
    x, y = batch("image"), batch("time_series")
    terms = model(x, target=y).prediction
    assert isinstance(terms, DenoisingTerms) and terms.mean_weight == 0.5
    terms.predicted.sum().backward()
    assert all(p.grad is None for p in model.mean_head.parameters())
    loss = make_loss("diffusion")(terms, y)
    denoising = (terms.predicted - terms.wanted).pow(2).mean()
    mean_mse = (terms.mean - y).pow(2).mean()
    assert loss.item() == pytest.approx((denoising + 0.5 * mean_mse).item(), rel=1e-5)


@pytest.mark.parametrize("condition,target", [("image", "time_series"), ("image", "volume_series")])
def test_residual_samples_have_the_target_shape_and_reload_the_same(condition, target, tmp_path):
    model = diffusion_model(condition, target, options={**OPTIONS, "residual": True})
    cond, y = batch(condition), batch(target)
    terms = model(cond, target=y).prediction
    assert terms.mean.shape == terms.predicted.shape == y.shape
    model.eval()
    drawn = model.sample(cond, n_samples=3, steps=5, return_trajectory=True)
    assert drawn.samples.shape == (2, 3, *model.target_shape)
    assert drawn.trajectory.shape == (5, 2, 3, *model.target_shape)
    # the last step's predicted clean target is the sample
    assert torch.allclose(drawn.trajectory[-1], drawn.samples, atol=1e-5)
    again = MultiModalModel.load(model.save(tmp_path / "m.pt")).eval()
    assert torch.equal(model.sample(cond, seed=1).samples, again.sample(cond, seed=1).samples)


def test_mean_loss_target_uses_the_deterministic_loss_and_detach_keeps_the_encoder_to_the_mean():
    options = {**RESIDUAL, "mean_loss": "target", "detach_condition": True}
    model = diffusion_model(options=options)
    x, y = batch("image"), batch("time_series")
    terms = model(x, target=y).prediction
    assert terms.mean_loss == "time_series"
    expected = (terms.predicted - terms.wanted).pow(2).mean() + make_loss("time_series")(
        terms.mean, y
    )
    assert make_loss("diffusion")(terms, y).item() == pytest.approx(expected.item(), rel=1e-5)
    terms.predicted.sum().backward()  # the denoising term alone
    assert all(p.grad is None for p in model.encoder.parameters())
    assert any(p.grad is not None for p in model.decoder.parameters())


def test_residual_options_are_checked():
    with pytest.raises(ValueError, match="mean_weight"):
        diffusion_model(options={**OPTIONS, "residual": True, "mean_weight": 0})
    with pytest.raises(ValueError, match="need residual"):
        diffusion_model(options={**OPTIONS, "mean_decoder": "transformer"})
    with pytest.raises(ValueError, match="needs residual"):
        diffusion_model(options={**OPTIONS, "detach_condition": True})
    with pytest.raises(ValueError, match="mean_loss"):
        diffusion_model(options={**RESIDUAL, "mean_loss": "l1"})
    with pytest.raises(ValueError, match="denoiser"):
        diffusion_model(options={**OPTIONS, "residual": True, "mean_decoder": "denoiser"})


def test_residual_training_interrupted_and_resumed_ends_with_the_same_weights(tmp_path):
    whole, history = _fit(tmp_path / "whole", make=diffusion_model)
    with pytest.raises(Interrupt):
        _fit(tmp_path / "split", fail_at=22, make=diffusion_model)
    resumed, again = _fit(tmp_path / "split", resume=True, make=diffusion_model)
    a, b = whole.state_dict(), resumed.state_dict()
    assert any(k.startswith("mean_head") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert history["val_loss"].tolist() == again["val_loss"].tolist()
