"""Residual diffusion with ``method_options: {mean_from: <experiment>}`` (CorrDiff's recipe):
the encoder and mean head are a trained deterministic cross-attention model's, frozen, and
only the denoiser trains on the residuals."""

from __future__ import annotations

import copy

import pytest
import torch
from _model_fixtures import batch, tiny_model
from torch.utils.data import DataLoader, Dataset
from workflow_utils import REPO, copy_project, load_yaml, planned_jobs, snakemake, write_config

from modalmerge.io import InputError
from modalmerge.mean_sources import check_mean_sources
from modalmerge.models.generative import adopt_mean
from modalmerge.settings import from_config
from modalmerge.stages.train import mean_source
from modalmerge.training.trainer import Trainer

FROZEN = {"train_steps": 20, "sample_steps": 5, "residual": True, "mean_from": "xattn",
          "mean_decoder_options": {"query": "roi"}}  # fmt: skip


def source_model(seed=1, **kw):
    """A deterministic cross-attention model whose batch-norm statistics are not the
    initial ones (a few forward passes in train mode), as after training."""
    torch.manual_seed(seed)
    model = tiny_model("image", "time_series", decoder_options={"query": "roi"}, **kw)
    with torch.no_grad():
        for i in range(3):
            model(batch("image", seed=10 + i) * (i + 2))
    return model.eval()


def frozen_model(options=None, **kw):
    torch.manual_seed(0)
    return tiny_model(
        "image", "time_series", "diffusion", target_decoder=None,
        decoder_options={"n_layers": 1}, conditioning_options=dict(options or FROZEN), **kw,
    )  # fmt: skip


@torch.no_grad()  # as the evaluate stage predicts (with autograd on, attention's fast path
# serves the frozen copy only, and the two differ in the last bit)
def test_the_adopted_mean_head_predicts_exactly_what_the_source_model_predicts():
    source, model = source_model(), frozen_model()
    condition = batch("image", seed=3)
    tokens, mask = model.eval().encode(condition)
    assert not torch.equal(model.mean_head(tokens, mask), source(condition).prediction)
    adopt_mean(model, source)
    tokens, mask = model.encode(condition)
    assert torch.equal(model.mean_head(tokens, mask), source(condition).prediction)
    # and the samples are that prediction plus the residual draws
    drawn = model.sample(condition, n_samples=2, seed=0)
    assert drawn.samples.shape == (2, 2, *model.target_shape)
    assert not torch.equal(drawn.samples[:, 0], source(condition).prediction)


class Toy(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"condition": batch("image", seed=i)[0], "target": batch("time_series", seed=i)[0]}


def test_training_the_denoiser_changes_neither_the_encoder_nor_the_mean_head():
    model = frozen_model()
    adopt_mean(model, source_model())
    frozen = {
        name: copy.deepcopy(part.state_dict())
        for name, part in (("encoder", model.encoder), ("mean_head", model.mean_head))
    }
    denoiser = copy.deepcopy(model.decoder.state_dict())
    trainer = Trainer(model, lr=1e-2, progress=False, seed=0, device="cpu")
    trainer.train(DataLoader(Toy(), batch_size=4, shuffle=True), None, epochs=2)
    for name, part in (("encoder", model.encoder), ("mean_head", model.mean_head)):
        after = part.state_dict()  # batch-norm statistics included
        assert all(torch.equal(after[k], v) for k, v in frozen[name].items()), name
    assert not all(torch.equal(model.decoder.state_dict()[k], v) for k, v in denoiser.items())
    # the loss is the denoising loss alone: no mean-head term
    model.train()
    assert not model.encoder.training and not model.mean_head.training
    terms = model(batch("image"), batch("time_series")).prediction
    assert terms.mean is None and terms.target is None


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"residual": False}, "mean_from needs residual: true"),
        ({"mean_loss": "target"}, "mean_weight, mean_loss and detach_condition do not apply"),
        ({"detach_condition": True}, "do not apply"),
        ({"mean_from": ""}, "mean_from must be an experiment name"),
    ],
)
def test_mean_from_options_are_checked(edit, message):
    options = {**FROZEN, **edit}
    if not options["residual"]:
        options.pop("mean_decoder_options")
    with pytest.raises(ValueError, match=message):
        frozen_model(options)


