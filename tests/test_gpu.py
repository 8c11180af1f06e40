"""The CUDA paths of the diffusion models (issue 12: "checkpoints, resume after a kill, bf16
on CUDA ... work as for the other methods"). They need a GPU and are skipped without one
(as in CI and on the 2-core development machine); ``benchmarks/gpu_check.sh`` runs them
with the GPU benchmarks in one call on a lent device. The CPU tests of the same behaviour
are ``test_models_diffusion_bf16.py`` (bf16 autocast) and ``test_models_diffusion.py``
(resume after a kill, bit-exact on the CPU; on CUDA the backward kernels are not
deterministic, so a resumed run is compared within a tolerance here)."""

from __future__ import annotations

import json
import logging
import os
import subprocess

import numpy as np
import pytest
import torch
from _model_fixtures import batch
from test_models_diffusion import Interrupt, _fit, diffusion_model
from test_models_diffusion_bf16 import MODELS, image_target

from modalmerge.training.losses import make_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def _loss(model, condition, target, bf16: bool) -> torch.Tensor:
    torch.manual_seed(0)  # the same timesteps, noise and condition dropout (CPU and CUDA RNGs)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        terms = model.train()(condition, target=target).prediction
    return make_loss("diffusion")(terms, target)


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_bf16_on_cuda_keeps_the_denoising_loss_and_the_samples_close_to_fp32(build):
    model = build().to(CUDA)
    target_type = "image" if build is image_target else "time_series"
    condition = batch("time_series" if target_type == "image" else "image", seed=3).to(CUDA)
    target = batch(target_type, seed=4).to(CUDA)
    reference = _loss(model, condition, target, bf16=False)
    loss = _loss(model, condition, target, bf16=True)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, reference, rtol=0.05, atol=1e-3)
    loss.backward()
    assert all(
        torch.isfinite(p.grad).all() for p in model.decoder.parameters() if p.grad is not None
    )
    model.eval()
    fp32 = model.sample(condition, n_samples=2, seed=0).samples
    with torch.autocast("cuda", dtype=torch.bfloat16):
        drawn = model.sample(condition, n_samples=2, seed=0).samples
    assert drawn.device.type == "cuda" and drawn.dtype == torch.float32
    assert torch.isfinite(drawn).all()
    assert (drawn - fp32).abs().mean().item() < 0.05 * fp32.std().item()


def test_the_trainer_puts_a_diffusion_model_on_cuda_in_bf16_and_resumes_after_a_kill(
    tmp_path, caplog
):
    """test_models_diffusion's three epochs (a killed run, then its resume), here on CUDA."""
    with caplog.at_level(logging.INFO, logger="modalmerge.training.trainer"):
        whole, history = _fit(tmp_path / "whole")
    native = torch.cuda.get_device_capability() >= (8, 0)
    assert f"training on cuda:0 in {'bf16' if native else 'fp16'}" in caplog.text
    assert all(torch.isfinite(torch.as_tensor(history["val_loss"].tolist())))
    with pytest.raises(Interrupt):
        _fit(tmp_path / "split", fail_at=22)  # in epoch 2, after its first optimizer step
    resumed, again = _fit(tmp_path / "split", resume=True)
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=1e-2, atol=1e-3)
    assert again["val_loss"].tolist() == pytest.approx(history["val_loss"].tolist(), rel=0.05)
    # the checkpoint a GPU job writes is read and sampled on a CPU-only machine
    from modalmerge.training.checkpoint import load_checkpoint

    state = load_checkpoint(tmp_path / "whole" / "last.pt")["model_state"]
    assert all(t.device.type == "cpu" for t in state.values() if torch.is_tensor(t))
    on_cpu = diffusion_model(dropout=0.1)
    on_cpu.load_state_dict(state)
    condition = batch("image", seed=3)
    assert torch.isfinite(on_cpu.eval().sample(condition, n_samples=2, seed=0).samples).all()


def test_the_train_stage_under_torchrun_trains_a_diffusion_model_on_cuda_with_nccl(tmp_path):
    """The real stage under its real launcher (one process per GPU: ``gpus:`` of an
    experiment): NCCL for CUDA tensors, bf16 where native, a model.pt at the end."""
    from test_shards import PARAMS, make_inputs
    from test_train_stage_torchrun import DIFFUSION, SETTINGS

    from modalmerge.data.shards.subjects import write_shards
    from modalmerge.training.distributed import launch_command

    write_shards(*make_inputs(tmp_path), tmp_path / "shards", PARAMS)
    argv = ["-m", "modalmerge.cli", "train", "--settings", json.dumps(SETTINGS)]
    argv += ["--experiment", json.dumps(DIFFUSION), "--shards", str(tmp_path / "shards")]
    argv += ["--out-dir", str(tmp_path / "out"), "--threads", "2"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    n = torch.cuda.device_count()
    done = subprocess.run(
        launch_command(n, argv), capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    native = torch.cuda.get_device_capability() >= (8, 0)
    setup = f"training on cuda:0 in {'bf16' if native else 'fp16'}"
    assert setup in done.stderr and (n == 1 or f"(DDP, {n} processes)" in done.stderr)
    assert (tmp_path / "out" / "model.pt").exists()


def test_the_evaluate_stage_draws_samples_on_the_gpu_and_returns_cpu_arrays():
    """A GPU's random stream is not the CPU's, so the draws differ, but they are fixed by the
    seed on the GPU too and come from the same distribution as the CPU's."""
    from test_evaluate_samples import held_out
    from test_models_diffusion import nonzero

    from modalmerge.stages.evaluate_samples import draw_samples

    split = held_out(8)
    model = nonzero(diffusion_model()).eval()
    on_cpu, _ = draw_samples(model, split, n_samples=32, seed=4)
    model.to(CUDA)
    on_gpu, attention = draw_samples(model, split, n_samples=32, seed=4)
    again, _ = draw_samples(model, split, n_samples=32, seed=4)
    assert isinstance(on_gpu, np.ndarray) and on_gpu.dtype == np.float32
    assert on_gpu.shape == on_cpu.shape and np.isfinite(attention).all()
    np.testing.assert_allclose(on_gpu, again, rtol=1e-4, atol=1e-5)
    spread = on_cpu.std(axis=1).mean()
    assert np.abs(on_gpu.mean(axis=1) - on_cpu.mean(axis=1)).mean() < 0.5 * spread
    assert 0.8 < on_gpu.std(axis=1).mean() / spread < 1.25
