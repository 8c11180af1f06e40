"""Cohort scaling of the data stages: 2x subjects should cost <= 2.1x the time, at flat memory.

The data stages (acquire, preprocess, parcellate, shard) are package functions
that the workflow calls once per subject (once per cohort for the shards). This
benchmark runs them in-process for a synthetic cohort of N subjects and of 2N,
each configuration in a fresh Python process, and reports the ratios 2N / N of

- wall time per stage (summed over subjects) and of the whole data part;
- peak resident memory of the process (``ru_maxrss`` read at its end);
- per stage, the largest tracemalloc peak of one call (Python and numpy
  allocations above what was live before the call), in a second, traced process
  per configuration so that tracing does not slow the timed one.

With ``--snakemake`` it also runs the real workflow up to the ``shard`` rule in
a scratch copy (``snakemake --cores 2 results/<name>/shards``) and reports the
wall-time ratio and the largest ``max_rss`` of the per-job benchmark TSVs.

Usage::

    .venv/bin/python benchmarks/bench_cohort.py [--subjects 8] [--repeats 2] [--snakemake]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ("acquire", "preprocess", "parcellate", "shard")
TIME_TARGET = 2.1  # largest acceptable 2N / N wall-time ratio
DATASET = "cohort"
PREPROCESS = {"detrend": True, "high_pass": 0.01, "low_pass": 0.15, "standardize": True}
PARCELLATE = {"connectivity": "correlation"}
SHARD = {"seed": 0, "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "window": 30}
SHARD["stride"] = 15
MIB = 1024.0  # ru_maxrss is in KiB on Linux


def synthetic_params(args: argparse.Namespace, n_subjects: int) -> dict:
    """``dataset.params`` of the synthetic cohort (SyntheticParams fields) for ``n_subjects``."""
    return {
        "seed": args.seed,
        "n_subjects": n_subjects,
        "voxel_size_mm": args.voxel_size,
        "grid_shape": list(args.grid_shape),
        "n_regions": args.n_regions,
        "n_timepoints": args.n_timepoints,
    }


def run_data_stages(params: dict, root: Path, trace: bool) -> dict:
    """Run acquire, preprocess, parcellate (per subject) and shard (once) under ``root``.

    Parameters
    ----------
    params : dict
        SyntheticParams fields of the cohort.
    root : Path
        Dataset root (``results/<name>/`` layout), empty.
    trace : bool
        Measure each call's tracemalloc peak (tracing slows the calls: take times
        from an untraced run).

    Returns
    -------
    dict
        ``time_s`` {stage: s summed over calls}, ``per_subject_s`` {stage: [s, ...]},
        ``total_s`` (whole data part, s), ``median_subject_s`` (median over subjects of
        acquire + preprocess + parcellate, s), ``peak_mib`` {stage: largest per-call
        tracemalloc peak above the memory live before the call, MiB} and
        ``retained_mib`` (traced memory still live after the last stage minus
        before the first) when ``trace``.
    """
    from modalmerge.data.parcellation.parcellate import parcellate_subject
    from modalmerge.data.preprocess import preprocess_subject
    from modalmerge.data.shards.subjects import write_shards
    from modalmerge.data.synthetic.cohort import (
        SyntheticParams,
        subject_ids,
        write_cohort,
        write_subject,
    )

    p = SyntheticParams.from_dict(params)
    subjects = subject_ids(p)
    atlas, labels = root / "atlas" / "atlas.nii.gz", root / "atlas" / "labels.tsv"
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    peaks: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    def timed(stage: str, call: Callable[[], None]) -> None:
        if trace:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        start = time.perf_counter()
        call()
        times[stage].append(time.perf_counter() - start)
        if trace:
            peak = tracemalloc.get_traced_memory()[1] - before
            peaks[stage] = max(peaks[stage], peak / 2**20)

    def raw(sid: str, kind: str) -> Path:
        if kind == "t1":
            return root / "raw" / sid / "anat" / f"{sid}_T1w.nii.gz"
        return root / "raw" / sid / "func" / f"{sid}_task-{p.task}_bold.nii.gz"

    def preproc(sid: str, kind: str) -> Path:  # the workflow's BIDS-derivative names
        if kind == "t1":
            return (
                root / "preproc" / sid / "anat" / f"{sid}_space-synthetic_desc-preproc_T1w.nii.gz"
            )
        name = f"{sid}_task-{p.task}_space-synthetic_desc-clean_bold.nii.gz"
        return root / "preproc" / sid / "func" / name

    def parcellated(sid: str, kind: str = "npz") -> Path:
        ents = f"{sid}_space-synthetic_seg-synthetic"
        folder = root / "parcellated" / sid
        return {
            "npz": folder / f"{ents}_parcellated.npz",
            "out_features": folder / "anat" / f"{ents}_desc-structural_morph.tsv",
            "out_timeseries": folder / "func" / f"{ents}_stat-mean_timeseries.tsv",
            "out_relmat": folder / "func" / f"{ents}_stat-pearsoncorrelation_relmat.tsv",
        }[kind]

    if trace:
        tracemalloc.start()
        live_before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    timed("acquire", lambda: write_cohort(p, root))
    for sid in subjects:
        timed("acquire", lambda sid=sid: write_subject(p, sid, root))
        timed(
            "preprocess",
            lambda sid=sid: preprocess_subject(
                raw(sid, "t1"),
                raw(sid, "bold"),
                atlas,
                preproc(sid, "t1"),
                preproc(sid, "bold"),
                PREPROCESS,
            ),
        )
        timed(
            "parcellate",
            lambda sid=sid: parcellate_subject(
                preproc(sid, "t1"),
                preproc(sid, "bold"),
                atlas,
                labels,
                parcellated(sid),
                PARCELLATE,
                **{
                    k: parcellated(sid, k) for k in ("out_timeseries", "out_relmat", "out_features")
                },
            ),
        )
    timed(
        "shard",
        lambda: write_shards(
            subjects,
            [parcellated(s) for s in subjects],
            [preproc(s, "t1") for s in subjects],
            root / "raw" / "participants.tsv",
            [root / "raw" / s / f"{s}_description.txt" for s in subjects],
            root / "shards",
            SHARD,
        ),
    )
    per_subject = [  # acquire[0] is write_cohort
        sum(v)
        for v in zip(times["acquire"][1:], times["preprocess"], times["parcellate"], strict=True)
    ]
    result = {
        "total_s": time.perf_counter() - start,
        "median_subject_s": sorted(per_subject)[len(per_subject) // 2],
        "time_s": {stage: sum(v) for stage, v in times.items()},
        "per_subject_s": times,
    }
    if trace:
        result["peak_mib"] = peaks
        result["retained_mib"] = (tracemalloc.get_traced_memory()[0] - live_before) / 2**20
        tracemalloc.stop()
    return result


def worker(args: argparse.Namespace) -> None:
    """One configuration in this (fresh) process; prints one JSON line."""
    start = time.perf_counter()
    import nilearn.connectome  # noqa: F401  (the stages import these lazily, at their first call)
    import nilearn.image  # noqa: F401
    import nilearn.signal  # noqa: F401

    import modalmerge.data.parcellation.parcellate  # noqa: F401  (imports: the per-process fixed cost)
    import modalmerge.data.preprocess  # noqa: F401
    import modalmerge.data.shards.subjects  # noqa: F401
    import modalmerge.data.synthetic.cohort  # noqa: F401

    import_s = time.perf_counter() - start
    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB
    with tempfile.TemporaryDirectory(prefix="bench_cohort_") as tmp:
        result = run_data_stages(synthetic_params(args, args.worker), Path(tmp), args.trace)
    result.update(
        n_subjects=args.worker,
        import_s=import_s,
        rss_imports_mib=rss_imports,
        max_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB,
    )
    print(json.dumps(result))


def run_worker(args: argparse.Namespace, n: int, trace: bool) -> dict:
    """Run one configuration in a fresh interpreter; its JSON plus the process wall time."""
    cmd = [sys.executable, __file__, "--worker", str(n), "--seed", str(args.seed)]
    cmd += ["--voxel-size", str(args.voxel_size), "--n-regions", str(args.n_regions)]
    cmd += ["--n-timepoints", str(args.n_timepoints), "--grid-shape", *map(str, args.grid_shape)]
    cmd += ["--trace"] if trace else []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"worker for {n} subjects failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def snakemake_config(args: argparse.Namespace, n: int) -> dict:
    """A workflow config for the synthetic cohort of ``n`` subjects (the data stages only run)."""
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    return {
        "dataset": {"name": DATASET, "kind": "synthetic", "params": synthetic_params(args, n)},
        "preprocess": PREPROCESS,
        "parcellate": PARCELLATE,
        "shard": SHARD,
        "experiments": tiny["experiments"][:1],  # required by the schema; not run
    }


def run_snakemake(args: argparse.Namespace, n: int) -> dict:
    """Run the workflow up to ``shard`` for ``n`` subjects in a scratch copy.

    Returns
    -------
    dict
        ``wall_s`` (the whole snakemake command), ``jobs`` (benchmark TSVs found),
        ``max_rss_mib`` (largest ``max_rss`` over jobs, MB as Snakemake reports
        it) and ``job_s`` {stage: s summed over that stage's jobs}.
    """
    with tempfile.TemporaryDirectory(prefix="bench_cohort_smk_") as tmp:
        work = Path(tmp)
        shutil.copy2(REPO / "Snakefile", work / "Snakefile")
        for name in ("workflow", "configs"):
            shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        (work / "config.yaml").write_text(yaml.safe_dump(snakemake_config(args, n)))
        env = dict(os.environ, PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = [str(BIN / "snakemake"), "--cores", str(args.cores), f"results/{DATASET}/shards"]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"snakemake for {n} subjects failed:\n{done.stderr[-3000:]}")
        job_s: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        rss, jobs = [], 0
        for tsv in sorted((work / "benchmarks" / "results" / DATASET).rglob("*.tsv")):
            with tsv.open() as fh:
                row = next(csv.DictReader(fh, delimiter="\t"))
            stage = tsv.parent.name
            job_s[stage] = job_s.get(stage, 0.0) + float(row["s"])
            if row["max_rss"] not in ("", "NA", "-"):
                rss.append(float(row["max_rss"]))
            jobs += 1
    return {
        "wall_s": wall,
        "jobs": jobs,
        "max_rss_mib": max(rss, default=float("nan")),
        "job_s": job_s,
    }


def ratio(a: float, b: float) -> float:
    return b / a if a else float("nan")


def print_table(title: str, rows: list[tuple[str, float, float, str]], n: int) -> None:
    """Rows of (measure, value at N, value at 2N, target); the ratio column is 2N / N."""
    print(f"\n{title}")
    print(f"| measure | N={n} | 2N={2 * n} | 2N / N | target |")
    print("|---|---|---|---|---|")
    for name, small, large, target in rows:
        print(f"| {name} | {small:.3g} | {large:.3g} | {ratio(small, large):.2f} | {target} |")


def alternate(runner: Callable[[int], dict], n: int, repeats: int) -> dict[int, list[dict]]:
    """``repeats`` runs at N and 2N, alternating so that machine load hits both sizes alike."""
    runs: dict[int, list[dict]] = {n: [], 2 * n: []}
    for _ in range(repeats):
        for size in runs:
            runs[size].append(runner(size))
    return runs


def in_process_report(args: argparse.Namespace) -> None:
    n = args.subjects
    runs = alternate(lambda size: run_worker(args, size, trace=False), n, args.repeats)
    # times: the fastest repeat per size (least disturbed by other jobs); memory: the largest
    best = {size: min(r, key=lambda x: x["total_s"]) for size, r in runs.items()}
    rows = [
        (f"{stage} s (sum over calls)", best[n]["time_s"][stage], best[2 * n]["time_s"][stage], "")
        for stage in STAGES
    ]
    rows.append(("**data stages s (total)**", best[n]["total_s"], best[2 * n]["total_s"], "<= 2.1"))
    rows.append(("median s per subject (acquire+preprocess+parcellate)",
                 best[n]["median_subject_s"], best[2 * n]["median_subject_s"], "~1.0"))  # fmt: skip
    rows.append(("process s (with imports)", best[n]["process_s"], best[2 * n]["process_s"], ""))
    rss = {size: max(x["max_rss_mib"] for x in r) for size, r in runs.items()}
    base = {size: max(x["rss_imports_mib"] for x in r) for size, r in runs.items()}
    rows.append(("**peak RSS MiB (ru_maxrss)**", rss[n], rss[2 * n], "~1.0"))
    rows.append(("peak RSS above imports MiB", rss[n] - base[n], rss[2 * n] - base[2 * n], "~1.0"))
    print_table(f"In-process data stages (times: best of {args.repeats}; memory: max)", rows, n)
    for size in runs:
        per = best[size]["per_subject_s"]["preprocess"]
        print(
            f"  {size} subjects: imports {best[size]['import_s']:.2f} s, RSS after imports "
            f"{base[size]:.0f} MiB; preprocess per subject: first {per[0]:.3f} s, "
            f"median {sorted(per)[size // 2]:.3f} s, last {per[-1]:.3f} s"
        )
    total = ratio(best[n]["total_s"], best[2 * n]["total_s"])
    print(f"  time target (<= {TIME_TARGET}): {'met' if total <= TIME_TARGET else 'MISSED'}")
    if args.no_trace:
        return
    traced = {size: run_worker(args, size, trace=True) for size in (n, 2 * n)}
    rows = [
        (f"{stage} MiB", traced[n]["peak_mib"][stage], traced[2 * n]["peak_mib"][stage], "~1.0")
        for stage in STAGES
    ]
    rows.append(("retained after all stages MiB", traced[n]["retained_mib"],
                 traced[2 * n]["retained_mib"], "small"))  # fmt: skip
    print_table("tracemalloc: largest peak of one call above memory live before it", rows, n)
    # what write_shards reads per subject (float32): a shard writer that held every
    # subject would show N times this more at 2N than at N
    from modalmerge.data.parcellation.parcellate import FEATURE_NAMES

    r = args.n_regions
    per_subject = 4 * (
        args.grid_shape[0] * args.grid_shape[1] * args.grid_shape[2]
        + args.n_timepoints * r
        + r * r
        + r * len(FEATURE_NAMES)
    )
    print(
        f"  shard inputs per subject: {per_subject / 1024:.0f} KiB; a writer holding the whole "
        f"cohort would peak about {n * per_subject / 2**20:.2f} MiB higher at 2N than at N"
    )


def snakemake_report(args: argparse.Namespace) -> None:
    n = args.subjects
    runs = alternate(lambda size: run_snakemake(args, size), n, args.repeats)
    best = {size: min(r, key=lambda x: x["wall_s"]) for size, r in runs.items()}
    rss = {size: max(x["max_rss_mib"] for x in r) for size, r in runs.items()}
    rows = [
        (f"{stage} s (sum over jobs)", best[n]["job_s"][stage], best[2 * n]["job_s"][stage], "")
        for stage in STAGES
    ]
    rows.append(("**snakemake wall s**", best[n]["wall_s"], best[2 * n]["wall_s"], "<= 2.1"))
    rows.append(("jobs", best[n]["jobs"], best[2 * n]["jobs"], ""))
    rows.append(("**max max_rss MB over jobs**", rss[n], rss[2 * n], "~1.0"))
    print_table(
        f"snakemake --cores {args.cores} results/{DATASET}/shards "
        f"(wall: best of {args.repeats}; memory: max)",
        rows,
        n,
    )
    for size in best:
        per_job = best[size]["job_s"]["preprocess"] / size
        print(f"  {size} subjects: preprocess {per_job:.2f} s per job")
    total = ratio(best[n]["wall_s"], best[2 * n]["wall_s"])
    print(f"  time target (<= {TIME_TARGET}): {'met' if total <= TIME_TARGET else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8, help="N (the cohort is run at N and 2N)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per size (best kept)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--voxel-size", type=float, default=6.0, help="mm, isotropic")
    parser.add_argument("--grid-shape", type=int, nargs=3, default=[24, 30, 24], metavar="N")
    parser.add_argument("--n-regions", type=int, default=12)
    parser.add_argument("--n-timepoints", type=int, default=100)
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--snakemake", action="store_true", help="also run the workflow route")
    parser.add_argument("--snakemake-only", action="store_true", help="only the workflow route")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.subjects < 5 or args.repeats < 1:
        parser.error("--subjects must be >= 5 (train/val/test splits) and --repeats >= 1")
    print(
        f"cohort: N={args.subjects}, grid {tuple(args.grid_shape)} at {args.voxel_size} mm, "
        f"{args.n_regions} regions, {args.n_timepoints} volumes; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    if not args.snakemake_only:
        in_process_report(args)
    if args.snakemake or args.snakemake_only:
        snakemake_report(args)


if __name__ == "__main__":
    main()
