"""Leave-one-site-out evidence: one row set per held-out site, with and without harmonisation.

A fold is one held-out site with one harmonisation (``shard.split_by: site``,
``shard.test_site``, ``shard.harmonize: <none|combat>``). With
``shard.test_site: all`` (and ``harmonize: both``) the workflow runs every fold
in one DAG (:mod:`modalmerge.folds`) and its ``site_summary`` rule gathers the
folds' ``results/<name>/loso/<harmonize>/<site>/eval/<experiment>/metrics.json``;
a folder of ``<harmonize>/<site>/<experiment>/metrics.json`` (folds run one at a
time) is read too.

``site_summary.csv`` (long format)::

    harmonize,test_site,experiment,condition,target,method,model,metric,value,ci_low,ci_high,n,p_wilcoxon,verdict

- per fold, the rows of :func:`modalmerge.evaluation.summary.experiment_rows`
  (every predictor's score with its bootstrap interval over the held-out
  site's subjects, then the paired differences ``model-<baseline>`` with
  their intervals and verdicts), prefixed by ``harmonize`` and ``test_site``;
- per site, experiment and predictor (not the truth's ``oracle``,
  ``noise_ceiling``, ``regional_truth``) with per-unit scores in both folds, a row
  with ``harmonize`` = ``combat-none``: the paired per-subject difference of
  the predictor's primary score with and without ComBat (the same held-out
  subjects), its interval, ``n``, the Wilcoxon p and the verdict (``beats``:
  harmonisation helps that predictor on that site).
"""

from __future__ import annotations

import os
from pathlib import Path

from modalmerge.evaluation.intervals import paired_difference, verdict
from modalmerge.evaluation.summary import (
    PREDICTORS,
    SUMMARY_COLUMNS,
    _cell,
    experiment_rows,
    primary_metric,
    read_metrics,
    write_csv,
)
from modalmerge.io import InputError

__all__ = ["SITE_SUMMARY_COLUMNS", "read_folds", "site_summary"]

SITE_SUMMARY_COLUMNS = ["harmonize", "test_site", *SUMMARY_COLUMNS]
HARMONIZE = ("none", "combat")
#: the synthetic truth's predictors: the same noise-free runs in both folds, and r does not
#: see the per-subject z-scoring, so their combat − none difference is float rounding (a
#: "beats" on +0.000 [+0.000, +0.000] would mean nothing): no combat − none row for them
TRUTH_PREDICTORS = ("oracle", "noise_ceiling", "regional_truth")


def read_folds(
    folds: str | os.PathLike | list[str | os.PathLike],
) -> dict[tuple[str, str, str], dict]:
    """``{(harmonize, site, experiment): metrics record}`` from a folds directory
    (``<harmonize>/<site>/<experiment>/metrics.json``) or from the workflow's fold files
    (``.../loso/<harmonize>/<site>/eval/<experiment>/metrics.json``, listed)."""
    if isinstance(folds, str | os.PathLike):
        where = Path(folds)
        paths = sorted(where.glob("*/*/*/metrics.json"))
    else:
        where, paths = Path("."), [Path(p) for p in folds]
    records = {}
    for path in paths:
        experiment_dir = path.parent
        site_dir = experiment_dir.parent
        if site_dir.name == "eval":  # the workflow's layout: <site>/eval/<experiment>
            site_dir = site_dir.parent
        harmonize = site_dir.parent.name
        if harmonize not in HARMONIZE:
            raise InputError(path, f"lies under {harmonize!r}, not one of {HARMONIZE}")
        key = (harmonize, site_dir.name, experiment_dir.name)
        if key in records:
            raise InputError(path, f"a second metrics.json of fold {key}")
        records[key] = read_metrics(path)
    if not records:
        raise InputError(where, "holds no <harmonize>/<site>/<experiment>/metrics.json")
    return records


def _harmonization_rows(none: dict, combat: dict, site: str) -> list[list]:
    """combat − none per predictor on the primary metric (same held-out subjects)."""
    metric = primary_metric(none)
    identity = [none["experiment"], none["condition"], none["target"], none["method"]]
    a, b = combat.get("per_unit", {}), none.get("per_unit", {})
    if a.get("units") != b.get("units"):
        raise ValueError(f"site {site}: the folds with and without ComBat score other subjects")
    rows = []
    for predictor in PREDICTORS:
        if predictor in TRUTH_PREDICTORS:
            continue
        if metric not in a.get(predictor, {}) or metric not in b.get(predictor, {}):
            continue
        diff = paired_difference(a[predictor][metric], b[predictor][metric])
        rows.append(
            ["combat-none", site, *identity, predictor, metric, _cell(diff.value)]
            + [_cell(diff.ci_low), _cell(diff.ci_high), str(diff.n), _cell(diff.p_wilcoxon)]
            + [verdict(diff)]
        )
    return rows


def site_summary(folds, out_csv: str | os.PathLike) -> Path:
    """Write ``site_summary.csv`` (module doc) from a folds directory or a list of fold
    metrics files (:func:`read_folds`); return its path."""
    records = read_folds(folds)
    rows = []
    for (harmonize, site, _), record in records.items():
        rows += [[harmonize, site, *row] for row in experiment_rows(record)]
    for (harmonize, site, experiment), record in records.items():
        if harmonize == "none" and ("combat", site, experiment) in records:
            rows += _harmonization_rows(record, records[("combat", site, experiment)], site)
    return write_csv(out_csv, SITE_SUMMARY_COLUMNS, rows)
