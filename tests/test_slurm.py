"""The workflow on a real one-node SLURM cluster, submitted through the project's slurm profile.

One SLURM run of a trimmed tiny config (5 subjects, one experiment whose train job asks for
a GPU) is shared by the tests below; during it, the first running train job is cancelled
with ``scancel``, so the same run proves the retry. A local run of the same config gives
the reference outputs. Needs root (daemons, apt); elsewhere the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import slurm_harness
import torch
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow" / "profiles" / "slurm"
EXPERIMENT = "image_to_timeseries_xattn"
TARGET = f"results/tiny/eval/{EXPERIMENT}/metrics.json"
# Settings for the one-node test cluster, layered over the project's profile: no accounting
# (so squeue reads job states and no account is guessed), fast status polling, and at most
# the node's CPUs per job.
TEST_OVERLAY = {
    "slurm-status-command": "squeue",
    "slurm-no-account": True,
    "slurm-init-seconds-before-status-checks": 1,
    "seconds-between-status-checks": 1,
    "slurm-keep-successful-logs": True,
    "latency-wait": 5,
    "cores": min(os.cpu_count() or 1, 2),
    # the local reference runs train and evaluate on 1 thread: CPU float reductions (torch,
    # BLAS under ridge) depend on the thread count, so bitwise-equal outputs need the same
    "set-threads": {"train": 1, "evaluate": 1},
}
RUN_TIMEOUT_S = 900

slurm_cluster = slurm_harness.slurm_cluster


def _write_config(workdir: Path) -> None:
    """The tiny config trimmed to 5 subjects and one experiment that asks for a GPU."""
    config = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    config["dataset"]["params"]["n_subjects"] = 5
    experiment = next(e for e in config["experiments"] if e["name"] == EXPERIMENT)
    config["experiments"] = [dict(experiment, gpus=1)]
    # the one-node test cluster is small: 1 CPU and the tiny config's memory per GPU
    config["cluster"] = dict(config.get("cluster") or {}, cpus_per_gpu=1, mem_mb_per_gpu=2000)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _snakemake(workdir: Path, *args: str) -> list[str]:
    venv_bin = str(Path(sys.executable).parent)
    return [
        f"{venv_bin}/snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
        TARGET,
    ]


def _env(base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


@dataclass
class SlurmRun:
    workdir: Path
    returncode: int
    log: str
    run_id: str
    jobs: list[dict[str, str]]
    cancelled: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def _cancel_first_running_train(cluster, stop: threading.Event, cancelled: list[str]) -> None:
    """Watch the queue; scancel the first train job seen RUNNING (once)."""
    while not stop.is_set():
        for job in cluster.jobs():
            if job["comment"].startswith("rule_train") and job["state"] == "RUNNING":
                time.sleep(1)  # let it get under way
                cluster.run("scancel", job["id"])
                cancelled.append(job["id"])
                return
        time.sleep(0.3)


@pytest.fixture(scope="module")
def local_workdir(tmp_path_factory) -> Path:
    """The trimmed tiny workflow run locally: the reference outputs."""
    workdir = tmp_path_factory.mktemp("local")
    _write_config(workdir)
    result = subprocess.run(
        _snakemake(workdir, "--cores", "2", "--workflow-profile", "none"),
        env=_env(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory) -> SlurmRun:
    """The trimmed tiny workflow submitted through the slurm profile, one train job cancelled."""
    workdir = tmp_path_factory.mktemp("slurm")
    _write_config(workdir)
    # One merged profile: the project's slurm profile with the test cluster's settings on top
    # (stacking two --profile options is not honoured by every Snakemake 9 release).
    profile = workdir / "test-profile"
    profile.mkdir()
    merged = yaml.safe_load((PROFILE / "config.yaml").read_text()) | TEST_OVERLAY
    (profile / "config.yaml").write_text(yaml.safe_dump(merged))
    cmd = _snakemake(workdir, "--profile", str(profile))
    stop, cancelled = threading.Event(), []
    watcher = threading.Thread(
        target=_cancel_first_running_train, args=(slurm_cluster, stop, cancelled), daemon=True
    )
    start = time.monotonic()
    watcher.start()
    try:
        result = subprocess.run(
            cmd, env=_env(slurm_cluster.env), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
    finally:
        stop.set()
        watcher.join()
    wall = time.monotonic() - start
    log = result.stdout + result.stderr
    match = re.search(r"SLURM run ID: (\S+)", log)
    assert match, f"no SLURM run id in snakemake's output:\n{log[-3000:]}"
    run_id = match.group(1)
    return SlurmRun(
        workdir=workdir,
        returncode=result.returncode,
        log=log,
        run_id=run_id,
        jobs=slurm_cluster.jobs(name=run_id),
        cancelled=cancelled,
        wall_s=wall,
    )


def test_workflow_completes_on_slurm(slurm_run):
    assert slurm_run.returncode == 0, slurm_run.log[-5000:]
    assert (slurm_run.workdir / TARGET).is_file()


def test_every_job_is_submitted_through_sbatch(slurm_run):
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", slurm_run.log)
    assert sorted(submitted, key=int) == sorted((j["id"] for j in slurm_run.jobs), key=int)
    # Every rule of the DAG ran in a SLURM job: the per-subject stages as one group job.
    rules = {re.sub(r"_wildcards_.*", "", j["comment"]) for j in slurm_run.jobs}
    assert rules == {
        "rule_acquire_atlas",
        "rule_acquire_cohort",
        "rule_subject_data_acquire_subject_parcellate_preprocess",
        "rule_shard",
        "rule_train",
        "rule_evaluate",
    }
    # ... but shard_inputs, which writes one JSON file in the main process (localrules)
    assert set(re.findall(r"localrule (\w+)", slurm_run.log)) <= {"shard_inputs"}
    # The 15 per-subject jobs of 5 subjects went out as one submission, not 15.
    groups = [j for j in slurm_run.jobs if "subject_data" in j["comment"]]
    assert len(groups) == 1


def test_train_job_asks_slurm_for_a_gpu(slurm_run, slurm_cluster):
    train = [j for j in slurm_run.jobs if j["comment"].startswith("rule_train")]
    details = slurm_cluster.run("scontrol", "show", "job", train[-1]["id"])
    assert re.search(r"TresPerJob=\S*gpu:1", details), details


def test_a_cancelled_train_job_is_retried_and_the_workflow_completes(slurm_run):
    assert len(slurm_run.cancelled) == 1, "the watcher never saw a running train job"
    states = {j["id"]: j["state"] for j in slurm_run.jobs}
    assert states[slurm_run.cancelled[0]] == "CANCELLED"
    trains = [j for j in slurm_run.jobs if j["comment"].startswith("rule_train")]
    assert [j["state"] for j in trains] == ["CANCELLED", "COMPLETED"]
    assert slurm_run.returncode == 0


def _h5_arrays(path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return arrays


def test_outputs_through_slurm_equal_a_local_run(slurm_run, local_workdir):
    assert slurm_run.returncode == 0, slurm_run.log[-5000:]
    root_s, root_l = slurm_run.workdir / "results/tiny", local_workdir / "results/tiny"
    manifest_s = json.loads((root_s / "shards/manifest.json").read_text())
    manifest_l = json.loads((root_l / "shards/manifest.json").read_text())
    assert manifest_s == manifest_l
    shards = sorted(p.name for p in (root_l / "shards").glob("*.h5"))
    assert shards == sorted(p.name for p in (root_s / "shards").glob("*.h5"))
    for name in shards:
        local, slurm = _h5_arrays(root_l / "shards" / name), _h5_arrays(root_s / "shards" / name)
        assert local.keys() == slurm.keys()
        for key in local:
            np.testing.assert_array_equal(slurm[key], local[key], err_msg=f"{name}:{key}")
    weights_s = torch.load(root_s / f"models/{EXPERIMENT}/model.pt", map_location="cpu")
    weights_l = torch.load(root_l / f"models/{EXPERIMENT}/model.pt", map_location="cpu")
    state_s, state_l = _state_dict(weights_s), _state_dict(weights_l)
    assert state_s.keys() == state_l.keys()
    for key in state_l:
        torch.testing.assert_close(state_s[key], state_l[key], rtol=0, atol=0, msg=key)
    metrics_s = json.loads((root_s / f"eval/{EXPERIMENT}/metrics.json").read_text())
    metrics_l = json.loads((root_l / f"eval/{EXPERIMENT}/metrics.json").read_text())
    # Data, shards and weights are bitwise equal (above). The metrics may differ in the last
    # bit: numpy's SIMD sums (ridge baseline) depend on the arrays' memory alignment, which
    # changes from run to run even on one machine.
    assert _flatten(metrics_s).keys() == _flatten(metrics_l).keys()
    flat_s = _flatten(metrics_s)
    for key, value in _flatten(metrics_l).items():
        if isinstance(value, str):
            assert flat_s[key] == value, key
        else:
            assert flat_s[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


def _flatten(record, prefix: str = "") -> dict:
    """Nested metrics.json as {"a.b.c": leaf}, list items indexed."""
    if isinstance(record, dict):
        items = record.items()
    elif isinstance(record, list):
        items = enumerate(record)
    else:
        return {prefix: record}
    out = {}
    for key, value in items:
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _state_dict(checkpoint) -> dict[str, torch.Tensor]:
    """The model weights inside a checkpoint (a state dict, or a dict holding one)."""
    if isinstance(checkpoint, dict):
        for key in ("model_state", "state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                return checkpoint[key]
        if all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return checkpoint
    raise ValueError(f"unrecognised checkpoint layout: {type(checkpoint).__name__}")


def test_slurm_run_keeps_its_job_logs(slurm_run):
    logs = list((slurm_run.workdir / "logs/slurm").rglob("*.log"))
    assert len(logs) == len(slurm_run.jobs)
