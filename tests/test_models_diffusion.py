"""conditioning='diffusion': built by name, trained through the Trainer, sampled with DDIM."""

from __future__ import annotations

import pytest
import torch
from _model_fixtures import tiny_model
from torch.utils.data import DataLoader, Dataset

from modalmerge.evaluation.generative import crps_ensemble
from modalmerge.models import MultiModalModel
from modalmerge.models.diffusion import DenoisingTerms
from modalmerge.models.registry import available
from modalmerge.training.trainer import Trainer

SERIES = (6, 3)
OPTIONS = {"train_steps": 20, "sample_steps": 5}


def diffusion_model(condition="image", target="time_series", **kw) -> MultiModalModel:
    torch.manual_seed(0)
    args = dict(
        target_decoder=None,
        conditioning_options=dict(OPTIONS),
        decoder_options={"n_layers": 1} if target == "time_series" else {
            "channels": [4, 8], "norm_num_groups": 4
        },
    )  # fmt: skip
    args.update(kw)
    return tiny_model(condition, target, "diffusion", **args)


def nonzero(model: MultiModalModel) -> MultiModalModel:
    """An untrained denoiser outputs zeros (its read-out starts at zero): randomise it."""
    with torch.no_grad():
        model.decoder.value_out.weight.normal_()
    return model


def test_diffusion_is_a_registered_method_with_denoisers_for_series_and_images():
    names = available()
    assert "diffusion" in names["conditioning"]
    assert "denoiser" in names["decoders"]["time_series"]
    assert "diffusion_unet" in names["decoders"]["image"]
    assert "diffusion_unet" in names["decoders"]["volume_series"]


@pytest.mark.parametrize(
    "condition,target",
    [
        ("image", "time_series"),
        ("tabular", "time_series"),
        ("time_series", "image"),
        ("image", "volume_series"),  # anatomy -> a 4D window, its T volumes as U-Net channels
    ],
)
def test_any_condition_encoder_drives_the_denoiser_and_samples_have_the_target_shape(
    condition, target
):
    model = diffusion_model(condition, target)
    shape = model.target_shape
    from _model_fixtures import batch

    cond, y = batch(condition), batch(target)
    terms = model(cond, target=y).prediction
    assert isinstance(terms, DenoisingTerms)
    assert terms.predicted.shape == terms.wanted.shape == y.shape
    model.eval()
    drawn = model.sample(cond, n_samples=3, steps=5, guidance=2.0, return_trajectory=True)
    assert drawn.samples.shape == (2, 3, *shape)
    assert drawn.trajectory.shape == (5, 2, 3, *shape)
    assert torch.isfinite(drawn.samples).all()
    assert model(cond).prediction.shape == (2, *shape)  # the ensemble mean


def test_time_series_attention_is_one_row_per_roi_over_the_condition_tokens():
    model = diffusion_model().eval()
    from _model_fixtures import batch

    x = batch("image")
    out = model(x, return_attention=True)
    n_tokens = model.condition_provenance().n_tokens
    assert out.attention.shape == (2, 2, SERIES[1], n_tokens)
    assert torch.allclose(out.attention.sum(-1), torch.ones(2, 2, SERIES[1]), atol=1e-5)
    assert model.target_provenance().kind == "roi"


def test_sampling_is_seeded():
    model = nonzero(diffusion_model()).eval()
    from _model_fixtures import batch

    x = batch("image")
    a = model.sample(x, n_samples=2, seed=3, eta=1.0).samples
    b = model.sample(x, n_samples=2, seed=3, eta=1.0).samples
    c = model.sample(x, n_samples=2, seed=4, eta=1.0).samples
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_guidance_zero_is_the_unconditional_model_and_one_the_conditional():
    model = diffusion_model().eval()
    with torch.no_grad():  # an untrained denoiser outputs zeros (zero-initialised read-out)
        model.conditioner.null.normal_()
        model.decoder.value_out.weight.normal_()
    from _model_fixtures import batch

    x, other = batch("image", seed=0), batch("image", seed=1)
    uncond = model.sample(x, n_samples=2, guidance=0.0, seed=1).samples
    assert torch.allclose(uncond, model.sample(other, n_samples=2, guidance=0.0, seed=1).samples)
    cond = model.sample(x, n_samples=2, guidance=1.0, seed=1).samples
    assert not torch.allclose(cond, model.sample(other, n_samples=2, guidance=1.0, seed=1).samples)
    # scale s mixes them linearly in the model output: s=1 reproduces the conditional path
    mixed = model.sample(x, n_samples=2, guidance=1.0 + 1e-9, seed=1).samples
    assert torch.allclose(mixed, cond, atol=1e-5)


