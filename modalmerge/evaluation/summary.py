"""The ``metrics.json`` of each experiment and the ``summary.csv`` across them.

``eval/<experiment>/metrics.json`` schema
-----------------------------------------
One JSON object::

    {
      "experiment": "image_to_ts_xattn",     # str, the experiment's name in config.yaml
      "condition": "image",                   # str, condition modality
      "target": "time_series",                # str, target modality
      "method": "cross_attention",            # str, conditioning method
      "n_test_subjects": 4,                   # int >= 1
      "n_parameters": 171290,                 # optional: the model's trainable parameters
      "scores": {                             # predictor -> metric -> number
        "model":         {"pearson_r": 0.41, "r2": 0.12, "mse": 0.88, ...},
        "group_mean":    {"pearson_r": 0.35, ...},
        "ridge":         {"pearson_r": 0.30, ...},
        "noise_ceiling": {"pearson_r": 0.62}
      },
      "per_roi": {                            # optional: predictor -> metric -> [R numbers]
        "model": {"pearson_r": [...], "r2": [...], "mse": [...]},
        ...
      },
      "per_unit": {                           # optional: one score per held-out unit
        "units": ["sub-003", "sub-011", ...], # str ids, n of them
        "model":      {"pearson_r": [n numbers], "fc_top1": [n numbers], ...},
        "group_mean": {"pearson_r": [n numbers], ...},
        ...
      },
      "primary_metric": "pearson_r"           # optional: the metric verdicts are drawn on
    }

- Predictors are ``model`` (required), ``group_mean``, ``ridge``,
  ``ridge_parcel`` (ridge on the parcel structural features) and
  ``noise_ceiling`` (each optional: e.g. real data has no noise ceiling).
- ``per_unit``: a unit is a held-out test subject (subject splits), a
  subject's test block (``split_by: time``; id ``<subject>:test``) or a test
  region (region samples). Every list has one value per entry of ``units``,
  in that order, for every predictor; unit i of every predictor is the same
  unit, so predictors can be compared pairwise. A value is a number (``inf``
  allowed, NaN not). The mean of a metric's list is its ``scores`` value for
  ``pearson_r``, ``r2`` (time series), ``mse``, ``fc_similarity``, ``ssim``,
  ``psnr``, the ``fc_*`` identifiability scores and the profile ``pearson_r``;
  for tables ``r2`` is each row's share of the mean column R² (equal to the
  score when no test column is constant, see
  :func:`modalmerge.evaluation.tabular.row_scores`); text ``token_accuracy``
  per subject may differ slightly from the pooled score.
- ``n_parameters``: optional, an integer >= 1, the model's trainable
  parameters (:meth:`modalmerge.models.MultiModalModel.n_parameters`), so
  methods are compared at known sizes.
- ``primary_metric``: ``pearson_r`` for time series and region profiles,
  ``ssim`` for images, ``r2`` for tables with numeric columns (else
  ``accuracy``), ``token_accuracy`` for text, ``feature_r`` for point clouds
  (:data:`PRIMARY_METRIC` when absent).
- Metric names are free (``pearson_r``, ``r2``, ``mse``, ``fc_similarity``,
  ``n_constant_series``, ``ssim``, ``psnr``, ``token_accuracy``, ``perplexity``,
  ``mae``, ``accuracy``: see :mod:`modalmerge.evaluation.metrics`); a value is a
  number, never NaN; ``inf`` is allowed (PSNR of an exact prediction) and is
  stored as JSON ``Infinity``.
- Every ``per_roi`` list of one file has the same length R.
- Time-series targets with at least 2 held-out subjects (subject splits) also
  score FC identifiability per predictor (``fc_top1``, ``fc_mean_rank``,
  ``fc_demeaned_r``: :mod:`modalmerge.evaluation.identifiability`), with their
  chance levels under ``fc_identifiability_chance``.
- Other keys are free and not checked: e.g. ``per_region`` (region samples:
  predictor -> metric -> one number per test region, plus ``regions``),
  ``homolog_attention``, ``matched_attention``.
- Attention scores (``model`` only, with cross-attention): ``homolog_attention_fraction``
  (time series, left/right ROI views) and ``matched_attention_fraction`` (region
  profiles): the fraction of paired target ROIs/columns whose mean attention
  peaks on the paired condition column; ``<name>_chance`` = 1 / n_condition;
  ``<name>_null``: the same fraction with the condition's region labels
  randomly permuted, mean of 1,000 seeded draws; ``<name>_null_p95``: their
  95th percentile; ``<name>_p_value``: (1 + draws >= observed) / 1,001
  (:func:`modalmerge.evaluation.scoring.attention_peak_null`). The
  ``homolog_attention`` / ``matched_attention`` records carry
  ``null_permutations`` and ``null_seed``.

:func:`write_metrics` checks a record against this schema and writes it
atomically; :func:`read_metrics` checks a file on the way in.

``eval/summary.csv``
--------------------
Long format, one row per (experiment, predictor, metric), in input order::

    experiment,condition,target,method,model,metric,value,ci_low,ci_high,n,p_wilcoxon,verdict

- Predictor rows: ``model`` is the predictor (model | group_mean | ridge |
  ridge_parcel | noise_ceiling), ``value`` its score; ``ci_low``/``ci_high``
  the 95 % percentile bootstrap interval of the mean over the ``n`` held-out
  units (:func:`modalmerge.evaluation.intervals.bootstrap_ci`), empty without
  per-unit scores; for a realism ratio with its per-unit parts, the value is the ratio of
  their means and the interval :func:`modalmerge.evaluation.intervals.ratio_of_means_ci`;
  ``p_wilcoxon`` and ``verdict`` empty.
- ``n_parameters`` (when the record has it): one row after the ``model``
  predictor's rows, ``model`` = ``model``, ``metric`` = ``n_parameters``,
  ``value`` the count; the other cells empty.
- Difference rows, after each experiment's predictor rows: ``model`` is
  ``model-<baseline>`` for every baseline (group_mean, ridge, ridge_parcel)
  with per-unit scores, ``value`` the mean paired per-unit difference
  (model − baseline), its interval, ``n`` and ``p_wilcoxon`` (two-sided
  signed-rank test, :func:`modalmerge.evaluation.intervals.paired_difference`); for a
  realism ratio whose parts both predictors hold, the difference of their ratios of means
  over the same truth, resampled jointly
  (:func:`modalmerge.evaluation.intervals.paired_ratio_difference`).
  On the primary metric (higher is better for every primary metric) ``verdict``
  says ``beats`` when the interval lies above zero, else ``does not beat``;
  empty on other metrics (for ``mse``/``mae`` lower is better: read the sign).
- Two experiments (two methods on the same shards) are compared by
  :func:`compare_experiments`, the same paired difference between their models.
- Empty cells are undefined values: fewer than 2 units, or a non-finite
  per-unit score (PSNR ``inf``). Intervals use the seed
  :data:`modalmerge.evaluation.intervals.BOOTSTRAP_SEED` and
  :data:`~modalmerge.evaluation.intervals.N_BOOTSTRAP` resamples.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from modalmerge.evaluation.generative import realism_parts
from modalmerge.evaluation.intervals import (
    BOOTSTRAP_SEED,
    N_BOOTSTRAP,
    Difference,
    bootstrap_ci,
    paired_difference,
    paired_ratio_difference,
    ratio_of_means_ci,
    verdict,
)
from modalmerge.io import InputError, atomic_path, require_file

PREDICTORS = (
    "model",
    "group_mean",
    "ridge",
    "ridge_parcel",
    "oracle",
    "noise_ceiling",
    "regional_truth",
    "physics",
    "climatology",
    "logistic",
    "logistic_context",
    "chance",
    "distance_decay",
    "ridge_edges",
    "medoid_template",
    "fps_template",
    "nearest_anatomy",
)
#: the predictors a model is compared with by paired differences (``climatology``: the
#: training windows as an ensemble, scored by CRPS against a generative model's samples;
#: ``logistic``, ``logistic_context``, ``chance``: brain decoding's baselines,
#: :mod:`modalmerge.evaluation.decoding`)
BASELINES = (
    *("group_mean", "ridge", "ridge_parcel", "physics", "climatology"),
    *("logistic", "logistic_context", "chance"),
    *("distance_decay", "ridge_edges"),  # graph sub-graphs of region data (graph_edges.py)
    *("medoid_template", "fps_template", "nearest_anatomy"),  # point sets (point_sets.py)
)
IDENTITY_FIELDS = ("experiment", "condition", "target", "method")
SUMMARY_COLUMNS = (
    *(*IDENTITY_FIELDS, "model", "metric", "value"),
    *("ci_low", "ci_high", "n", "p_wilcoxon", "verdict"),
)
#: the metric a verdict is drawn on, by target modality, when metrics.json names none
PRIMARY_METRIC = {
    "time_series": "pearson_r",
    "image": "ssim",
    "tabular": "r2",
    "text": "token_accuracy",
    "graph": "edge_r",
    "point_cloud": "feature_r",
}


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and not math.isnan(x)


def _plain(x):
    """JSON fallback for numpy scalars and arrays."""
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"cannot store {type(x).__name__} in metrics.json")


def validate_metrics(record: Mapping) -> list[str]:
    """List what is wrong with a metrics record (empty when it follows the schema).

    Parameters
    ----------
    record : mapping
        A parsed ``metrics.json`` (see the module docstring).

    Returns
    -------
    list of str
        One sentence per fault.
    """
    if not isinstance(record, Mapping):
        return [f"expected a JSON object, got {type(record).__name__}"]
    faults = []
    for key in IDENTITY_FIELDS:
        if not isinstance(record.get(key), str) or not record.get(key):
            faults.append(f"'{key}' must be a non-empty string")
    n = record.get("n_test_subjects")
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        faults.append("'n_test_subjects' must be an integer >= 1")
    n_parameters = record.get("n_parameters", 1)
    if (
        not isinstance(n_parameters, numbers.Integral)
        or isinstance(n_parameters, bool)
        or n_parameters < 1
    ):
        faults.append("'n_parameters' must be an integer >= 1 when present")
    scores = record.get("scores")
    if not isinstance(scores, Mapping) or "model" not in scores:
        faults.append("'scores' must be an object with at least a 'model' entry")
        scores = {}
    for predictor, metrics in scores.items():
        if predictor not in PREDICTORS:
            faults.append(
                f"unknown predictor '{predictor}' in scores (known: {', '.join(PREDICTORS)})"
            )
        elif not isinstance(metrics, Mapping) or not metrics:
            faults.append(f"scores['{predictor}'] must be a non-empty object of metric -> number")
        else:
            faults += [
                f"scores['{predictor}']['{m}'] must be a number, not {v!r}"
                for m, v in metrics.items()
                if not _is_number(v)
            ]
    per_roi = record.get("per_roi", {})
    if not isinstance(per_roi, Mapping):
        return faults + ["'per_roi' must be an object"]
    found, lengths = _list_block_faults(per_roi, "per_roi")
    faults += found
    if len(set(lengths.values())) > 1:
        faults.append(f"per_roi lists differ in length: {sorted(set(lengths.values()))}")
    return faults + _per_unit_faults(record.get("per_unit", {}))


def _list_block_faults(block: Mapping, name: str) -> tuple[list[str], dict[tuple, int]]:
    """What is wrong with the ``{predictor: {metric: [number, ...]}}`` entries of the
    ``per_roi`` or ``per_unit`` block ``name`` (its ``units`` key aside), and the length of
    each well-formed list by ``(predictor, metric)``."""
    faults, lengths = [], {}
    for predictor, metrics in block.items():
        if predictor == "units" and name == "per_unit":
            continue
        if predictor not in PREDICTORS or not isinstance(metrics, Mapping):
            faults.append(f"{name}['{predictor}'] must be a known predictor mapping metric -> list")
            continue
        for m, values in metrics.items():
            if not isinstance(values, (list, tuple)) or not all(_is_number(v) for v in values):
                faults.append(f"{name}['{predictor}']['{m}'] must be a list of numbers")
            else:
                lengths[(predictor, m)] = len(values)
    return faults, lengths


def _per_unit_faults(per_unit) -> list[str]:
    """What is wrong with a ``per_unit`` block (see the module docstring)."""
    if not isinstance(per_unit, Mapping):
        return ["'per_unit' must be an object"]
    if not per_unit:
        return []
    units = per_unit.get("units")
    if not isinstance(units, list) or not units or not all(isinstance(u, str) for u in units):
        return ["per_unit['units'] must be a non-empty list of unit ids"]
    faults, lengths = _list_block_faults(per_unit, "per_unit")
    return faults + [
        f"per_unit['{predictor}']['{m}'] has {n} values for {len(units)} units"
        for (predictor, m), n in lengths.items()
        if n != len(units)
    ]


def write_metrics(path: str | os.PathLike, record: Mapping) -> Path:
    """Check a metrics record against the schema and write it atomically as JSON.

    Parameters
    ----------
    path : path
        Usually ``eval/<experiment>/metrics.json``.
    record : mapping
        Follows the schema in the module docstring.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        When the record breaks the schema; nothing is written then.
    """
    faults = validate_metrics(record)
    if faults:
        raise ValueError("metrics record breaks the schema: " + "; ".join(faults))
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=_plain) + "\n")
    return path


def read_metrics(path: str | os.PathLike) -> dict:
    """Read and check one ``metrics.json``.

    Raises
    ------
    InputError
        When the file is missing, empty, not JSON, or breaks the schema; the
        message names the file.
    """
    path = require_file(path, "metrics.json")
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from err
    faults = validate_metrics(record)
    if faults:
        raise InputError(path, "breaks the metrics.json schema: " + "; ".join(faults))
    return record


def _cell(x) -> str:
    """A CSV cell: ``repr`` of a float, empty for NaN (undefined)."""
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def primary_metric(record: Mapping) -> str | None:
    """The metric a verdict is drawn on: ``primary_metric`` of the record, else by target."""
    return record.get("primary_metric") or PRIMARY_METRIC.get(record.get("target"))


def experiment_rows(
    record: Mapping, seed: int = BOOTSTRAP_SEED, n_boot: int = N_BOOTSTRAP
) -> list[list]:
    """The ``summary.csv`` rows of one metrics record: every predictor's scores with
    their intervals, then the paired differences model − baseline (module docstring)."""
    identity = [record[key] for key in IDENTITY_FIELDS]
    per_unit = record.get("per_unit", {})
    rows = []
    for predictor in PREDICTORS:
        units = per_unit.get(predictor, {})
        for metric, value in record["scores"].get(predictor, {}).items():
            interval = ["", "", ""]
            parts = realism_parts(metric, units)
            if parts is not None:  # a ratio of means: resample its two parts together
                num, den = (units[p] for p in parts)
                low, high = ratio_of_means_ci(num, den, seed=seed, n_boot=n_boot)
                interval = [_cell(low), _cell(high), str(len(num))]
            elif metric in units:
                low, high = bootstrap_ci(units[metric], seed=seed, n_boot=n_boot)
                interval = [_cell(low), _cell(high), str(len(units[metric]))]
            rows.append([*identity, predictor, metric, _cell(float(value)), *interval, "", ""])
        if predictor == "model" and "n_parameters" in record:
            rows.append(
                [*identity, "model", "n_parameters", str(int(record["n_parameters"]))]
                + ["", "", "", "", ""]
            )
    primary = primary_metric(record)
    model_units = per_unit.get("model", {})
    for baseline in BASELINES:
        for metric in per_unit.get(baseline, {}):
            if metric not in model_units or "realism_truth_" in metric:
                continue  # (the truth's statistic is the same for every predictor)
            diff = _paired(metric, model_units, per_unit[baseline], seed, n_boot)
            rows.append(
                [*identity, f"model-{baseline}", metric, _cell(diff.value)]
                + [_cell(diff.ci_low), _cell(diff.ci_high), str(diff.n), _cell(diff.p_wilcoxon)]
                + [verdict(diff) if metric == primary else ""]
            )
    return rows


def _paired(metric: str, model: Mapping, baseline: Mapping, seed: int, n_boot: int):
    """Model − baseline on ``metric``: a realism ratio whose parts both hold, over the same
    truth, as the difference of the ratios of means (:func:`paired_ratio_difference`), any
    other score as the mean per-unit difference."""
    mine, theirs = realism_parts(metric, model), realism_parts(metric, baseline)
    if mine and theirs and list(model[mine[1]]) == list(baseline[theirs[1]]):
        return paired_ratio_difference(
            model[mine[0]], baseline[theirs[0]], model[mine[1]], seed=seed, n_boot=n_boot
        )
    return paired_difference(model[metric], baseline[metric], seed=seed, n_boot=n_boot)


def compare_experiments(
    path_a: str | os.PathLike,
    path_b: str | os.PathLike,
    metric: str | None = None,
    *,
    seed: int = BOOTSTRAP_SEED,
    n_boot: int = N_BOOTSTRAP,
    same_condition: bool = True,
) -> tuple[Difference, str]:
    """The paired per-unit difference model A − model B of two experiments.

    For two methods trained on the same shards (e.g. ``cross_attention`` −
    ``spatial_mix``: what content-based attention adds): both ``metrics.json``
    must score the same held-out units in the same order. A realism ratio with its parts
    in both is the difference of the two ratios of means over the common truth.

    Parameters
    ----------
    path_a, path_b : path
        ``eval/<experiment>/metrics.json`` of the two experiments.
    metric : str, optional
        Default: the primary metric of A.
    same_condition : bool
        True (default): both must predict from the same condition modality (a method
        comparison). False: the conditions may differ (e.g. a surface point cloud against
        the image, both -> time series on the same shards); the target must not.

    Returns
    -------
    (Difference, str)
        The difference with its interval, ``n`` and Wilcoxon p, and its verdict
        (``beats`` when the interval lies above zero).

    Raises
    ------
    InputError
        A file is missing or corrupt, lacks per-unit scores of ``metric``, or
        the two differ in target or held-out units.
    """
    a, b = read_metrics(path_a), read_metrics(path_b)
    metric = metric or primary_metric(a)
    if a["target"] != b["target"] or (same_condition and a["condition"] != b["condition"]):
        raise InputError(path_b, f"predicts {b['condition']} -> {b['target']}, not "
                         f"{a['condition']} -> {a['target']} as {path_a}")  # fmt: skip
    units_a = a.get("per_unit", {}).get("units")
    for path, record in ((path_a, a), (path_b, b)):
        if metric not in record.get("per_unit", {}).get("model", {}):
            raise InputError(path, f"has no per-unit model scores of {metric!r}")
        if record["per_unit"]["units"] != units_a:
            raise InputError(path, f"scores other held-out units than {path_a}")
    diff = _paired(metric, a["per_unit"]["model"], b["per_unit"]["model"], seed, n_boot)
    return diff, verdict(diff)


def summarize(
    metrics_paths: Sequence[str | os.PathLike],
    out_csv: str | os.PathLike,
    *,
    seed: int = BOOTSTRAP_SEED,
    n_boot: int = N_BOOTSTRAP,
) -> Path:
    """Gather every experiment's scores, intervals and paired differences into one
    long-format CSV.

    Parameters
    ----------
    metrics_paths : sequence of path
        ``eval/<experiment>/metrics.json`` files, one per experiment.
    out_csv : path
        Usually ``eval/summary.csv``; written atomically.
    seed, n_boot : int
        The bootstrap's seed and number of resamples.

    Returns
    -------
    Path
        ``out_csv``.

    Raises
    ------
    InputError
        When a metrics file is missing or corrupt, or two files carry the same
        experiment name.
    ValueError
        When ``metrics_paths`` is empty.
    """
    if not metrics_paths:
        raise ValueError("no metrics.json files to summarize")
    rows = []
    seen: dict[str, Path] = {}
    for path in map(Path, metrics_paths):
        record = read_metrics(path)
        name = record["experiment"]
        if name in seen:
            raise InputError(path, f"experiment '{name}' already came from {seen[name]}")
        seen[name] = path
        rows += experiment_rows(record, seed=seed, n_boot=n_boot)
    return write_csv(out_csv, SUMMARY_COLUMNS, rows)


def write_csv(out_csv: str | os.PathLike, columns, rows) -> Path:
    """``columns`` then ``rows`` to ``out_csv``, atomically (the summary CSVs of this package:
    summary.csv, summary_repeats.csv, site_summary.csv); returns its path."""
    out_csv = Path(out_csv)
    with atomic_path(out_csv) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return out_csv
