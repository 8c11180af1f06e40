"""What one train job asks a cluster for: CPUs and memory scale with its GPUs (torch-free,
imported by ``workflow/rules/train.smk``; see ``docs/cluster.md``, "GPUs"); and the one GPU
an evaluate job of a generative model trained on GPUs asks for (:func:`evaluate_gpus`).

A job with ``gpus = N >= 1`` asks SLURM for one node with N GPUs, ``cpus_per_gpu`` CPUs per
GPU (``--cpus-per-gpu``) and ``N x mem_mb_per_gpu`` MiB (at least ``mem_mb``); Snakemake's
``threads`` of the job are its ``N x cpus_per_gpu`` CPUs, which the train stage shares among
its N ranks (:func:`modalmerge.training.distributed.cpu_budget`). A job without GPUs asks for
``config['train']['threads']`` CPUs (``--cpus-per-task``) and ``mem_mb``.
"""

from __future__ import annotations

from modalmerge.settings import ClusterSettings


def train_threads(gpus: int, cluster: ClusterSettings | dict, cpu_threads: int) -> int:
    """CPUs of a train job: ``gpus x cpus_per_gpu`` on GPUs, ``cpu_threads`` without."""
    return gpus * ClusterSettings.coerce(cluster).cpus_per_gpu if gpus else int(cpu_threads)


def train_resources(gpus: int, cluster: ClusterSettings | dict) -> dict:
    """Snakemake resources (for the SLURM executor plugin) of a train job with ``gpus`` GPUs.

    Parameters
    ----------
    gpus : int
        The experiment's ``gpus``.
    cluster : ClusterSettings or dict
        ``config['cluster']`` (a mapping gets the settings' defaults).

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
    cluster = ClusterSettings.coerce(cluster)
    resources = {
        "runtime": cluster.runtime_minutes,
        "mem_mb": max(cluster.mem_mb, gpus * cluster.mem_mb_per_gpu) if gpus else cluster.mem_mb,
        "nodes": 1,  # torchrun --standalone: every rank on one node
        "gpu": gpus,
        "cpus_per_gpu": cluster.cpus_per_gpu if gpus else 0,
    }
    if cluster.gpu_partition or cluster.partition:
        resources["slurm_partition"] = (
            (cluster.gpu_partition or cluster.partition) if gpus else cluster.partition
        )
    if cluster.account:
        resources["slurm_account"] = cluster.account
    if cluster.gpu_model:
        resources["gpu_model"] = cluster.gpu_model if gpus else ""
    return resources


def evaluate_gpus(method: str, gpus: int) -> int:
    """GPUs of an evaluate job: one for a generative model (``method`` diffusion) whose
    experiment trains on GPUs (``gpus`` >= 1), since its evaluation draws
    ``evaluate.samples`` samples per held-out window, each a full DDIM chain; none
    otherwise (a deterministic model's evaluation is one forward pass per window)."""
    return 1 if method == "diffusion" and gpus >= 1 else 0
