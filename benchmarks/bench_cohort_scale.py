"""The data stages of the workflow at 100 / 300 / 1,000 subjects (issue 14 "Must show").

For one cohort size N of the tiny grid (configs/tiny.yaml, ``n_subjects: N``) this runs
real Snakemake in a scratch copy of the project (``--cores 2``, default profile) and
reports, as one JSON object:

- ``plan_s``: wall time of a dry run of the data stages (``results/<name>/shards``),
  once per repeat (the first on an empty results/);
- ``jobs``: jobs of the data stages a real run submits (local rules left out);
- ``run_s``: wall time of the real run (acquire -> shard);
- ``subject_s``: summed job time of acquire + preprocess + parcellate (the rules'
  benchmark TSVs, column ``s``) per subject, and ``floor_s``: the work itself per
  subject, the same three stages called in one warm process (benchmarks/bench_cohort.py,
  median over ``--floor-subjects`` subjects); ``ratio`` = subject_s / floor_s;
- ``noop_s``: wall time of a second ``snakemake`` of the same target, once per repeat;
- ``peak_mib``: largest resident memory of any job (benchmark TSVs, ``max_rss``) and of the
  Snakemake process itself (``/usr/bin/time -f %M`` of the dry and no-op runs).

Run from the checkout to measure (its .venv's snakemake and modalmerge); the same script
runs in a worktree of older code (``subjects_per_job`` is then left unset).

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_cohort_scale.py --subjects 100 \\
        [--subjects-per-job 50] [--repeats 3] [--steps plan,run,noop] [--out result.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from workflow_utils import copy_project  # noqa: E402  (what the workflow needs, as the tests copy it)

BIN = Path(sys.executable).parent
DATA_RULES = ("acquire", "preprocess", "parcellate", "preprocess_parcellate")  # their folders


def timed_snakemake(work: Path, *args: str) -> tuple[float, int, str, float]:
    """(wall s, peak RSS of the snakemake process tree's largest process in MiB, output,
    CPU s of the snakemake process and its jobs: steadier than wall time on shared cores)."""
    env = dict(os.environ, PYTHONPATH=str(work), MPLBACKEND="Agg")
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    cmd = [
        "/usr/bin/time",
        "-f",
        "MAXRSS %M CPU %U %S",
        str(BIN / "snakemake"),
        *args,
        "--cores",
        "2",
    ]
    cmd += ["--profile", "workflow/profiles/default", "--configfile", "bench.yaml"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    out = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{out[-3000:]}")
    last = [line.split() for line in out.splitlines() if line.startswith("MAXRSS ")][-1]
    return wall, int(last[1]) // 1024, out, float(last[3]) + float(last[4])


def job_count(out: str) -> int:
    """Jobs of a dry run's job table, without the local rules (all, shard_inputs and the
    batches' ``<stage>_commands_NNNN``, which run in the Snakemake process)."""
    counts, table = {}, False
    for line in out.splitlines():
        if line.startswith("job ") and "count" in line:
            table = True
            continue
        if table:
            parts = line.split()
            if not parts or parts[0] == "total":
                break
            if parts[0][0] != "-":
                counts[parts[0]] = int(parts[1])
    local = ("all", "shard_inputs")
    return sum(n for rule, n in counts.items() if rule not in local and "_commands_" not in rule)


def job_times(work: Path, name: str) -> tuple[float, float]:
    """(summed ``s`` of the per-subject stages' benchmark TSVs, largest ``max_rss`` MiB of all)."""
    total, peak = 0.0, 0.0
    for tsv in (work / "benchmarks" / "results" / name).rglob("*.tsv"):
        with tsv.open() as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        if tsv.parent.name in DATA_RULES:
            total += float(row["s"])
        if row["max_rss"] not in ("NA", "-", ""):
            peak = max(peak, float(row["max_rss"]))
    return total, peak


def work_floor(n: int) -> float:
    """Median per-subject time of acquire + preprocess + parcellate in one warm process."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_cohort import run_data_stages

    params = {"seed": 1, "n_subjects": n, "voxel_size_mm": 8.0, "grid_shape": [18, 22, 18],
              "n_regions": 8, "n_timepoints": 60}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        return run_data_stages(params, Path(tmp), trace=False)["median_subject_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, required=True)
    parser.add_argument("--subjects-per-job", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", default="plan,run,noop")
    parser.add_argument("--floor-subjects", type=int, default=10)
    parser.add_argument("--keep", default=None, help="scratch folder to use and keep")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    steps = args.steps.split(",")
    name = f"scale{args.subjects}"
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_scale_"))
    if not (work / "Snakefile").exists():
        copy_project(work)
    config = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    config["dataset"]["name"] = name
    config["dataset"]["params"]["n_subjects"] = args.subjects
    if args.subjects_per_job > 1:
        config["cluster"]["subjects_per_job"] = args.subjects_per_job
    (work / "bench.yaml").write_text(yaml.safe_dump(config))
    target = f"results/{name}/shards"
    result: dict = {"subjects": args.subjects, "subjects_per_job": args.subjects_per_job}

    def save() -> None:  # after each step: a long run interrupted keeps what it measured
        if args.out:
            Path(args.out).write_text(json.dumps(result) + "\n")

    if "plan" in steps:
        runs = [timed_snakemake(work, "--dry-run", target) for _ in range(args.repeats)]
        result["plan_s"] = [round(r[0], 2) for r in runs]
        result["plan_cpu_s"] = [round(r[3], 2) for r in runs]
        result["plan_peak_mib"] = max(r[1] for r in runs)
        result["jobs"] = job_count(runs[0][2])
        save()
    if "run" in steps:
        wall, rss, _, cpu = timed_snakemake(work, target)
        summed, job_peak = job_times(work, name)
        floor = work_floor(args.floor_subjects)
        result |= {
            "run_s": round(wall, 1),
            "run_cpu_s": round(cpu, 1),
            "run_snakemake_peak_mib": rss,
        }
        result |= {"job_peak_mib": round(job_peak), "subject_s": round(summed / args.subjects, 3)}
        result |= {"floor_s": round(floor, 3), "ratio": round(summed / args.subjects / floor, 2)}
        save()
    if "noop" in steps:
        runs = [timed_snakemake(work, target) for _ in range(args.repeats)]
        assert all("Nothing to be done" in r[2] for r in runs), runs[0][2][-2000:]
        result["noop_s"] = [round(r[0], 2) for r in runs]
        result["noop_cpu_s"] = [round(r[3], 2) for r in runs]
        result["noop_peak_mib"] = max(r[1] for r in runs)
    save()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