def test_ddim_with_every_training_step_and_eta_one_is_ddpm_ancestral_sampling():
    from monai.networks.schedulers import DDPMScheduler

    model = nonzero(diffusion_model()).eval()
    process, denoiser = model.conditioner, model.decoder
    from _model_fixtures import batch

    tokens, mask = model.encode(batch("image"))
    steps = process.train_steps
    ddim = model.sample(batch("image"), n_samples=1, steps=steps, eta=1.0, seed=7).samples
    ddpm = DDPMScheduler(steps, schedule=process.schedule, prediction_type=process.prediction,
                         clip_sample=False)  # fmt: skip
    g = torch.Generator().manual_seed(7)
    x = torch.randn((2, *SERIES), generator=g)
    with torch.no_grad():
        for t in range(steps - 1, -1, -1):
            out, _ = denoiser(x, torch.full((2,), t), tokens, mask)
            x, _ = ddpm.step(out, t, x, generator=g)
    assert torch.allclose(ddim[:, 0], x, atol=1e-5)


def test_ddim_steps_must_divide_the_training_steps():
    model = diffusion_model().eval()
    from _model_fixtures import batch

    with pytest.raises(ValueError, match="divide train_steps"):
        model.sample(batch("image"), steps=3)


def test_a_denoiser_needs_the_diffusion_method_and_diffusion_needs_a_denoiser():
    with pytest.raises(ValueError, match="needs conditioning='diffusion'"):
        tiny_model("image", "time_series", "cross_attention", target_decoder="denoiser")
    with pytest.raises(ValueError, match="needs a denoiser"):
        tiny_model("image", "time_series", "diffusion", target_decoder="transformer")
    with pytest.raises(ValueError, match="generates"):
        tiny_model("image", "tabular", "diffusion")
    with pytest.raises(ValueError, match="unknown option"):
        diffusion_model(conditioning_options={"stepz": 3})


def test_sample_on_a_deterministic_model_is_refused():
    from _model_fixtures import batch

    with pytest.raises(ValueError, match="generative"):
        tiny_model("image", "time_series").sample(batch("image"))


def test_a_saved_diffusion_model_reloads_and_samples_the_same(tmp_path):
    model = diffusion_model(conditioning_options={**OPTIONS, "target_scale": 2.0}).eval()
    from _model_fixtures import batch

    x = batch("image")
    again = MultiModalModel.load(model.save(tmp_path / "m.pt")).eval()
    assert torch.equal(model.sample(x, seed=1).samples, again.sample(x, seed=1).samples)


class SignToy(Dataset):
    """condition: a table with one column s = +-1; target: s * a level per ROI + noise 0.3."""

    pattern = torch.tensor([[1.0, -1.0, 0.5]]).repeat(6, 1)  # (6, 3): one level per ROI

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


