"""Data-parallel training under ``torchrun``.

:class:`~modalmerge.training.trainer.Trainer` calls :func:`setup` itself: when the
environment says ``WORLD_SIZE > 1`` (as ``torchrun`` sets it) it joins the process
group (NCCL on CUDA, with Gloo for CPU tensors; Gloo on CPU), and :func:`shard_loader` gives each process
its share of every global batch. A global batch of ``B`` samples is split into
``WORLD_SIZE`` equal pieces of ``B / WORLD_SIZE``; DistributedDataParallel
averages the gradients, so each optimizer step sees the same gradient as a
single process with batch ``B`` (exactly so for element-mean losses)::

    cmd = launch_command(4, ["-m", "modalmerge.cli", "train", ...])
    subprocess.run(cmd, check=True)
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a data-parallel run (world size 1: not distributed)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints and history (rank 0)."""
        return self.rank == 0


def context_from_env() -> DistributedContext:
    """Read ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` as set by ``torchrun``."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ValueError(f"bad torchrun environment variable: {err}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"inconsistent torchrun environment: WORLD_SIZE={world}, RANK={rank}")
    return DistributedContext(world, rank, local)


def setup(device: torch.device) -> DistributedContext:
    """Join the process group when launched by ``torchrun`` with several processes.

    Parameters
    ----------
    device : torch.device
        This process's training device. On CUDA the group is ``cpu:gloo,cuda:nccl``
        (NCCL for CUDA tensors, Gloo for any CPU tensor) and bound to ``device``
        (``device_id``: NCCL connects eagerly and barriers use this GPU, not GPU 0);
        on the CPU it is Gloo.

    Returns
    -------
    DistributedContext
        World size 1 (and nothing initialised) outside ``torchrun``.
    """
    ctx = context_from_env()
    if ctx.enabled and not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group(
                backend="cpu:gloo,cuda:nccl",
                rank=ctx.rank,
                world_size=ctx.world_size,
                device_id=device,
            )
        else:
            dist.init_process_group(backend="gloo", rank=ctx.rank, world_size=ctx.world_size)
    return ctx


def teardown() -> None:
    """Leave the process group (at the end of a torchrun job; no-op when none was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, ctx: DistributedContext) -> int:
    """The seed of this process's own random streams (dropout, augmentation): ``seed + rank``.

    Ranks share the base ``seed`` for what must agree (initial weights, which DDP
    also broadcasts from rank 0, and the data shuffle); with ``seed + rank`` their
    dropout masks are independent. A single process (rank 0) uses ``seed`` itself.
    """
    return int(seed) + ctx.rank


