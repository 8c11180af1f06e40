"""Scores by held-out site: the leave-one-site-out figure (from ``site_summary.csv``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from modalmerge.viz._common import new_figure

PREDICTOR_ORDER = ("model", "group_mean", "ridge", "ridge_parcel", "noise_ceiling")


def site_chart(summary: pd.DataFrame, metric: str = "pearson_r") -> Figure:
    """One panel per experiment: each predictor's ``metric`` on each held-out site, without
    (open markers) and with ComBat (filled), with the 95 % intervals over the site's subjects.

    Parameters
    ----------
    summary : pandas.DataFrame
        ``site_summary.csv`` (:mod:`modalmerge.evaluation.sites`).
    metric : str
        The metric drawn.

    Raises
    ------
    ValueError
        No predictor rows of ``metric``.
    """
    rows = summary[
        summary["harmonize"].isin(["none", "combat"])
        & (summary["metric"] == metric)
        & summary["model"].isin(PREDICTOR_ORDER)
    ]
    if rows.empty:
        raise ValueError(f"site summary has no predictor rows of {metric!r}")
    experiments = list(dict.fromkeys(rows["experiment"]))
    sites = sorted(set(rows["test_site"]))
    predictors = [p for p in PREDICTOR_ORDER if p in set(rows["model"])]
    fig = new_figure(3.2 * len(experiments) + 1.8, 3.4, layout="constrained")
    axes = fig.subplots(1, len(experiments), squeeze=False).ravel()
    width = 0.8 / len(predictors)
    colors = {p: f"C{k}" for k, p in enumerate(predictors)}
    for ax, experiment in zip(axes, experiments, strict=True):
        part = rows[rows["experiment"] == experiment]
        for k, predictor in enumerate(predictors):
            for harmonize, offset, face in (("none", -0.12, "white"), ("combat", 0.12, None)):
                sel = part[(part["model"] == predictor) & (part["harmonize"] == harmonize)]
                sel = sel.set_index("test_site").reindex(sites)
                x = np.arange(len(sites)) - 0.4 + width * (k + 0.5) + offset * width
                value = sel["value"].to_numpy(float)
                low = value - sel["ci_low"].to_numpy(float)
                high = sel["ci_high"].to_numpy(float) - value
                ax.errorbar(
                    x, value, yerr=np.vstack([low, high]), fmt="o", color=colors[predictor],
                    mfc=face or colors[predictor], ms=4, lw=1, capsize=2,
                    label=f"{predictor} ({'ComBat' if harmonize == 'combat' else 'none'})",
                )  # fmt: skip
        ax.set_xticks(np.arange(len(sites)), sites)
        ax.set_xlabel("held-out site")
        ax.set_title(experiment, fontsize="small")
        ax.axhline(0.0, color="black", lw=0.5)
    axes[0].set_ylabel(f"{metric} (95 % interval)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="x-small")
    return fig
