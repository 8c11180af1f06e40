"""A train job's cluster resources scale with its GPUs: CPUs per GPU, memory, one node."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modalmerge.stages.train_resources import evaluate_gpus, train_resources, train_threads

REPO = Path(__file__).resolve().parents[1]
CLUSTER = {  # the schema's defaults, with partitions
    "partition": "cpu",
    "gpu_partition": "gpu",
    "account": "",
    "gpu_model": "",
    "runtime_minutes": 60,
    "mem_mb": 4000,
    "cpus_per_gpu": 8,
    "mem_mb_per_gpu": 16000,
}


@pytest.mark.parametrize(
    ("gpus", "threads", "mem_mb", "cpus_per_gpu", "partition"),
    [(0, 2, 4000, 0, "cpu"), (1, 8, 16000, 8, "gpu"), (4, 32, 64000, 8, "gpu")],
)
def test_train_resources_scale_with_gpus(gpus, threads, mem_mb, cpus_per_gpu, partition):
    resources = train_resources(gpus, CLUSTER)
    assert resources == {
        "runtime": 60,
        "mem_mb": mem_mb,
        "nodes": 1,
        "gpu": gpus,
        "cpus_per_gpu": cpus_per_gpu,
        "slurm_partition": partition,
    }
    assert train_threads(gpus, CLUSTER, cpu_threads=2) == threads


def test_train_resources_have_the_same_keys_for_every_gpu_count():
    cluster = dict(CLUSTER, account="lab", gpu_model="a100")
    keys = {frozenset(train_resources(g, cluster)) for g in (0, 1, 4)}
    assert len(keys) == 1
    assert train_resources(0, cluster)["gpu_model"] == ""
    assert train_resources(4, cluster)["gpu_model"] == "a100"
    with pytest.raises(ValueError, match="gpus"):
        train_resources(-1, cluster)


def test_slurm_dry_run_asks_for_cpus_memory_and_one_node_per_gpu(tmp_path):
    """The rule wiring: a dry run through the SLURM profile shows each train job's resources."""
    config = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    base = config["experiments"][0]
    config["experiments"] = [dict(base, name=f"g{g}", gpus=g) for g in (0, 1, 4)]
    diffusion = dict(base, decoder="denoiser", method="diffusion", decoder_options={})
    config["experiments"] += [dict(diffusion, name=f"d{g}", gpus=g) for g in (0, 1)]
    config["cluster"] = dict(config.get("cluster") or {}, partition="cpu", gpu_partition="gpu")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake = Path(sys.executable).with_name("snakemake")
    result = subprocess.run(
        [str(snakemake), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(tmp_path / "config.yaml"),
         "--profile", str(REPO / "workflow" / "profiles" / "slurm"), "-n"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = re.findall(
        r"rule train:\n(?:.*\n)*?\s+wildcards: (?:rep=, )?(?:fold=, )?experiment=([gd]\d)\n(?:.*\n)*?\s+resources: (.*)",
        result.stdout,
    )
    resources = {name: dict(kv.split("=", 1) for kv in line.split(", ")) for name, line in jobs}
    assert set(resources) == {"g0", "g1", "g4", "d0", "d1"}, result.stdout[-3000:]
    for name, gpus in (("g0", 0), ("g1", 1), ("g4", 4)):
        r = resources[name]
        assert r["gpu"] == str(gpus) and r["nodes"] == "1"
        assert r["cpus_per_gpu"] == ("8" if gpus else "0")
        assert r["mem_mb"] == str(16000 * gpus or config["cluster"].get("mem_mb", 4000))
        assert r["slurm_partition"] == ("gpu" if gpus else "cpu")
    # evaluate: a diffusion model trained on GPUs draws its samples on one; the rest on CPUs
    evaluations = re.findall(
        r"rule evaluate:\n(?:.*\n)*?\s+wildcards: (?:rep=, )?(?:fold=, )?experiment=([gd]\d)\n(?:.*\n)*?\s+resources: (.*)",
        result.stdout,
    )
    evaluate = {n: dict(kv.split("=", 1) for kv in line.split(", ")) for n, line in evaluations}
    assert set(evaluate) == {"g0", "g1", "g4", "d0", "d1"}, result.stdout[-3000:]
    for name, r in evaluate.items():
        gpu = name == "d1"
        assert r["gpu"] == ("1" if gpu else "0"), name
        assert r["slurm_partition"] == ("gpu" if gpu else "cpu"), name
        assert r["mem_mb"] == "<TBD>"  # from the input's size, unknown before it exists


def test_only_a_generative_model_trained_on_gpus_evaluates_on_a_gpu():
    assert evaluate_gpus("diffusion", 4) == evaluate_gpus("diffusion", 1) == 1
    assert evaluate_gpus("diffusion", 0) == 0  # a CPU experiment stays on CPUs
    assert evaluate_gpus("cross_attention", 4) == 0  # one pass per window
