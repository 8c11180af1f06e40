"""The real train stage (``modalmerge train``, the command the Snakemake rule runs) under
``torchrun --nproc_per_node=2`` with Gloo on the CPU: it ends with exit code 0 and a saved
model, and a run killed after a checkpoint and rerun finishes with the model of an
uninterrupted 2-process run (the promise of docs/cluster.md, "Resuming")."""

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
from test_shards import PARAMS, make_inputs

from modalmerge.data.shards.subjects import write_shards
from modalmerge.training.distributed import launch_command

pytestmark = pytest.mark.skipif(
    shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
    reason="torchrun is not installed beside this Python or on PATH",
)

EXPERIMENT = {
    "name": "tiny_xattn",
    "condition": "image",
    "target": "time_series",
    "encoder": "cnn",
    "decoder": "transformer",
    "method": "cross_attention",
    "embedding_dim": 16,
    "heads": 2,
    "dropout": 0.1,  # per-rank dropout streams must survive the resume too
    "encoder_options": {"channels": 4, "n_blocks": 1},
    "decoder_options": {"n_layers": 1},
}
# conditioning='diffusion': its random steps, noise and condition dropout must resume too
DIFFUSION = {
    **EXPERIMENT,
    "name": "tiny_diffusion",
    "decoder": "denoiser",
    "method": "diffusion",
    "method_options": {"train_steps": 20, "sample_steps": 5},
}
SETTINGS = {"seed": 0, "epochs": 3, "batch_size": 4, "lr": 0.003, "patience": 10}

# Loaded at start-up of every process that has MM_KILL_AFTER_EPOCH set (PYTHONPATH): rank 0
# SIGKILLs itself right after writing the checkpoint of that epoch, like a pre-empted job.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os
    if os.environ.get("MM_KILL_AFTER_EPOCH") and "RANK" in os.environ:
        import signal
        import modalmerge.training.trainer as trainer

        _save = trainer.save_checkpoint

        def save_checkpoint(path, checkpoint):
            out = _save(path, checkpoint)
            if checkpoint["epoch"] >= int(os.environ["MM_KILL_AFTER_EPOCH"]):
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        trainer.save_checkpoint = save_checkpoint
    """
)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage_shards")
    write_shards(*make_inputs(root), root / "shards", PARAMS)
    return root / "shards"


def _train(shards, out_dir, env_extra=None, experiment=None) -> subprocess.CompletedProcess:
    argv = ["-m", "modalmerge.cli", "train", "--settings", json.dumps(SETTINGS)]
    argv += ["--experiment", json.dumps(experiment or EXPERIMENT), "--shards", str(shards)]
    argv += ["--out-dir", str(out_dir), "--threads", "2"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", **(env_extra or {}))
    return subprocess.run(
        launch_command(2, argv), capture_output=True, text=True, timeout=240, env=env
    )


def _state(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.parametrize("experiment", [EXPERIMENT, DIFFUSION], ids=["xattn", "diffusion"])
def test_two_rank_train_stage_ends_cleanly_and_a_killed_run_resumes_to_the_same_model(
    shards, tmp_path, experiment
):
    whole = _train(shards, tmp_path / "whole", experiment=experiment)
    assert whole.returncode == 0, whole.stderr[-4000:]
    assert (tmp_path / "whole" / "model.pt").exists()
    assert not (tmp_path / "whole" / "checkpoints").exists()  # finished: resume state removed
    history = pd.read_csv(tmp_path / "whole" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    # the job log shows one line per epoch, from rank 0 only, without a TTY
    lines = [line for line in whole.stderr.splitlines() if "train_loss" in line]
    assert len(lines) == 3 and all("val_loss" in line and " lr " in line for line in lines)

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    pythonpath = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    killed = _train(
        shards,
        tmp_path / "split",
        {"MM_KILL_AFTER_EPOCH": "1", "PYTHONPATH": pythonpath},
        experiment,
    )
    assert killed.returncode != 0
    assert not (tmp_path / "split" / "model.pt").exists()
    ckpt = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and len(ckpt["rank_rng"]) == 2

    resumed = _train(shards, tmp_path / "split", experiment=experiment)  # Snakemake's retry
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in resumed.stderr
    a, b = _state(tmp_path / "whole" / "model.pt"), _state(tmp_path / "split" / "model.pt")
    assert a.keys() == b.keys()
    for key in a:  # the documented promise: equal to float tolerance (bitwise in practice)
        assert torch.allclose(a[key], b[key], rtol=1e-5, atol=1e-7), key
    again = pd.read_csv(tmp_path / "split" / "history.csv")
    for column in ("train_loss", "val_loss", "lr"):
        assert again[column].tolist() == pytest.approx(history[column].tolist(), rel=1e-6)
