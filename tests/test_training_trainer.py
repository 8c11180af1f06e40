"""Trainer behaviour: checkpoints, resume after a kill, early stopping, history, errors."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from modalmerge.io import InputError
from modalmerge.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from modalmerge.training.trainer import Trainer

torch.set_num_threads(1)


class TinyModel(nn.Module):
    """A minimal model of the contract, for fast tests of the loop: (B, F) -> (B, T, R)."""

    target_type = "time_series"

    def __init__(self, n_features: int = 6, window: int = 8, n_rois: int = 3, dropout: float = 0.2):
        super().__init__()
        self.config = {
            "n_features": n_features,
            "window": window,
            "n_rois": n_rois,
            "dropout": dropout,
        }
        self.shape = (window, n_rois)
        self.net = nn.Sequential(
            nn.Linear(n_features, 16),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(16, window * n_rois),
        )

    def forward(self, condition, target=None, time_offset=None, return_attention=False):
        prediction = self.net(condition).view(-1, *self.shape)
        return SimpleNamespace(prediction=prediction, attention=None)


class PairDataset(Dataset):
    def __init__(self, n: int = 32, sign: float = 1.0, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=g)
        w = torch.randn(6, 24, generator=g)
        self.y = sign * torch.tanh(self.x @ w).view(n, 8, 3)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"condition": self.x[i], "target": self.y[i]}


def tiny_multimodal(dropout: float = 0.1):
    """The real MultiModalModel at toy size: image (1, 6, 6, 6) -> time series (8, 3)."""
    from modalmerge.models import MultiModalModel

    return MultiModalModel(
        "image",
        "time_series",
        condition_encoder="cnn",
        target_decoder="transformer",
        embedding_dim=16,
        num_attention_heads=2,
        condition_shape=(1, 6, 6, 6),
        target_shape=(8, 3),
        dropout=dropout,
        encoder_options={"channels": 4, "n_blocks": 1},
        decoder_options={"n_layers": 1},
    )


class ImagePairs(Dataset):
    """Images (1, 6, 6, 6) whose mean brightness sets a time course's amplitude."""

    def __init__(self, n: int = 24, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 6, 6, 6, generator=g)
        course = torch.sin(torch.linspace(0, 6, 8))[None, :, None]
        self.y = self.x.mean(dim=(1, 2, 3, 4))[:, None, None] * course * torch.ones(1, 8, 3)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"condition": self.x[i], "target": self.y[i]}


def _loader(ds, shuffle=False, batch_size=8):
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle)


def test_training_lowers_loss_and_writes_history_csv_each_epoch(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(TinyModel(), lr=1e-2, checkpoint_dir=tmp_path, progress=False)
    seen = []
    history = trainer.train(
        _loader(PairDataset(), shuffle=True),
        _loader(PairDataset(seed=1)),
        epochs=4,
        on_epoch_end=lambda rec: seen.append(pd.read_csv(tmp_path / "history.csv").shape[0]),
    )
    assert seen == [1, 2, 3, 4]  # the CSV grows as training goes
    csv = pd.read_csv(tmp_path / "history.csv")
    assert list(csv.columns) == ["epoch", "train_loss", "val_loss", "lr", "seconds"]
    assert csv["epoch"].tolist() == [1, 2, 3, 4]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert np.allclose(csv["val_loss"], history["val_loss"])


def test_checkpoint_loads_with_weights_only_and_round_trips_the_model(tmp_path):
    torch.manual_seed(0)
    model = TinyModel()
    Trainer(model, checkpoint_dir=tmp_path, progress=False).train(
        _loader(PairDataset(), shuffle=True), _loader(PairDataset(seed=1)), epochs=2
    )
    raw = torch.load(tmp_path / "last.pt", weights_only=True)
    assert raw["model_config"] == model.config
    assert raw["epoch"] == 2 and len(raw["history"]) == 2
    for key in (
        "optimizer_state",
        "scheduler_state",
        "rng",
        "best_val_loss",
        "epochs_without_improvement",
    ):
        assert key in raw
    fresh = TinyModel(**raw["model_config"])
    fresh.load_state_dict(load_checkpoint(tmp_path / "last.pt")["model_state"])
    # training restored the best epoch's weights; the checkpoint stores the last epoch's
    best = raw["best_model_state"] or raw["model_state"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())


def test_a_checkpoint_s_bytes_do_not_depend_on_the_temporary_file_s_name(tmp_path, monkeypatch):
    """last.pt (and a plain model's model.pt) is written through a file object: the zip
    archive's folder is not the temporary name ``.tmp-<pid>-last.pt``."""
    checkpoint = {"model_state": TinyModel().state_dict(), "epoch": 3}
    written = []
    for pid in (11, 2222):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        written.append(save_checkpoint(tmp_path / str(pid) / "last.pt", checkpoint).read_bytes())
    assert written[0] == written[1]


def test_save_model_writes_config_and_state(tmp_path):
    model = TinyModel()
    trainer = Trainer(model, progress=False)
    trainer.save_model(tmp_path / "model.pt")
    saved = load_checkpoint(tmp_path / "model.pt")
    assert saved["model_config"] == model.config
    assert torch.equal(saved["model_state"]["net.0.weight"], model.net[0].weight)


def test_multimodal_model_checkpoint_rebuilds_the_trained_model(tmp_path):
    from modalmerge.models import MultiModalModel

    torch.manual_seed(0)
    model = tiny_multimodal()
    trainer = Trainer(model, checkpoint_dir=tmp_path, progress=False)
    trainer.train(_loader(ImagePairs(), shuffle=True), _loader(ImagePairs(8, seed=1)), epochs=2)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    rebuilt = MultiModalModel.from_config(ckpt["model_config"])
    rebuilt.load_state_dict(ckpt["best_model_state"] or ckpt["model_state"])
    # the workflow's model.pt: the model's own format, read back by MultiModalModel.load
    loaded = MultiModalModel.load(trainer.save_model(tmp_path / "model.pt"))
    for other in (rebuilt, loaded):
        assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())


