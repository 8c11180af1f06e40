"""A tiny-grid cohort through a local one-node SLURM cluster with the project's slurm profile
(and tests/test_slurm.py's overlay): counts the sbatch submissions of the data stages.

Usage (root, slurm packages; see tests/slurm_harness.py)::

    nice -n 10 .venv/bin/python benchmarks/bench_slurm_cohort.py SUBJECTS_PER_JOB WORKDIR [N]
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import slurm_harness  # noqa: E402 (tests/ on the path first)
from workflow_utils import copy_project  # noqa: E402

spj, work = int(sys.argv[1]), Path(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
copy_project(work)
config = yaml.safe_load((REPO / "configs/tiny.yaml").read_text())
config["dataset"]["params"]["n_subjects"] = n
config["cluster"]["subjects_per_job"] = spj
config["cluster"]["mem_mb"] = 1000
(work / "config.yaml").write_text(yaml.safe_dump(config))
overlay = {
    "slurm-status-command": "squeue",
    "slurm-no-account": True,
    "slurm-init-seconds-before-status-checks": 1,
    "seconds-between-status-checks": 5,
    "latency-wait": 5,
    "cores": 2,
}
merged = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text()) | overlay
(work / "prof").mkdir(exist_ok=True)
(work / "prof/config.yaml").write_text(yaml.safe_dump(merged))
with slurm_harness.local_cluster() as cluster:
    env = dict(cluster.env)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["PYTHONPATH"] = str(work)
    t = time.monotonic()
    r = subprocess.run(
        [
            str(Path(sys.executable).parent / "snakemake"),
            "results/tiny/shards",
            "--profile",
            "prof",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    wall = time.monotonic() - t
    log = r.stdout + r.stderr
    (work / "snakemake.out").write_text(log)
    sub = re.findall(r"submitted with SLURM jobid (\d+)", log)
    rules = re.findall(r"rule (\w+):", log)
    print(
        {
            "rc": r.returncode,
            "wall_s": round(wall),
            "sbatch_submissions": len(sub),
            "localrules": re.findall(r"localrule (\w+)", log),
            "plan_exists": (work / "results/tiny/subjects.json").exists(),
        }
    )
    print(log[-1500:] if r.returncode else "")