def all_gather_objects(value, ctx: DistributedContext) -> list:
    """``[value of rank 0, value of rank 1, ...]`` on every process (``[value]`` when not distributed)."""
    if not ctx.enabled:
        return [value]
    gathered: list = [None] * ctx.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def all_reduce_sum(value: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Sum ``value`` over all processes (a copy; identity when not distributed).

    ``value`` lives on the training device (NCCL reduces CUDA tensors only).
    """
    value = value.detach().clone()
    if ctx.enabled:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier(ctx: DistributedContext) -> None:
    """Wait for every process (no-op when not distributed)."""
    if ctx.enabled:
        dist.barrier()


def cpu_budget(threads: int, ctx: DistributedContext, device: torch.device) -> tuple[int, int]:
    """``(torch threads, data-loader workers)`` of this rank.

    A rank's CPUs: under SLURM on a GPU, the job's ``--cpus-per-gpu``
    (``SLURM_CPUS_PER_GPU``); otherwise the job's ``threads`` shared evenly by the
    ranks; either capped at this process's CPUs (its affinity) shared by the
    ranks. On CUDA a rank keeps one CPU for its training loop (its tensor work
    runs on the GPU) and gives the others to data-loader workers; on the CPU it
    computes with all of them and reads the data in the main process (0 workers).
    """
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    per_rank = max(1, int(threads)) // ctx.world_size
    if device.type == "cuda" and os.environ.get("SLURM_CPUS_PER_GPU", "").isdigit():
        per_rank = int(os.environ["SLURM_CPUS_PER_GPU"])
    per_rank = max(1, min(per_rank, available // ctx.world_size))
    if device.type == "cuda":
        return 1, per_rank - 1
    return per_rank, 0


class StridedShardSampler(Sampler[int]):
    """Every ``world_size``-th index from ``rank``, in order, without padding.

    For validation: the shards together cover the dataset exactly once.
    """

    def __init__(self, n_samples: int, ctx: DistributedContext):
        self.indices = list(range(ctx.rank, n_samples, ctx.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def shard_loader(loader: DataLoader, ctx: DistributedContext, seed: int, train: bool) -> DataLoader:
    """Rebuild ``loader`` so that this process reads its share of each global batch.

    Parameters
    ----------
    loader : torch.utils.data.DataLoader
        The single-process loader; its ``batch_size`` is the global batch size
        and must be divisible by the world size.
    ctx : DistributedContext
        This process's place.
    seed : int
        Seed of the epoch-wise shuffle (:class:`torch.utils.data.DistributedSampler`);
        a ``DistributedSampler`` already in ``loader`` keeps its own seed.
    train : bool
        Training loaders shuffle when ``loader`` did (``RandomSampler`` or a
        ``DistributedSampler`` with shuffling); validation loaders are split in
        strides with no sample repeated.

    Returns
    -------
    torch.utils.data.DataLoader
        ``loader`` itself when not distributed.
    """
    if not ctx.enabled:
        return loader
    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        raise ValueError("distributed training needs a DataLoader with a batch_size")
    if loader.batch_size % ctx.world_size:
        raise ValueError(
            f"global batch size {loader.batch_size} is not divisible by "
            f"the {ctx.world_size} processes"
        )
    n = len(loader.dataset)
    if train:
        shuffle = isinstance(loader.sampler, RandomSampler)
        if isinstance(loader.sampler, DistributedSampler):  # keep its shuffle and seed
            shuffle, seed = loader.sampler.shuffle, loader.sampler.seed
        sampler: Sampler[int] = DistributedSampler(
            loader.dataset,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=loader.drop_last,
        )
    else:
        sampler = StridedShardSampler(n, ctx)
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size // ctx.world_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory or torch.cuda.is_available(),
        drop_last=loader.drop_last if train else False,
        persistent_workers=loader.persistent_workers,
        worker_init_fn=loader.worker_init_fn,
    )


def _torchrun_executable() -> list[str]:
    beside_python = Path(sys.executable).with_name("torchrun")
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which("torchrun")
    if found:
        return [found]
    return [sys.executable, "-m", "torch.distributed.run"]


def launch_command(n_gpus: int, argv: Sequence[str]) -> list[str]:
    """The ``torchrun`` command line that runs ``argv`` on ``n_gpus`` processes of one node.

    Parameters
    ----------
    n_gpus : int
        Processes to start (one per GPU; on CPU, one per Gloo worker), >= 1.
    argv : sequence of str
        The program and its arguments as ``torchrun`` takes them: a script path
        (``["train.py", "--epochs", "3"]``) or a module (``["-m", "modalmerge.cli", ...]``).

    Returns
    -------
    list of str
        ``[torchrun, "--standalone", "--nproc_per_node=N", *argv]``; ``torchrun`` is
        the one installed beside this Python (else on ``PATH``, else
        ``python -m torch.distributed.run``).
    """
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
        raise ValueError(f"n_gpus must be a positive integer, got {n_gpus!r}")
    argv = list(argv)
    if not argv:
        raise ValueError("argv must name the program to launch")
    return [*_torchrun_executable(), "--standalone", f"--nproc_per_node={n_gpus}", *argv]