def test_a_mismatched_or_generative_source_is_refused_naming_what_differs():
    model = frozen_model()
    with pytest.raises(ValueError, match="'xattn' is itself a generative model"):
        adopt_mean(model, frozen_model())
    torch.manual_seed(0)
    wide = tiny_model("image", "time_series", embedding_dim=8, decoder_options={"query": "roi"})
    with pytest.raises(ValueError, match="'xattn' has embedding_dim 8, this model 16"):
        adopt_mean(model, wide)
    with pytest.raises(
        ValueError, match="'xattn' has decoder_options {'n_layers': 1}, this model {'query': 'roi'}"
    ):
        adopt_mean(model, tiny_model("image", "time_series"))
    with pytest.raises(ValueError, match="one cross_attention layer"):
        adopt_mean(
            model, tiny_model("image", "time_series", "film", decoder_options={"query": "roi"})
        )


def test_the_train_stage_copies_the_sibling_model_and_names_a_missing_one(tmp_path):
    model = frozen_model()
    with pytest.raises(InputError, match=r"xattn/model.pt: mean_from 'xattn': no trained model"):
        mean_source(model, tmp_path / "models" / "diffusion")
    source = source_model()
    source.save(tmp_path / "models" / "xattn" / "model.pt")
    assert mean_source(model, tmp_path / "models" / "diffusion").name == "model.pt"
    condition = batch("image", seed=5)
    with torch.no_grad():
        tokens, mask = model.eval().encode(condition)
        assert torch.equal(model.mean_head(tokens, mask), source(condition).prediction)


def _config(**options):
    config = load_yaml(REPO / "configs" / "tiny.yaml")
    config["experiments"].append(
        {"name": "image_to_timeseries_diffusion", "condition": "image", "target": "time_series",
         "encoder": "cnn", "decoder": "denoiser", "method": "diffusion", "embedding_dim": 16,
         "heads": 2, "decoder_options": {"n_layers": 1},
         "method_options": {"train_steps": 20, "sample_steps": 5, "residual": True,
                            "mean_from": "image_to_timeseries_xattn",
                            "mean_decoder_options": {"query": "roi"}, **options}}
    )  # fmt: skip
    return config


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mean_from": "nope"}, "mean_from: no other experiment named 'nope' in this config"),
        ({"mean_from": "image_to_timeseries_diffusion"}, "no other experiment named"),
        ({"mean_from": "tabular_to_timeseries_film"}, "must be a one-layer cross_attention"),
        ({"mean_decoder_options": {}}, "has decoder_options {'query': 'roi'}"),
        ({"residual": False}, "needs residual: true"),
    ],
)
def test_a_bad_mean_from_stops_the_config_naming_the_experiment(options, message):
    with pytest.raises(ValueError, match=message) as err:
        check_mean_sources(from_config(_config(**options)).experiments)
    assert str(err.value).startswith("experiments[4].method_options.mean_from: ")


def test_a_generative_source_stops_the_config():
    config = _config()
    config["experiments"].append({**config["experiments"][-1], "name": "second"})
    config["experiments"][-1]["method_options"] = {
        **config["experiments"][-1]["method_options"],
        "mean_from": "image_to_timeseries_diffusion",
    }
    with pytest.raises(ValueError, match="'image_to_timeseries_diffusion' is itself generative"):
        check_mean_sources(from_config(config).experiments)


@pytest.mark.slow
def test_the_diffusion_train_job_needs_the_named_model_and_no_other_job_changes(tmp_path):
    work = copy_project(tmp_path)
    config = _config()
    write_config(work, config)
    model = "results/tiny/models/{}/model.pt"
    result = snakemake(work, "--dry-run", model.format("image_to_timeseries_diffusion"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result)["train"] == 2  # the cross-attention model first
    result = snakemake(work, "--dry-run", model.format("tabular_to_timeseries_film"))
    assert planned_jobs(result)["train"] == 1


def test_a_retrained_source_discards_the_resume_state_of_a_killed_job(tmp_path):
    """The checkpoints hold the frozen weights: resuming them after the named model was
    retrained would train the denoiser on the old model's residuals."""
    from modalmerge.settings import ExperimentSettings, TrainSettings
    from modalmerge.stages.train import _checkpoint_dir

    experiment = ExperimentSettings.coerce(_config()["experiments"][-1])
    source = tmp_path / "xattn.pt"
    source.write_bytes(b"one")
    checkpoints = _checkpoint_dir(tmp_path, experiment, TrainSettings(), source)
    (checkpoints / "last.pt").write_bytes(b"state")
    _checkpoint_dir(tmp_path, experiment, TrainSettings(), source)
    assert (checkpoints / "last.pt").exists()  # same source: resume
    source.write_bytes(b"two")
    _checkpoint_dir(tmp_path, experiment, TrainSettings(), source)
    assert not (checkpoints / "last.pt").exists()