def test_rng_state_round_trips_torch_numpy_python_and_generators():
    import random

    gen = torch.Generator().manual_seed(3)
    state = capture_rng_state({"loader": gen, "absent": None})
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))  # noqa: NPY002
    restore_rng_state(state, {"loader": gen})
    second = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))  # noqa: NPY002
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and torch.equal(first[3], second[3])


def test_early_stopping_stops_after_patience_and_restores_best_weights():
    torch.manual_seed(0)
    model = TinyModel(dropout=0.0)
    snapshots = {}

    def snapshot(record):
        snapshots[record["epoch"]] = {k: v.clone() for k, v in model.state_dict().items()}

    # validation targets are the negated training targets: fitting training makes validation worse
    history = Trainer(model, lr=3e-2, patience=2, progress=False, scheduler="constant").train(
        _loader(PairDataset()), _loader(PairDataset(sign=-1.0)), epochs=20, on_epoch_end=snapshot
    )
    best_epoch = int(history["val_loss"].idxmin()) + 1
    assert len(history) == best_epoch + 2 < 20
    assert all(torch.equal(v, snapshots[best_epoch][k]) for k, v in model.state_dict().items())


def test_nan_loss_raises_naming_epoch_and_batch():
    ds = ImagePairs(n=16)
    ds.y[9, 0, 0] = float("nan")  # second batch of 8
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1"):
        Trainer(tiny_multimodal(), progress=False).train(_loader(ds), epochs=1)


def test_batch_without_target_is_a_value_error():
    loader = [{"condition": torch.zeros(2, 6)}]
    with pytest.raises(ValueError, match="'condition' and 'target'"):
        Trainer(TinyModel(), progress=False).train(loader, epochs=1)


def test_model_without_config_is_rejected():
    with pytest.raises(ValueError, match=r"\.config"):
        Trainer(nn.Linear(2, 2), progress=False)


def test_resume_with_another_model_configuration_is_refused(tmp_path):
    Trainer(TinyModel(), checkpoint_dir=tmp_path, progress=False).train(
        _loader(PairDataset()), epochs=1
    )
    other = Trainer(
        TinyModel(n_rois=3, window=8, dropout=0.5), checkpoint_dir=tmp_path, progress=False
    )
    with pytest.raises(ValueError, match="another model configuration"):
        other.train(_loader(PairDataset()), epochs=2, resume=True)


def test_corrupt_checkpoint_is_an_input_error_naming_the_file(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="last.pt"):
        load_checkpoint(bad)


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    history = Trainer(TinyModel(), checkpoint_dir=tmp_path, progress=False).train(
        _loader(PairDataset()), epochs=1, resume=True
    )
    assert history["epoch"].tolist() == [1]


