"""Device, precision and process-group choices on mocked nodes: an sm80 GPU node (bf16), an sm70
one (fp16 + GradScaler) and a CPU-only node, without a GPU on the test machine."""

from __future__ import annotations

import logging

import pytest
import torch

from modalmerge.training import device as device_mod
from modalmerge.training import distributed
from modalmerge.training.device import resolve_device, select_precision
from modalmerge.training.distributed import DistributedContext, cpu_budget

GPU_ENV = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")


@pytest.fixture
def node(monkeypatch):
    """Make torch see a node: ``node(capability, count)``; ``capability=None`` is CPU-only."""
    for name in (*GPU_ENV, "MODALMERGE_DEVICE", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    bound = []

    def make(capability, count=0):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: capability is not None)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "set_device", bound.append)
        return bound

    return make


@pytest.fixture
def process_group(monkeypatch):
    """Record init_process_group's arguments instead of joining a group (2 ranks, this is rank 1)."""
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: calls.append(kw))
    return calls


def test_bf16_node_binds_each_rank_to_its_gpu_and_groups_nccl_with_gloo(
    node, process_group, caplog
):
    bound = node((8, 0), count=2)
    device = resolve_device("auto", local_rank=1)
    assert device == torch.device("cuda", 1) and bound == [torch.device("cuda", 1)]
    assert select_precision(device) == "bf16"
    assert select_precision(device, "off") == "fp32"
    ctx = distributed.setup(device)
    assert ctx == DistributedContext(2, 1, 1)
    [kwargs] = process_group
    assert kwargs["backend"] == "cpu:gloo,cuda:nccl"  # CPU tensors reduce over Gloo
    assert kwargs["device_id"] == torch.device("cuda", 1) and kwargs["rank"] == 1


def test_fp16_only_node_gets_fp16_with_a_scaler_even_when_bf16_is_asked_for(node, caplog):
    node((7, 0), count=1)
    device = resolve_device("auto")
    assert device == torch.device("cuda", 0)
    assert select_precision(device) == "fp16"
    with caplog.at_level(logging.WARNING):
        assert select_precision(device, "bf16") == "fp16"
    assert "not native" in caplog.text


def test_cpu_only_node_trains_in_fp32_over_gloo(node, process_group):
    node(None)
    device = resolve_device("auto")
    assert device == torch.device("cpu")
    assert select_precision(device) == "fp32"
    distributed.setup(device)
    assert process_group == [{"backend": "gloo", "rank": 1, "world_size": 2}]


def test_more_ranks_than_gpus_is_refused_instead_of_stacking_ranks(node):
    node((8, 0), count=2)
    with pytest.raises(RuntimeError, match="local rank 2 needs GPU 2 but this process sees 2"):
        resolve_device("auto", local_rank=2)


def test_gpu_node_with_cpu_only_torch_fails_clearly(node, monkeypatch):
    node(None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(device_mod, "_nvidia_device_files", lambda: ["/dev/nvidia0"])
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(RuntimeError, match="CPU-only build.*MODALMERGE_DEVICE=cpu"):
        resolve_device("auto")
    monkeypatch.setenv("MODALMERGE_DEVICE", "cpu")  # on purpose
    assert resolve_device("auto") == torch.device("cpu")


def test_gpu_allocated_without_nvidia_devices_falls_back_to_cpu_with_a_warning(
    node, monkeypatch, caplog
):
    node(None)  # e.g. a test cluster's fake GRES backed by /dev/null
    monkeypatch.setenv("SLURM_JOB_GPUS", "0")
    monkeypatch.setattr(device_mod, "_nvidia_device_files", lambda: [])
    with caplog.at_level(logging.WARNING):
        assert resolve_device("auto") == torch.device("cpu")
    assert "none usable" in caplog.text


@pytest.mark.parametrize(
    ("threads", "world", "device", "expected"),
    [
        (16, 2, "cuda", (1, 7)),  # 8 CPUs per GPU: the loop + 7 loader workers per rank
        (32, 4, "cuda", (1, 7)),
        (1, 1, "cuda", (1, 0)),
        (8, 2, "cpu", (4, 0)),  # CPU ranks compute with their CPUs, read in-process
        (64, 2, "cpu", (16, 0)),  # capped at the 32 CPUs this process may use
    ],
)
def test_cpu_budget_shares_the_job_cpus_among_ranks(monkeypatch, threads, world, device, expected):
    monkeypatch.delenv("SLURM_CPUS_PER_GPU", raising=False)
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(32)))
    ctx = DistributedContext(world, 0, 0)
    assert cpu_budget(threads, ctx, torch.device(device)) == expected


def test_under_slurm_each_gpu_rank_takes_the_job_cpus_per_gpu(monkeypatch):
    # Snakemake may report fewer threads than SLURM gave (its --cores caps them)
    monkeypatch.setenv("SLURM_CPUS_PER_GPU", "8")
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(32)))
    ctx = DistributedContext(4, 3, 3)
    assert cpu_budget(8, ctx, torch.device("cuda", 3)) == (1, 7)
    assert cpu_budget(8, ctx, torch.device("cpu")) == (2, 0)  # no GPU: the threads, shared


def test_a_device_fault_is_one_line_from_the_command_line(monkeypatch, capsys, tmp_path):
    """A GPU job on a CPU-only torch stops with the message, not a traceback."""
    from modalmerge import cli
    from modalmerge.io import DeviceError

    def no_gpu(args):
        raise DeviceError("this job was given GPUs (0) but torch is a CPU-only build")

    monkeypatch.setattr(cli, "_train", no_gpu)
    experiment = '{"name": "x", "condition": "image", "target": "time_series"}'
    argv = ["train", "--settings", "{}", "--experiment", experiment]
    code = cli.main([*argv, "--shards", str(tmp_path), "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "modalmerge train: error: this job was given GPUs" in err
    assert "Traceback" not in err
