"""``snakemake --cores N`` runs at most N single-threaded jobs at once (modalmerge.scheduler_fix).

The default workflow has single ready jobs (the atlas, the cohort plan, the shard) before the
training jobs; in Snakemake 9.10-9.16 each of them left one more core free than exists, and
``make run`` (``--cores 2``) started all five training jobs at once. These tests run the
installed Snakemake on a small workflow of that shape, with the workflow's patch and without.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modalmerge.scheduler_fix import has_single_job_shortcut, patch_scheduler

SNAKEFILE = """
if config.get("fix"):
    from modalmerge.scheduler_fix import patch_scheduler

    patch_scheduler()

rule all:
    input: expand("out/{i}.txt", i=range(4))

rule first:  # alone, like the shard job before the training jobs
    output: "first.txt"
    shell: "touch {output}"

rule second:
    input: "first.txt"
    output: "second.txt"
    shell: "touch {output}"

rule consumer:
    input: "second.txt"
    output: "out/{i}.txt"
    threads: 1
    shell: "date +%s.%N > {output}.tmp; sleep 0.6; date +%s.%N >> {output}.tmp; mv {output}.tmp {output}"
"""


def most_at_once(tmp_path: Path, fix: bool) -> int:
    """Run the small workflow with ``--cores 1``; the most consumer jobs that overlapped."""
    root = tmp_path / ("fixed" if fix else "plain")
    root.mkdir()
    (root / "Snakefile").write_text(SNAKEFILE)
    command = [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet", "all"]
    command += ["--config", f"fix={int(fix)}"]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    spans = [tuple(map(float, p.read_text().split())) for p in sorted(root.glob("out/*.txt"))]
    assert len(spans) == 4
    return max(sum(start <= t < end for start, end in spans) for t, _ in spans)


def test_cores_bound_the_jobs_running_at_once_in_the_workflow_as_patched(tmp_path):
    assert most_at_once(tmp_path, fix=True) == 1


def test_the_patch_is_applied_exactly_where_the_installed_snakemake_has_the_shortcut(tmp_path):
    from snakemake.scheduling.job_scheduler import JobScheduler

    buggy = has_single_job_shortcut(JobScheduler)
    assert patch_scheduler() is buggy
    assert patch_scheduler() is buggy  # idempotent: the Snakefile is parsed more than once
    if not buggy:
        pytest.skip("the installed Snakemake counts single jobs itself (>= 9.17)")
    # the patched class no longer shows the shortcut's effect, the unpatched one does:
    # without the patch the consumers ran together on one core
    assert most_at_once(tmp_path, fix=False) > 1


def test_the_workflow_applies_the_patch_before_any_rule():
    text = (Path(__file__).parents[1] / "Snakefile").read_text()
    call = text.index("patch_scheduler()")
    assert call < text.index("\ninclude:") and call < text.index("\nrule ")