# A training script run in fresh processes: it can kill itself (SIGKILL) while reading
# a chosen sample, in the middle of an epoch, like a job the cluster pre-empts.
KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from torch.utils.data import DataLoader
    sys.path.insert(0, {tests_dir!r})
    from test_training_trainer import ImagePairs, tiny_multimodal
    from modalmerge.training.trainer import Trainer

    torch.set_num_threads(1)
    ckpt_dir, out, kill_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"

    class Killing(ImagePairs):
        reads = 0
        def __getitem__(self, i):
            Killing.reads += 1
            if Killing.reads == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return super().__getitem__(i)

    torch.manual_seed(0)
    model = tiny_multimodal(dropout=0.1)  # dropout: the random state must resume too
    train = DataLoader(Killing(n=24), batch_size=8, shuffle=True,
                       generator=torch.Generator().manual_seed(5))
    val = DataLoader(ImagePairs(n=8, seed=1), batch_size=8)
    trainer = Trainer(model, lr=1e-2, patience=10, checkpoint_dir=ckpt_dir, progress=False, seed=0)
    history = trainer.train(train, val, epochs=3, resume=resume)
    torch.save({{"state": model.state_dict(), "train_loss": history["train_loss"].tolist()}}, out)
    """
)


def _run(script: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_run_killed_mid_epoch_and_resumed_ends_with_bitwise_identical_weights(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(KILL_SCRIPT.format(tests_dir=str(Path(__file__).parent)))
    # the uninterrupted run, in this process (one process start less)
    argv = [str(script), str(tmp_path / "whole"), str(tmp_path / "whole.pt"), "-1", "0"]
    with mock.patch.object(sys, "argv", argv):
        runpy.run_path(str(script), run_name="__main__")
    # 24 training samples per epoch (validation reads another dataset): the 36th read is
    # in the second batch of epoch 2, after one optimizer step of that epoch
    killed = _run(script, tmp_path / "split", tmp_path / "never.pt", 36, 0)
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "never.pt").exists()
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    resumed = _run(script, tmp_path / "split", tmp_path / "resumed.pt", -1, 1)
    assert resumed.returncode == 0, resumed.stderr

    a = torch.load(tmp_path / "whole.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert a["state"].keys() == b["state"].keys()
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    assert a["train_loss"] == b["train_loss"]  # the history carried over, epoch by epoch
    assert os.listdir(tmp_path / "split") == os.listdir(tmp_path / "whole")


@pytest.mark.parametrize("name", ["cosine", "onecycle", "constant"])
def test_schedules_warm_up_then_decay_and_save_as_plain_data(name, tmp_path):
    from modalmerge.training.schedule import make_optimizer, make_scheduler

    optimizer = make_optimizer(TinyModel(), lr=1e-2, weight_decay=0.1)
    scheduler = make_scheduler(optimizer, name, total_steps=100, warmup_fraction=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    if name == "constant":
        assert set(lrs) == {1e-2}
    else:
        peak = int(np.argmax(lrs))
        assert 5 <= peak <= 12 and lrs[0] < lrs[peak] and lrs[-1] < 0.1 * lrs[peak]
    torch.save(scheduler.state_dict(), tmp_path / "s.pt")
    torch.load(tmp_path / "s.pt", weights_only=True)  # plain data: no pickled functions


def test_unknown_scheduler_and_amp_values_are_rejected():
    with pytest.raises(ValueError, match="unknown scheduler"):
        Trainer(TinyModel(), scheduler="step", progress=False).train(
            _loader(PairDataset()), epochs=1
        )
    with pytest.raises(ValueError, match="amp must be"):
        Trainer(TinyModel(), amp="fp8")


def test_training_loop_reads_no_value_from_the_device_per_batch(monkeypatch):
    """With the progress bar off, losses stay on the device: no .item() per step (a GPU sync).

    (torch's own CPU-side reads, Adam's step count and the loader's seed, are not counted.)
    """
    trainer = Trainer(TinyModel(), lr=1e-2, progress=False)
    calls = []
    item = torch.Tensor.item

    def spy(self):
        if "modalmerge" in sys._getframe(1).f_code.co_filename:
            calls.append(sys._getframe(1).f_code.co_name)
        return item(self)

    monkeypatch.setattr(torch.Tensor, "item", spy)
    history = trainer.train(_loader(PairDataset(n=64)), _loader(PairDataset(seed=1)), epochs=2)
    assert calls == [] and len(history) == 2  # 16 steps: the epoch means come from one .tolist()
