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
# SIGKILLs itself right after writing the checkpoint of that epoch (with MM_KILL_IN, only a
# checkpoint whose path contains it: an ensemble member's), like a pre-empted job.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os
    if os.environ.get("MM_KILL_AFTER_EPOCH") and "RANK" in os.environ:
        import signal
        import modalmerge.training.trainer as trainer

        _save = trainer.save_checkpoint

        def save_checkpoint(path, checkpoint):
            out = _save(path, checkpoint)
            late = checkpoint["epoch"] >= int(os.environ["MM_KILL_AFTER_EPOCH"])
            if late and os.environ.get("MM_KILL_IN", "") in str(path):
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


def _train(
    shards, out_dir, env_extra=None, experiment=None, settings=None
) -> subprocess.CompletedProcess:
    argv = ["-m", "modalmerge.cli", "train", "--settings", json.dumps(settings or SETTINGS)]
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


def _hooks(tmp_path) -> str:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))


def test_two_rank_ensemble_killed_in_its_second_member_resumes_to_the_same_ensemble(
    shards, tmp_path
):
    """``train.ensemble: 2`` under torchrun: a job killed while member 1 trains keeps member 0
    and resumes member 1 from its checkpoint; the ensemble equals an uninterrupted run's."""
    settings = {**SETTINGS, "epochs": 2, "ensemble": 2}
    whole = _train(shards, tmp_path / "whole", settings=settings)
    assert whole.returncode == 0, whole.stderr[-4000:]
    env = {"MM_KILL_AFTER_EPOCH": "1", "MM_KILL_IN": "member-1", "PYTHONPATH": _hooks(tmp_path)}
    killed = _train(shards, tmp_path / "split", env, settings=settings)
    assert killed.returncode != 0
    assert not (tmp_path / "split" / "model.pt").exists()
    assert (tmp_path / "split" / "checkpoints" / "member-0" / "model.pt").is_file()
    resumed = _train(shards, tmp_path / "split", settings=settings)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "ensemble member 1 of 2: trained before" in resumed.stderr
    assert "resumed from" in resumed.stderr
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["members"]
    b = torch.load(tmp_path / "split" / "model.pt", weights_only=True)["members"]
    assert len(a) == len(b) == 2
    for member_a, member_b in zip(a, b, strict=True):
        for key in member_a:
            assert torch.allclose(member_a[key], member_b[key], rtol=1e-5, atol=1e-7), key
    history = pd.read_csv(tmp_path / "split" / "history.csv")
    assert history[["member", "epoch"]].values.tolist() == [[0, 1], [0, 2], [1, 1], [1, 2]]
