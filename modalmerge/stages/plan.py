"""The cohort plan: planned once by the main Snakemake process, read by cluster jobs.

Snakemake re-parses the Snakefile in every cluster job. Without a plan each job would
list the source's subjects again (with ``on_error: exclude``: re-check every subject's
headers), scan the source for every subject's input files and could reach a different
verdict than the main process on another node. The main process therefore writes
``results/<name>/subjects.json`` (:func:`write_plan`) and the jobs read it
(:func:`read_plan`); a plan missing or made for another config is an error naming the
file, never a silent re-plan.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from modalmerge.io import write_text_if_changed
from modalmerge.stages import acquire

#: bump when the plan's layout changes: an old plan is then stale
PLAN_VERSION = 1
#: the config sections the plan depends on (subjects, per-subject params, run checks)
PLAN_SECTIONS = ("dataset", "preprocess", "shard")


def plan_key(config: dict) -> str:
    """Hash of the config sections the plan is made from: a job compares it with the plan's."""
    sections = {name: config.get(name) for name in PLAN_SECTIONS}
    text = json.dumps({"version": PLAN_VERSION, **sections}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _subjects_and_exclusions(dataset: dict) -> tuple[list[str], list[list[str]]]:
    """The source's subjects and, with ``on_error: exclude``, the excluded (subject, reason)."""
    from modalmerge.data.sources._common import plan

    source = acquire.source_module(dataset["kind"])
    params = dataset.get("params") or {}
    if source.own_subject_ids is not None:  # e.g. synthetic: ids from the settings
        return list(source.own_subject_ids(params)), []
    subjects, excluded = plan(source, params)
    return list(subjects), [list(pair) for pair in excluded]


def make_plan(config: dict, root: str | Path) -> dict:
    """Plan the cohort as the workflow's DAG needs it: subject ids, exclusions, and each
    subject's acquire params and source input files; the run settings are checked
    against the data (:func:`modalmerge.stages.acquire.check_settings`)."""
    dataset = config["dataset"]
    subjects, excluded = _subjects_and_exclusions(dataset)
    acquire.check_settings(config, subjects, root)
    per_subject = acquire.source_sample_unit(dataset) == "subject"
    return {
        "version": PLAN_VERSION,
        "key": plan_key(config),
        "subjects": subjects,
        "excluded": excluded,
        "params": {s: acquire.source_subject_params(dataset, s) for s in subjects}
        if per_subject
        else {},
        "inputs": {s: acquire.source_input_files(dataset, s) for s in subjects}
        if per_subject
        else {},
    }


def write_plan(path: str | Path, plan: dict) -> None:
    """``plan`` to ``path`` atomically; an identical file is left alone (its mtime too)."""
    write_text_if_changed(path, json.dumps(plan, indent=1, sort_keys=True) + "\n")


def read_plan(path: str | Path, config: dict) -> dict:
    """The plan at ``path``, checked against ``config``: a clear error when it is missing,
    unreadable or was made for other settings (the main process re-plans on its next run)."""
    path = Path(path)
    hint = "run snakemake from the main process again: it writes the plan before any job"
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no cohort plan; {hint}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable cohort plan ({exc}); {hint}") from None
    if not isinstance(plan, dict) or plan.get("key") != plan_key(config):
        raise ValueError(
            f"{path}: stale cohort plan (made for other dataset/preprocess/shard settings "
            f"than this job's); {hint}"
        )
    return plan
