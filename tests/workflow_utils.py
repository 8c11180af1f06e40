"""Helpers to run the Snakemake workflow in a scratch copy of the project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "configs", "modalmerge")


def copy_project(dest: Path) -> Path:
    """Copy what the workflow needs (package included) into ``dest``.

    The package is copied too, and put first on PYTHONPATH by :func:`snakemake`,
    so a test may edit the copy's code without touching the checkout.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` with the copy's package first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env.setdefault("MPLBACKEND", "Agg")
    return subprocess.run(
        [str(BIN / "snakemake"), "--cores", "2", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts per rule from a dry run's 'Job stats' table ({} when nothing is to be done)."""
    out = result.stdout + result.stderr
    if "Nothing to be done" in out:
        return {}
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+\d+", out, re.S)
    if not match:
        raise AssertionError(f"no job table in snakemake output:\n{out[-3000:]}")
    counts = {}
    for line in match.group(1).splitlines():
        rule, count = line.split()
        if rule != "all":  # the target rule is listed by some Snakemake releases
            counts[rule] = int(count)
    return counts
