"""Data-parallel training under torchrun (CPU, Gloo) matches one process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from modalmerge.training.distributed import (
    DistributedContext,
    StridedShardSampler,
    context_from_env,
    launch_command,
    shard_loader,
)


def test_launch_command_builds_a_standalone_torchrun_line():
    cmd = launch_command(4, ["-m", "modalmerge.cli", "train", "--experiment", "a"])
    assert Path(cmd[0]).name == "torchrun" or cmd[1:3] == ["-m", "torch.distributed.run"]
    i = cmd.index("--standalone")
    assert cmd[i + 1] == "--nproc_per_node=4"
    assert cmd[i + 2 :] == ["-m", "modalmerge.cli", "train", "--experiment", "a"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_launch_command_rejects_bad_process_counts(bad):
    with pytest.raises(ValueError, match="n_gpus"):
        launch_command(bad, ["train.py"])


def test_launch_command_needs_a_program():
    with pytest.raises(ValueError, match="argv"):
        launch_command(2, [])


def test_context_reads_torchrun_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    ctx = context_from_env()
    assert ctx == DistributedContext(4, 2, 0) and ctx.enabled and not ctx.is_main
    monkeypatch.setenv("RANK", "7")
    with pytest.raises(ValueError, match="inconsistent"):
        context_from_env()


def test_validation_shards_cover_every_sample_once():
    shards = [list(StridedShardSampler(10, DistributedContext(3, r, r))) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))


def test_sharding_needs_a_global_batch_divisible_by_the_processes():
    loader = DataLoader(list(range(12)), batch_size=5)
    with pytest.raises(ValueError, match="not divisible"):
        shard_loader(loader, DistributedContext(2, 0, 0), seed=0, train=True)


DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from torch.utils.data import DataLoader, DistributedSampler
    sys.path.insert(0, {tests_dir!r})
    from test_training_trainer import PairDataset, TinyModel
    from modalmerge.training.trainer import Trainer

    torch.set_num_threads(1)
    out, ckpt_dir = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    # the stand-in has no normalisation layers: every weight is set by the data. (Biases
    # before a LayerNorm/GroupNorm get float-noise gradients that AdamW amplifies, so
    # their values differ across summation orders while the function does not.)
    model = TinyModel(dropout=0.0)

    class Recording(PairDataset):
        reads = []
        def __getitem__(self, i):
            Recording.reads.append(int(i))
            return super().__getitem__(i)

    data = Recording(n=32)
    # one shuffled order per epoch, the same in one process and across processes
    train = DataLoader(data, batch_size=8,
                       sampler=DistributedSampler(data, num_replicas=1, rank=0, seed=3))
    val = DataLoader(PairDataset(n=10, seed=1), batch_size=4)
    trainer = Trainer(model, lr=1e-2, checkpoint_dir=ckpt_dir, progress=False)
    trainer.train(train, val, epochs=2)
    trainer.save_model(out)
    with open(f"{{out}}.reads-rank{{os.environ.get('RANK', '0')}}.json", "w") as f:
        json.dump(Recording.reads, f)
    """
)


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
    reason="torchrun is not installed beside this Python or on PATH",
)
def test_two_process_torchrun_matches_single_process_with_same_global_batch(tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(DDP_SCRIPT.format(tests_dir=str(Path(__file__).parent)))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    single = subprocess.run(
        [sys.executable, str(script), tmp_path / "single.pt", tmp_path / "single"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert single.returncode == 0, single.stderr
    cmd = launch_command(2, [str(script), str(tmp_path / "ddp.pt"), str(tmp_path / "ddp")])
    ddp = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    # each process read its own half of every epoch
    reads = [json.loads((tmp_path / f"ddp.pt.reads-rank{r}.json").read_text()) for r in (0, 1)]
    assert len(reads[0]) == len(reads[1]) == 32
    for epoch in (0, 1):
        halves = [set(r[16 * epoch : 16 * (epoch + 1)]) for r in reads]
        assert halves[0].isdisjoint(halves[1]) and halves[0] | halves[1] == set(range(32))
    a = torch.load(tmp_path / "single.pt", weights_only=True)["model_state"]
    b = torch.load(tmp_path / "ddp.pt", weights_only=True)["model_state"]
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-6), key
    h1 = pd.read_csv(tmp_path / "single" / "history.csv")
    h2 = pd.read_csv(tmp_path / "ddp" / "history.csv")
    assert h1["epoch"].tolist() == h2["epoch"].tolist() == [1, 2]
    # validation pools both processes' shards: the same mean as one process
    assert h1["val_loss"].tolist() == pytest.approx(h2["val_loss"].tolist(), rel=1e-5)
    assert h1["train_loss"].tolist() == pytest.approx(h2["train_loss"].tolist(), rel=1e-5)


def test_tabular_loss_uses_every_categorical_head_even_without_observed_codes():
    """DDP (find_unused_parameters=False) needs the same parameters in every rank's graph: a
    rank's batch without an observed code for a column must still reach that column's head."""
    from modalmerge.training.losses import TabularLoss

    numeric = torch.randn(4, 2, requires_grad=True)
    heads = [torch.randn(4, 3, requires_grad=True), torch.randn(4, 2, requires_grad=True)]
    target = torch.tensor([[0.1, 0.2, 1, -1], [0.3, 0.4, 2, -1], [0.5, 0.6, 0, -1], [0, 0, 1, -1]])
    loss = TabularLoss()({"numeric": numeric, "categorical": heads}, target)
    loss.backward()
    assert heads[1].grad is not None and torch.count_nonzero(heads[1].grad) == 0
    # the value: MSE + the mean cross-entropy of the heads that have an observed code
    expected = torch.nn.functional.mse_loss(
        numeric, target[:, :2]
    ) + torch.nn.functional.cross_entropy(heads[0], target[:, 2].long())
    assert torch.isclose(loss, expected)
