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
      "scores": {                             # predictor -> metric -> number
        "model":         {"pearson_r": 0.41, "r2": 0.12, "mse": 0.88, ...},
        "group_mean":    {"pearson_r": 0.35, ...},
        "ridge":         {"pearson_r": 0.30, ...},
        "noise_ceiling": {"pearson_r": 0.62}
      },
      "per_roi": {                            # optional: predictor -> metric -> [R numbers]
        "model": {"pearson_r": [...], "r2": [...], "mse": [...]},
        ...
      }
    }

- Predictors are ``model`` (required), ``group_mean``, ``ridge`` and
  ``noise_ceiling`` (each optional: e.g. real data has no noise ceiling).
- Metric names are free (``pearson_r``, ``r2``, ``mse``, ``fc_similarity``,
  ``n_constant_series``, ``ssim``, ``psnr``, ``token_accuracy``, ``perplexity``,
  ``mae``, ``accuracy``: see :mod:`modalmerge.evaluation.metrics`); a value is a
  number, never NaN; ``inf`` is allowed (PSNR of an exact prediction) and is
  stored as JSON ``Infinity``.
- Every ``per_roi`` list of one file has the same length R.
- Other keys are free and not checked: e.g. ``per_region`` (region samples:
  predictor -> metric -> one number per test region, plus ``regions``),
  ``homolog_attention``, ``matched_attention``.

:func:`write_metrics` checks a record against this schema and writes it
atomically; :func:`read_metrics` checks a file on the way in.

``eval/summary.csv``
--------------------
Long format, one row per (experiment, predictor, metric), in input order::

    experiment,condition,target,method,model,metric,value

where ``model`` is the predictor (model | group_mean | ridge | noise_ceiling).
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from modalmerge.io import InputError, atomic_path, require_file

PREDICTORS = ("model", "group_mean", "ridge", "noise_ceiling")
IDENTITY_FIELDS = ("experiment", "condition", "target", "method")
SUMMARY_COLUMNS = ("experiment", "condition", "target", "method", "model", "metric", "value")


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
    lengths = set()
    for predictor, metrics in per_roi.items():
        if predictor not in PREDICTORS or not isinstance(metrics, Mapping):
            faults.append(
                f"per_roi['{predictor}'] must be a known predictor mapping metric -> list"
            )
            continue
        for m, values in metrics.items():
            if not isinstance(values, (list, tuple)) or not all(_is_number(v) for v in values):
                faults.append(f"per_roi['{predictor}']['{m}'] must be a list of numbers")
            else:
                lengths.add(len(values))
    if len(lengths) > 1:
        faults.append(f"per_roi lists differ in length: {sorted(lengths)}")
    return faults


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


def summarize(metrics_paths: Sequence[str | os.PathLike], out_csv: str | os.PathLike) -> Path:
    """Gather every experiment's scores into one long-format CSV.

    Parameters
    ----------
    metrics_paths : sequence of path
        ``eval/<experiment>/metrics.json`` files, one per experiment.
    out_csv : path
        Usually ``eval/summary.csv``; written atomically.

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
        identity = [record[key] for key in IDENTITY_FIELDS]
        for predictor in PREDICTORS:
            for metric, value in record["scores"].get(predictor, {}).items():
                rows.append([*identity, predictor, metric, repr(float(value))])
    out_csv = Path(out_csv)
    with atomic_path(out_csv) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        writer.writerows(rows)
    return out_csv
