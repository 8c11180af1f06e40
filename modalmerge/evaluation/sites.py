"""Leave-one-site-out evidence: one row set per held-out site, with and without harmonisation.

A fold is one run of the workflow with ``shard.split_by: site``,
``shard.test_site: <site>`` and ``shard.harmonize: <none|combat>``; its
``eval/<experiment>/metrics.json`` files are gathered under
``<folds>/<harmonize>/<site>/<experiment>/metrics.json``
(``benchmarks/bench_multisite.py`` runs the folds and copies them there).

``site_summary.csv`` (long format)::

    harmonize,test_site,experiment,condition,target,method,model,metric,value,ci_low,ci_high,n,p_wilcoxon,verdict

- per fold, the rows of :func:`modalmerge.evaluation.summary.experiment_rows`
  (every predictor's score with its bootstrap interval over the held-out
  site's subjects, then the paired differences ``model-<baseline>`` with
  their intervals and verdicts), prefixed by ``harmonize`` and ``test_site``;
- per site, experiment and predictor with per-unit scores in both folds, a row
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


def read_folds(folds: str | os.PathLike) -> dict[tuple[str, str, str], dict]:
    """``{(harmonize, site, experiment): metrics record}`` from a folds directory."""
    folds = Path(folds)
    records = {}
    for path in sorted(folds.glob("*/*/*/metrics.json")):
        experiment_dir = path.parent
        site_dir = experiment_dir.parent
        harmonize = site_dir.parent.name
        if harmonize not in HARMONIZE:
            raise InputError(path, f"lies under {harmonize!r}, not one of {HARMONIZE}")
        records[(harmonize, site_dir.name, experiment_dir.name)] = read_metrics(path)
    if not records:
        raise InputError(folds, "holds no <harmonize>/<site>/<experiment>/metrics.json")
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
        if metric not in a.get(predictor, {}) or metric not in b.get(predictor, {}):
            continue
        diff = paired_difference(a[predictor][metric], b[predictor][metric])
        rows.append(
            ["combat-none", site, *identity, predictor, metric, _cell(diff.value)]
            + [_cell(diff.ci_low), _cell(diff.ci_high), str(diff.n), _cell(diff.p_wilcoxon)]
            + [verdict(diff)]
        )
    return rows


def site_summary(folds: str | os.PathLike, out_csv: str | os.PathLike) -> Path:
    """Write ``site_summary.csv`` (module doc) from a folds directory; return its path."""
    records = read_folds(folds)
    rows = []
    for (harmonize, site, _), record in records.items():
        rows += [[harmonize, site, *row] for row in experiment_rows(record)]
    for (harmonize, site, experiment), record in records.items():
        if harmonize == "none" and ("combat", site, experiment) in records:
            rows += _harmonization_rows(record, records[("combat", site, experiment)], site)
    return write_csv(out_csv, SITE_SUMMARY_COLUMNS, rows)
