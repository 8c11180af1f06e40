"""Leave-one-site-out on a multi-site cohort, with and without ComBat (issue #14).

For every site of the config's synthetic ``sites`` and every ``harmonize`` in
(none, combat), runs the workflow up to ``eval/summary.csv`` with
``shard.split_by: site``, ``shard.test_site: <site>`` and ``shard.harmonize``
set by a small override config (Snakemake merges ``--configfile`` files in
order), then copies each experiment's ``metrics.json`` to
``results/<name>/sites/<harmonize>/<site>/<experiment>/``. The data stages run
once (their settings do not change between folds); shard, train and evaluate
rerun per fold. Finally ``modalmerge site-summary`` writes
``results/<name>/sites/site_summary.csv`` and ``site_scores.png``.

Usage::

    PATH=$PWD/.venv/bin:$PATH nice -n 10 .venv/bin/python benchmarks/bench_multisite.py \\
        [--configfile configs/multisite.yaml] [--cores 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml


def run_fold(config: Path, name: str, site: str, harmonize: str, cores: int, out: Path) -> float:
    """One fold: the workflow with the fold's shard settings; its metrics copied to ``out``."""
    override = {"shard": {"split_by": "site", "test_site": site, "harmonize": harmonize}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(override, handle)
    start = time.perf_counter()
    subprocess.run(
        ["snakemake", f"results/{name}/eval/summary.csv", "--cores", str(cores),
         "--profile", "workflow/profiles/default", "--configfile", str(config), handle.name],
        check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    Path(handle.name).unlink()
    for metrics in Path(f"results/{name}/eval").glob("*/metrics.json"):
        target = out / harmonize / site / metrics.parent.name / "metrics.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(metrics, target)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=Path("configs/multisite.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    config = yaml.safe_load(args.configfile.read_text())
    name = config["dataset"]["name"]
    sites = [site["name"] for site in config["dataset"]["params"]["sites"]]
    out = Path(f"results/{name}/sites")
    if out.exists():
        shutil.rmtree(out)
    total = time.perf_counter()
    for site in sites:
        for harmonize in ("none", "combat"):
            seconds = run_fold(args.configfile, name, site, harmonize, args.cores, out)
            print(f"fold test_site={site} harmonize={harmonize}: {seconds:.0f} s", flush=True)
    subprocess.run(
        ["modalmerge", "site-summary", "--folds", str(out), "--out", str(out / "site_summary.csv"),
         "--figure", str(out / "site_scores.png")],
        check=True,
    )  # fmt: skip
    print(f"all folds: {time.perf_counter() - total:.0f} s; {out / 'site_summary.csv'}")


if __name__ == "__main__":
    main()
