"""Region samples (group data): scoring each held-out region's target PROFILE.

The target columns ``<prefix>_<region>`` (e.g. ``fc_L_001``) are mapped back
to the table's units and each test region's predicted row is correlated with
its true row, leaving out the region's own column (FC with itself is 1 by
definition):

- ``pearson_r``: over every other region;
- ``pearson_r_heldout_columns``: only over the other TEST regions. A test
  region's FC with a training region is also, transposed, a value in that
  training region's own target row; this score never uses such entries;
- ``pearson_r_holdout_group``: against the same row of the held-out group's
  matrix (``holdout_<prefix>_<region>`` columns, which no model sees).

``noise_ceiling`` is the held-out group's row used as the prediction of the
discovery group's row: how far the profile itself reproduces. With
cross-attention, ``matched_attention_fraction`` is the fraction of target
columns whose mean attention peaks on the condition column of the same region
(``fc_L_001`` -> ``mpc_L_001``), beside its permutation null with the condition
columns' region labels permuted (``matched_attention_null``: mean of 1,000
seeded draws, ``matched_attention_null_p95``, ``matched_attention_p_value``:
:func:`~modalmerge.evaluation.scoring.attention_peak_null`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from modalmerge.evaluation import metrics
from modalmerge.evaluation.scoring import BASELINES, Scored, attention_peaks, with_null
from modalmerge.settings import ExperimentSettings

log = logging.getLogger(__name__)


@dataclass
class ProfileTable:
    """What profile scoring needs from the region shards.

    Attributes
    ----------
    target_names, condition_names : list of str
        The experiment's target and condition column views.
    target_regions : list of str
        The region of each target column (``fc_L_001`` -> ``L_001``).
    mean, std : ndarray
        The training statistics of the target columns (back to raw units).
    holdout : dict or None
        Test region -> its raw ``holdout_<target column>`` row, when the table has them.
    regions : set of str
        Every region name.
    """

    target_names: list[str]
    condition_names: list[str]
    target_regions: list[str]
    mean: np.ndarray
    std: np.ndarray
    holdout: dict[str, np.ndarray] | None
    regions: set[str]


def profile_table(
    manifest: dict, experiment: ExperimentSettings, shard_dir: str | Path
) -> ProfileTable | None:
    """Read the profile columns of region shards; None when the target columns are
    not per-region (``<prefix>_<region>``)."""
    from modalmerge.data.shards.regions import region_of_column
    from modalmerge.data.shards.split_arrays import load_split_arrays, table_columns

    columns = list(manifest["tabular"]["columns"])
    mean = np.asarray(manifest["tabular"]["numeric_mean"], dtype=np.float64)
    std = np.asarray(manifest["tabular"]["numeric_std"], dtype=np.float64)

    def view(role: str) -> np.ndarray:
        picked = table_columns(manifest, getattr(experiment, f"{role}_columns"))
        return np.arange(len(columns)) if picked is None else picked

    picked = view("target")
    names = [columns[i] for i in picked]
    regions = set(manifest.get("roi_names") or [])
    column_region = [(region_of_column(n, regions) or (None, None))[1] for n in names]
    if not all(column_region):
        log.info("target columns are not per-region (<prefix>_<region>): no profile scores")
        return None
    holdout_names = [f"holdout_{n}" for n in names]
    holdout = None
    if all(n in columns for n in holdout_names):
        index = [columns.index(n) for n in holdout_names]
        table = load_split_arrays(shard_dir, "test", "tabular")
        rows = np.asarray(table["data"], np.float64)[:, index] * std[index] + mean[index]
        holdout = dict(zip(table["subject"], rows, strict=True))
    return ProfileTable(
        target_names=names,
        condition_names=[columns[i] for i in view("condition")],
        target_regions=column_region,
        mean=mean[picked],
        std=std[picked],
        holdout=holdout,
        regions=regions,
    )


def row_r(pred: np.ndarray, true: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``pred`` with the same row of ``true`` over the ``keep``
    mask, which keeps as many entries in every row (0 for a constant row)."""
    n = len(pred)
    p, t = pred[keep].reshape(n, -1), true[keep].reshape(n, -1)
    return metrics.pearson_per_roi(p[:, :, None], t[:, :, None])[:, 0]  # rows as series


