"""Brain decoding (modalmerge.evaluation.decoding): per-volume task conditions from 4D windows."""

from __future__ import annotations

import json

import numpy as np
import torch

from modalmerge.evaluation.decoding import (
    build_decoder,
    logistic_baseline,
    per_subject_accuracy,
    run_decoding,
)
from tests.test_shards_volumes import volume_shards  # noqa: F401 - the module's fixture

torch.set_num_threads(1)


def test_per_subject_accuracy_averages_each_subject_s_volumes():
    correct = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
    subjects = np.array(["sub-2", "sub-1", "sub-2"])
    assert per_subject_accuracy(correct, subjects) == {"sub-1": 1.0, "sub-2": 0.25}


def test_logistic_baseline_decodes_a_planted_roi_code_and_context_sees_neighbours():
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 3, (n, 6))
        x = rng.normal(0, 0.3, (n, 6, 4))
        x[:, :-1, :3] += 2.0 * np.eye(3)[y[:, 1:]]  # volume t's class: ROIs 0-2 one volume EARLIER
        return {"x": x, "y": y, "subject": np.arange(n).astype(str)}

    train, val, test = split(200), split(50), split(50)
    alone, chosen = logistic_baseline(train, val, test, context=0)
    context, _ = logistic_baseline(train, val, test, context=2)
    inner = slice(1, None)  # volume 0 has no earlier neighbour holding its code
    assert (context[:, inner] == test["y"][:, inner]).mean() > 0.95
    assert (alone[:, inner] == test["y"][:, inner]).mean() < 0.6  # its own volume holds noise
    assert chosen["C"] in (0.01, 0.1, 1.0, 10.0)


def test_the_decoder_predicts_one_class_per_volume():
    model = build_decoder((3, 8, 8, 8), n_classes=3, dim=16, options={"n_layers": 1})
    heads = model(torch.randn(2, 3, 8, 8, 8)).prediction["categorical"]
    assert [tuple(h.shape) for h in heads] == [(2, 3)] * 3


def test_run_decoding_scores_every_predictor_per_test_subject(volume_shards, tmp_path):  # noqa: F811
    grid = ({"n_layers": 1, "patch": 2},)
    metrics = run_decoding(volume_shards, tmp_path, seed=0, epochs=1, dim=8, grid=grid)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["accuracy"] == metrics["accuracy"]
    assert set(metrics["accuracy"]) == {"model", "logistic", "logistic_context", "chance"}
    n = metrics["n_test_subjects"]
    assert all(len(v) == n for v in metrics["per_unit"].values())
    # chance: the training volumes' majority class (rest) on every volume
    assert metrics["chosen"]["chance"] == {"class": "rest"}
    # windows at 0, 4, 8, 12 (8 volumes) hold 5, 3, 6 and 8 rest volumes (test_shards_volumes)
    assert metrics["per_unit"]["chance"] == [22 / 32] * n
    lines = (tmp_path / "per_subject.csv").read_text().splitlines()
    assert lines[0] == "subject,model,logistic,logistic_context,chance" and len(lines) == n + 1
    assert metrics["differences"]["model-chance"]["verdict"] == "does not beat"  # n < 5
    assert (tmp_path / "attention.png").stat().st_size > 1000  # attention on the slices


def test_the_anatomy_to_volumes_config_builds_and_trains_a_step_on_volume_shards(volume_shards):  # noqa: F811
    """configs/volume_generation.yaml's experiment (image -> volume_series), on volume shards."""
    import yaml

    from modalmerge.settings import from_config
    from modalmerge.stages.common import build_model, experiment_dataset
    from modalmerge.training.losses import make_loss
    from modalmerge.training.schedule import make_optimizer

    config = yaml.safe_load(open("configs/volume_generation.yaml"))
    settings = from_config(config)
    experiment, diffusion = settings.experiments  # the deterministic one, then diffusion
    assert (experiment.condition, experiment.target) == ("image", "volume_series")
    assert (diffusion.target, diffusion.method) == ("volume_series", "diffusion")
    assert settings.shard.volume_series.enabled
    torch.manual_seed(0)
    model = build_model(volume_shards, experiment)
    data = experiment_dataset(volume_shards, "train", experiment)
    batch = data.get_batch([0, 1])
    out = model(batch["condition"], return_attention=True)
    assert out.prediction.shape == batch["target"].shape == (2, 8, 3, 4, 2)
    assert out.attention.shape[-1] == model.condition_provenance().n_tokens
    loss = make_loss("volume_series")(out.prediction, batch["target"])
    loss.backward()
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.0)
    optimizer.step()
    after = make_loss("volume_series")(model(batch["condition"]).prediction, batch["target"])
    assert torch.isfinite(after) and after != loss
