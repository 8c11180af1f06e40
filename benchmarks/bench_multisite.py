"""Leave-one-site-out on a multi-site cohort, with and without ComBat, as one DAG (issue #14).

``configs/multisite.yaml`` sets ``shard.test_site: all`` and ``shard.harmonize:
both``: the workflow expands every (harmonisation, held-out site) pair into a
fold (``results/<name>/loso/<harmonize>/<site>/``; :mod:`modalmerge.folds`),
runs the data stages once, shard/train/evaluate per fold, and gathers the
folds into ``results/<name>/loso/site_summary.csv`` and ``site_scores.png``.
This script runs that one Snakemake invocation, times it and prints the
summary's model and baseline rows of the primary metric.

Usage::

    PATH=$PWD/.venv/bin:$PATH nice -n 10 .venv/bin/python benchmarks/bench_multisite.py \\
        [--configfile configs/multisite.yaml] [--cores 2]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import pandas as pd
import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=Path("configs/multisite.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    name = yaml.safe_load(args.configfile.read_text())["dataset"]["name"]
    target = f"results/{name}/loso/site_summary.csv"
    start = time.perf_counter()
    subprocess.run(
        ["snakemake", "--cores", str(args.cores), "--profile", "workflow/profiles/default",
         "--configfile", str(args.configfile)],
        check=True,
    )  # fmt: skip
    print(f"all folds: {time.perf_counter() - start:.0f} s; {target}")
    table = pd.read_csv(target)
    rows = table[table["metric"] == "pearson_r"]
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(rows.drop(columns=["condition", "target", "method", "metric"]).to_string())


if __name__ == "__main__":
    main()
