"""The summary chart: every experiment against its baselines, with intervals and verdicts.

Drawn from ``eval/summary.csv`` (schema in :mod:`modalmerge.evaluation.summary`)
by the figures stage; re-exported by :mod:`modalmerge.viz.figures`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from modalmerge.viz._common import new_figure


def summary_chart(summary: pd.DataFrame) -> Figure:
    """Grouped bars: each experiment's model against its baselines, one panel per metric.

    Parameters
    ----------
    summary : pandas.DataFrame
        Long table with columns ``experiment``, ``model`` (``"model"``,
        ``"group_mean"``, ``"ridge"``, ``"noise_ceiling"``, ...), ``metric`` and
        ``value`` (as in ``eval/summary.csv``); one row per combination.
        Optional ``ci_low``/``ci_high`` are drawn as error bars (95 % intervals
        over held-out units). Rows whose ``model`` is ``model-<baseline>`` (paired
        differences) are not drawn as bars: their ``verdict`` is written above
        each experiment in its metric's panel (``beats <baseline>`` or
        ``not > <baseline>`` for an interval that reaches zero), and the model's bar
        of an experiment that beats every baseline there gets a thick black edge.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per metric, experiments on x, one bar per model.

    Raises
    ------
    ValueError
        When a column is missing, the table is empty, or a combination repeats.
    """
    _check_summary(summary)
    is_difference = summary["model"].astype(str).str.startswith("model-")
    differences, summary = summary[is_difference], summary[~is_difference]
    if len(summary) == 0:
        raise ValueError("summary has no predictor rows, only differences")
    metrics = list(dict.fromkeys(summary["metric"]))
    experiments = list(dict.fromkeys(summary["experiment"]))
    models = list(dict.fromkeys(summary["model"]))
    if "model" in models:  # the trained model first, then its baselines
        models.remove("model")
        models.insert(0, "model")
    n_cols = min(3, len(metrics))
    n_rows = -(-len(metrics) // n_cols)
    fig = new_figure(
        max(5.0, 1.0 * len(experiments) * n_cols + 1.5), 3.6 * n_rows, layout="constrained"
    )
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        shown, bars = _summary_panel(ax, summary[summary["metric"] == metric], experiments, models)
        ax.set_title(metric)
        ax.axhline(0.0, color="black", lw=0.5)
        _mark_verdicts(ax, differences[differences["metric"] == metric], shown, bars)
    for ax in axes[len(metrics) :]:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    return fig


def _check_summary(summary: pd.DataFrame) -> None:
    """Refuse a table without the needed columns, an empty one, or a repeated row."""
    needed = {"experiment", "model", "metric", "value"}
    missing = needed - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks column(s) {sorted(missing)}; has {list(summary.columns)}")
    if len(summary) == 0:
        raise ValueError("summary is empty")
    dup = summary.duplicated(["experiment", "model", "metric"])
    if dup.any():
        first = summary.loc[dup, ["experiment", "model", "metric"]].iloc[0].tolist()
        raise ValueError(f"summary repeats (experiment, model, metric) = {first}")


def _summary_panel(ax, rows: pd.DataFrame, experiments: list, models: list) -> list:
    """One metric's bars (with interval error bars where known); returns the experiments
    shown, in x order, and the trained model's bar of each."""

    def pivot(column):
        if column not in rows.columns:
            return None
        table = rows.pivot(index="experiment", columns="model", values=column)
        return table.reindex(index=shown, columns=models).apply(pd.to_numeric, errors="coerce")

    shown = [e for e in experiments if e in set(rows["experiment"])]
    model_bars: dict = {}
    values, low, high = pivot("value"), pivot("ci_low"), pivot("ci_high")
    x = np.arange(len(shown))
    width = 0.8 / len(models)
    for m, model in enumerate(models):
        height = values[model].to_numpy(float)
        yerr = None
        if low is not None and high is not None:
            below = np.nan_to_num(height - low[model].to_numpy(float), nan=0.0)
            above = np.nan_to_num(high[model].to_numpy(float) - height, nan=0.0)
            yerr = np.clip(np.stack([below, above]), 0.0, None)
        offset = (m - (len(models) - 1) / 2) * width
        bars = ax.bar(x + offset, height, width, label=model, yerr=yerr, capsize=2, ecolor="0.2")
        if model == "model":
            model_bars = dict(zip(shown, bars.patches, strict=True))
    ax.set_xticks(x)
    ax.set_xticklabels(shown, rotation=30, ha="right")
    return shown, model_bars


def _mark_verdicts(ax, differences: pd.DataFrame, shown: list, model_bars: dict) -> None:
    """Write each experiment's verdicts against its baselines above its bars; a model
    that beats every baseline gets a thick edge on its bar."""
    if "verdict" not in differences.columns:
        return
    judged = differences[differences["verdict"].isin(["beats", "does not beat"])]
    if not judged.empty:  # headroom above the bars for the verdicts
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.35 * (high - low))
    for i, experiment in enumerate(shown):
        rows = judged[judged["experiment"] == experiment]
        if rows.empty:
            continue
        words = [
            ("beats " if v == "beats" else "not > ") + str(m).removeprefix("model-")
            for m, v in zip(rows["model"], rows["verdict"], strict=True)
        ]
        ax.annotate(
            "\n".join(words),
            xy=(i, 1.0),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="top",
            fontsize="x-small",
        )
        if (rows["verdict"] == "beats").all() and experiment in model_bars:
            model_bars[experiment].set_edgecolor("black")
            model_bars[experiment].set_linewidth(2.0)
