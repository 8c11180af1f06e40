"""Keep Snakemake within ``--cores`` when one job at a time is ready.

Snakemake 9.10 to 9.16 (issue snakemake/snakemake#3913, fixed in 9.17.0 by #4026) takes a
shortcut when exactly one job is ready: it selects it without subtracting its threads (and
every other resource, ``gpu`` and ``mem_mb`` included) from what is free, and then adds them
back when the job ends. Every such job leaves one more core "free" than exists. In the default
workflow, the single jobs before training (the atlas, the cohort plan, the shard) let
``snakemake --cores 2`` start all five training jobs at once, and a workstation user's
``--resources gpu=1`` could put several training jobs on one GPU.

Upgrading is not possible here: Snakemake 9.17 and later require ``packaging<26`` and nilearn
0.14 requires ``packaging>=26``. :func:`patch_scheduler` therefore subtracts the resources of a
job selected by that shortcut, which is what Snakemake 9.17 does. It changes the scheduler
only where the shortcut is in the installed Snakemake's source, so it does nothing on a
version without the bug, and it is applied once per process however often the Snakefile is
parsed. ``tests/test_scheduler_fix.py`` runs Snakemake with and without it.
"""

from __future__ import annotations

import functools
import inspect

__all__ = ["has_single_job_shortcut", "patch_scheduler"]

#: the line of Snakemake's ``JobScheduler.job_selector`` that skips the resource update
_SHORTCUT = "if len(jobs) == 1:"
_PATCHED = "_modalmerge_counts_single_jobs"


def has_single_job_shortcut(scheduler_class) -> bool:
    """True when ``scheduler_class.job_selector``'s source has the shortcut that skips the
    resource update (False when its source cannot be read)."""
    try:
        source = inspect.getsource(scheduler_class.job_selector)
    except (OSError, TypeError):
        return False
    return _SHORTCUT in source


def patch_scheduler() -> bool:
    """Make the installed Snakemake subtract the resources of a job selected alone.

    Returns
    -------
    bool
        True when the scheduler is (now or already) patched, False when the installed
        Snakemake does not need it or is not importable.
    """
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    if getattr(JobScheduler.job_selector, _PATCHED, False):
        return True
    if not has_single_job_shortcut(JobScheduler):
        return False
    original = JobScheduler.job_selector

    @functools.wraps(original)
    def job_selector(self, jobs):
        selected = original(self, jobs)
        if len(jobs) == 1 and selected:  # the shortcut's path: nothing was subtracted
            with self._lock:
                self.update_available_resources(selected)
        return selected

    setattr(job_selector, _PATCHED, True)
    JobScheduler.job_selector = job_selector
    return True