def score_region_profiles(
    scored: Scored, table: ProfileTable, attention: np.ndarray | None = None
) -> Scored:
    """``scored`` (from :func:`~modalmerge.evaluation.tabular.score_tabular` on region
    samples) with the profile scores added; ``attention`` ``(n_target, n_condition)``
    adds the matched-attention fraction. ``scored`` itself is left as it was."""
    keys = [str(k) for k in scored.arrays["subjects"]]
    held_out = set(keys)
    true = _raw(scored.arrays["target"], table)
    keep_all = ~np.array([[c == k for c in table.target_regions] for k in keys])
    keep_heldout = keep_all & np.array([c in held_out for c in table.target_regions])[None, :]
    holdout = None if table.holdout is None else np.stack([table.holdout[k] for k in keys])

    scores = {name: dict(values) for name, values in scored.scores.items()}
    arrays = dict(scored.arrays)
    per_region: dict = {"regions": keys}
    per_unit = {k: dict(v) if isinstance(v, dict) else list(v) for k, v in scored.per_unit.items()}
    per_unit["units"] = keys
    for name in ["model", *(p for p in BASELINES if p in scored.arrays)]:
        pred = _raw(scored.arrays["prediction" if name == "model" else name], table)
        r = row_r(pred, true, keep_all)
        update = {"pearson_r": float(r.mean())}
        if len(held_out) > 2:
            update["pearson_r_heldout_columns"] = float(row_r(pred, true, keep_heldout).mean())
        if holdout is not None:
            update["pearson_r_holdout_group"] = float(row_r(pred, holdout, keep_all).mean())
        scores.setdefault(name, {}).update(update)
        per_region[name] = {"pearson_r": r.round(6).tolist()}
        per_unit.setdefault(name, {})["pearson_r"] = r.tolist()
        arrays[f"{name}_raw"] = pred.astype(np.float32)
    arrays["target_raw"] = true.astype(np.float32)
    if holdout is not None:
        ceiling = row_r(holdout, true, keep_all)
        scores["noise_ceiling"] = {"pearson_r": float(ceiling.mean())}
        per_region["noise_ceiling"] = {"pearson_r": ceiling.round(6).tolist()}
        per_unit["noise_ceiling"] = {"pearson_r": ceiling.tolist()}
    prefix = table.target_names[0][: -len(table.target_regions[0]) - 1]
    extra = {**scored.extra, "per_region": per_region, "primary_metric": "pearson_r"}
    extra["profile"] = {"prefix": prefix, "columns": table.target_names}
    if attention is not None:
        matched = matched_attention(attention, table)
        if matched is not None:
            scores["model"].update(matched[0])
            extra["matched_attention"] = matched[1]
    return replace(scored, scores=scores, arrays=arrays, per_unit=per_unit, extra=extra)


def matched_attention(
    attention: np.ndarray, table: ProfileTable
) -> tuple[dict[str, float], dict] | None:
    """The fraction of target columns whose mean attention peaks on the condition
    column of the same region (scores), and the ``matched_attention`` record; None
    when no target column has exactly one condition column of its region."""
    from modalmerge.data.shards.regions import region_of_column

    where: dict[str, list[int]] = {}
    for j, name in enumerate(table.condition_names):
        hit = region_of_column(name, table.regions)
        if hit is not None:
            where.setdefault(hit[1], []).append(j)
    pairs = {
        i: where[r][0] for i, r in enumerate(table.target_regions) if len(where.get(r, [])) == 1
    }
    if not pairs:
        return None
    hits = len(attention_peaks(attention, pairs))
    log.info("attention peaks on the same region for %d of %d columns", hits, len(pairs))
    scores = {
        "matched_attention_fraction": hits / len(pairs),
        "matched_attention_chance": 1.0 / attention.shape[1],
    }
    scores, drawn = with_null("matched_attention", scores, attention, pairs)
    record = {
        **drawn,
        "n_pairs": len(pairs),
        "mean_attention": attention.round(6).tolist(),
        "condition_columns": table.condition_names,
        "target_columns": table.target_names,
    }
    return scores, record


def _raw(values: np.ndarray, table: ProfileTable) -> np.ndarray:
    """Standardised target columns back in the table's units."""
    return np.asarray(values, np.float64) * table.std + table.mean
