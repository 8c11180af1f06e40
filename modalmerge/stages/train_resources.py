"""What one train job asks a cluster for: CPUs and memory scale with its GPUs (torch-free,
imported by ``workflow/rules/train.smk``; see ``docs/cluster.md``, "GPUs").

A job with ``gpus = N >= 1`` asks SLURM for one node with N GPUs, ``cpus_per_gpu`` CPUs per
GPU (``--cpus-per-gpu``) and ``N x mem_mb_per_gpu`` MiB (at least ``mem_mb``); Snakemake's
``threads`` of the job are its ``N x cpus_per_gpu`` CPUs, which the train stage shares among
its N ranks (:func:`modalmerge.training.distributed.cpu_budget`). A job without GPUs asks for
``config['train']['threads']`` CPUs (``--cpus-per-task``) and ``mem_mb``.
"""

from __future__ import annotations


def train_threads(gpus: int, cluster: dict, cpu_threads: int) -> int:
    """CPUs of a train job: ``gpus x cpus_per_gpu`` on GPUs, ``cpu_threads`` without."""
    return gpus * int(cluster["cpus_per_gpu"]) if gpus else int(cpu_threads)


def train_resources(gpus: int, cluster: dict) -> dict:
    """Snakemake resources (for the SLURM executor plugin) of a train job with ``gpus`` GPUs.

    Parameters
    ----------
    gpus : int
        The experiment's ``gpus``.
    cluster : dict
        ``config['cluster']`` with its schema defaults.

    Returns
    -------
    dict
        The same keys for every ``gpus`` (a rule's resources are one set of names; unused
        values are ``0`` or ``""``, which the plugin leaves out): ``runtime``, ``mem_mb``,
        ``nodes``, ``gpu``, ``cpus_per_gpu``, and ``slurm_partition``, ``slurm_account``
        and ``gpu_model`` when the config sets them.
    """
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f"gpus must be a non-negative integer, got {gpus!r}")
    mem_mb = int(cluster["mem_mb"])
    resources = {
        "runtime": int(cluster["runtime_minutes"]),
        "mem_mb": max(mem_mb, gpus * int(cluster["mem_mb_per_gpu"])) if gpus else mem_mb,
        "nodes": 1,  # torchrun --standalone: every rank on one node
        "gpu": gpus,
        "cpus_per_gpu": int(cluster["cpus_per_gpu"]) if gpus else 0,
    }
    if cluster.get("gpu_partition") or cluster.get("partition"):
        partition = cluster.get("partition", "")
        resources["slurm_partition"] = (
            (cluster.get("gpu_partition") or partition) if gpus else partition
        )
    if cluster.get("account"):
        resources["slurm_account"] = cluster["account"]
    if cluster.get("gpu_model"):
        resources["gpu_model"] = cluster["gpu_model"] if gpus else ""
    return resources