def test_a_diffusion_model_fitted_to_a_toy_distribution_beats_the_climatological_crps():
    torch.manual_seed(0)
    model = tiny_model(
        "tabular", "time_series", "diffusion", n_numeric=1, categorical_cardinalities=[],
        conditioning_options={"train_steps": 50, "sample_steps": 10, "condition_dropout": 0.1},
        decoder_options={"n_layers": 1},
    )  # fmt: skip
    train, test = SignToy(128, seed=0), SignToy(16, seed=1)
    trainer = Trainer(model, lr=1e-2, progress=False, seed=0, device="cpu")
    trainer.train(DataLoader(train, batch_size=32, shuffle=True), None, epochs=30)
    model.eval()
    batch = next(iter(DataLoader(test, batch_size=16)))
    samples = model.sample(batch["condition"], n_samples=8, seed=0).samples  # (16, 8, 6, 3)
    truth = batch["target"]
    model_crps = crps_ensemble(samples.transpose(0, 1).numpy(), truth.numpy()).mean()
    climatology = torch.stack([train[i]["target"] for i in range(32)])  # both signs
    clim_crps = crps_ensemble(
        climatology[:, None].expand(-1, 16, -1, -1).numpy(), truth.numpy()
    ).mean()
    assert model_crps < 0.7 * clim_crps, (model_crps, clim_crps)


class Interrupt(Exception):
    pass


class Windows(Dataset):
    """Random image -> series pairs; ``fail_at``: raise on that read (a killed job)."""

    def __init__(self, n: int, seed: int, fail_at: int = -1):
        g = torch.Generator().manual_seed(seed)
        from _model_fixtures import IMAGE

        self.x = torch.randn(n, *IMAGE, generator=g)
        self.y = torch.randn(n, *SERIES, generator=g)
        self.reads, self.fail_at = 0, fail_at

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads == self.fail_at:
            raise Interrupt
        return {"condition": self.x[i], "target": self.y[i]}


def _fit(ckpt_dir, fail_at=-1, resume=False, make=None):
    """Three epochs of a model from ``make`` (default: this file's ``diffusion_model``),
    killed at read ``fail_at`` or resumed from ``ckpt_dir``."""
    model = (make or diffusion_model)(dropout=0.1)
    train = DataLoader(
        Windows(16, 0, fail_at), batch_size=4, shuffle=True,
        generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    val = DataLoader(Windows(4, 1), batch_size=4)
    trainer = Trainer(model, lr=1e-2, patience=10, checkpoint_dir=ckpt_dir, progress=False)
    history = trainer.train(train, val, epochs=3, resume=resume)
    return model, history


def test_diffusion_training_interrupted_and_resumed_ends_with_the_same_weights(tmp_path):
    """Steps, noise and condition dropout come from the random streams a checkpoint holds."""
    whole, history = _fit(tmp_path / "whole")
    with pytest.raises(Interrupt):
        _fit(tmp_path / "split", fail_at=22)  # in epoch 2, after its first optimizer step
    resumed, again = _fit(tmp_path / "split", resume=True)
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert history["val_loss"].tolist() == again["val_loss"].tolist()


def test_validation_loss_is_the_same_draw_every_time():
    model = diffusion_model().eval()
    from _model_fixtures import batch

    x, y = batch("image"), batch("time_series")
    first = model(x, target=y).prediction
    torch.randn(3)  # the global stream moves; validation draws do not
    second = model(x, target=y).prediction
    assert torch.equal(first.wanted, second.wanted)
    assert torch.equal(first.predicted, second.predicted)


def test_the_image_denoisers_flash_attention_keeps_weights_and_outputs():
    from modalmerge.models.decoders.denoisers import ImageDenoiser

    torch.manual_seed(0)
    shape = (1, 4, 8, 4)
    plain = ImageDenoiser(shape, 8, channels=[8, 8], norm_num_groups=4)
    flash = ImageDenoiser(shape, 8, channels=[8, 8], norm_num_groups=4, flash_attention=True)
    flash.load_state_dict(plain.state_dict())  # the same parameters
    for p in plain.parameters():  # MONAI zero-initialises the output conv: make it read
        p.data.normal_(0, 0.3)
    flash.load_state_dict(plain.state_dict())
    x, t, context = torch.randn(2, *shape), torch.tensor([3, 700]), torch.randn(2, 5, 8)
    a, b = plain(x, t, context)[0], flash(x, t, context)[0]
    assert a.abs().mean() > 1e-3
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
