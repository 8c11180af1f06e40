"""Predicted against true, one figure function per target modality.

Exposed as static methods of :class:`modalmerge.viz.Visualizer` as well.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from modalmerge.viz._common import (
    AXIS_NAMES,
    format_r,
    new_figure,
    orthogonal_slice,
    pearson_r,
    set_tick_labels,
    squeeze_leading,
    to_numpy,
)


def plot_timeseries_prediction(
    pred,
    true,
    roi_labels: Sequence[str] | None = None,
    rois: Sequence[int] | None = None,
    tr: float | None = None,
    baseline=None,
) -> Figure:
    """Predicted and true ROI time series, one panel per ROI.

    Parameters
    ----------
    pred, true : array, shape (T, R)
        Predicted and true signals (time points by ROIs).
    roi_labels : sequence of str, optional
        Names of all R ROIs.
    rois : sequence of int, optional
        ROI indices to draw; default up to four evenly spaced ROIs.
    tr : float, optional
        Repetition time in seconds; the x axis is in seconds when given, in volumes otherwise.
    baseline : array, shape (T, R), optional
        A baseline prediction (e.g. the group mean) drawn dashed for comparison.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per selected ROI; each title names the ROI and its Pearson r.

    Raises
    ------
    ValueError
        When shapes differ or are not 2-D, an ROI index is out of range, a label
        list has the wrong length, or ``tr`` is not positive.
    """
    p = to_numpy(pred, "pred")
    t = to_numpy(true, "true")
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"pred and true must both be (T, R), got {p.shape} and {t.shape}")
    n_t, n_roi = t.shape
    b = None
    if baseline is not None:
        b = to_numpy(baseline, "baseline")
        if b.shape != t.shape:
            raise ValueError(f"baseline {b.shape} must match true {t.shape}")
    if roi_labels is not None and len(roi_labels) != n_roi:
        raise ValueError(f"{len(roi_labels)} roi_labels for {n_roi} ROIs")
    if tr is not None and not tr > 0:
        raise ValueError(f"tr must be positive seconds, got {tr}")
    if rois is None:
        rois = np.unique(np.linspace(0, n_roi - 1, min(4, n_roi)).round().astype(int)).tolist()
    rois = [int(r) for r in rois]
    if not rois or min(rois) < 0 or max(rois) >= n_roi:
        raise ValueError(f"rois {rois} must be non-empty indices below {n_roi}")
    x = np.arange(n_t) * (tr if tr else 1.0)
    fig = new_figure(9.0, 1.9 * len(rois) + 0.6, layout="constrained")
    axes = fig.subplots(len(rois), 1, sharex=True, squeeze=False)[:, 0]
    for ax, r in zip(axes, rois, strict=True):
        name = roi_labels[r] if roi_labels is not None else f"ROI {r}"
        ax.plot(x, t[:, r], color="black", lw=1.2, label="true")
        ax.plot(x, p[:, r], color="tab:red", lw=1.2, label="predicted")
        title = f"{name}: {format_r(pearson_r(p[:, r], t[:, r]))}"
        if b is not None:
            ax.plot(x, b[:, r], color="tab:blue", lw=1.0, ls="--", label="baseline")
            title += f" (baseline {format_r(pearson_r(b[:, r], t[:, r]))})"
        ax.set_title(title, fontsize="medium")
        ax.set_ylabel("signal")
    axes[0].legend(fontsize="small", ncols=3)
    axes[-1].set_xlabel("time (s)" if tr else "time (volumes)")
    return fig


def plot_image_prediction(pred, true) -> Figure:
    """True image, prediction and their difference; three orthogonal slices for 3-D.

    Parameters
    ----------
    pred, true : array, shape (D, H, W) or (H, W)
        Predicted and true image (leading singleton batch/channel axes are dropped).

    Returns
    -------
    matplotlib.figure.Figure
        Columns true, predicted, difference (predicted - true); one row per
        orthogonal slice through the volume centre (3-D) or one row (2-D).
        The title gives the voxelwise Pearson r and the mean squared error.

    Raises
    ------
    ValueError
        When the images are not 2-D/3-D or differ in shape.
    """
    p = squeeze_leading(to_numpy(pred, "pred"), (2, 3), "pred")
    t = squeeze_leading(to_numpy(true, "true"), (2, 3), "true")
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and true {t.shape} differ in shape")
    diff = p - t
    if t.ndim == 3:
        centre = [s // 2 for s in t.shape]
        rows = [
            (
                f"{AXIS_NAMES[a]}={centre[a]}",
                *(orthogonal_slice(v, a, centre[a]) for v in (t, p, diff)),
            )
            for a in range(3)
        ]
    else:
        rows = [("", t.T, p.T, diff.T)]
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    dmax = float(np.abs(diff).max()) or 1.0
    fig = new_figure(9.0, 3.0 * len(rows) + 0.5, layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for row, (where, *slices) in zip(axes, rows, strict=True):
        for ax, img, name in zip(row, slices, ("true", "predicted", "difference"), strict=True):
            if name == "difference":
                im_d = ax.imshow(img, cmap="RdBu_r", vmin=-dmax, vmax=dmax, origin="lower")
            else:
                im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower")
            ax.set_title(f"{name} {where}".strip(), fontsize="medium")
            ax.set_axis_off()
    fig.colorbar(im, ax=list(axes[:, 1]), shrink=0.8, label="intensity")
    fig.colorbar(im_d, ax=list(axes[:, 2]), shrink=0.8, label="predicted - true")
    mse = float(np.mean(diff**2))
    fig.suptitle(f"image prediction: {format_r(pearson_r(p, t))}, MSE = {mse:.3g}")
    return fig


def _tabular_as_matrix(pred) -> np.ndarray:
    """Decoded (N, n_columns) predictions from an array or the model's tabular dict."""
    if isinstance(pred, Mapping):
        numeric = to_numpy(pred["numeric"], "pred['numeric']")
        parts = [numeric.reshape(numeric.shape[0], -1)]
        for i, logits in enumerate(pred.get("categorical", [])):
            lg = to_numpy(logits, f"pred['categorical'][{i}]")
            parts.append(lg.argmax(axis=-1)[:, None].astype(np.float64))
        return np.concatenate(parts, axis=1)
    return to_numpy(pred, "pred")


def plot_tabular_prediction(
    pred, true, columns: Sequence[str], categorical: Sequence[str] = ()
) -> Figure:
    """Predicted against true table values: a scatter per numeric column, a confusion matrix per categorical one.

    Parameters
    ----------
    pred : array, shape (N, n_columns), or dict
        Decoded predictions in column order (categorical columns hold category
        codes), or the model's tabular output ``{"numeric": (N, n_num),
        "categorical": [(N, card_i), ...]}`` whose logits are decoded by argmax.
    true : array, shape (N, n_columns)
        True values, categorical columns as integer codes.
    columns : sequence of str, length n_columns
        Column names.
    categorical : sequence of str
        Names of the categorical columns (in the data contract they come last).

    Returns
    -------
    matplotlib.figure.Figure
        One axis per column (titles: name and r or accuracy), plus nothing else.

    Raises
    ------
    ValueError
        When shapes disagree with ``columns`` or a categorical name is unknown.
    """
    t = to_numpy(true, "true")
    columns = [str(c) for c in columns]
    if t.ndim != 2 or t.shape[1] != len(columns):
        raise ValueError(f"true must be (N, {len(columns)}) for columns {columns}, got {t.shape}")
    unknown = set(categorical) - set(columns)
    if unknown:
        raise ValueError(f"categorical column(s) {sorted(unknown)} not among columns {columns}")
    p = _tabular_as_matrix(pred)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and true {t.shape} differ in shape")
    n_cols = min(len(columns), 4)
    n_rows = int(np.ceil(len(columns) / n_cols))
    fig = new_figure(3.2 * n_cols, 3.2 * n_rows, layout="constrained")
    grid = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in grid[len(columns) :]:
        fig.delaxes(ax)
    for c, (ax, name) in enumerate(zip(grid, columns, strict=False)):
        if name in categorical:
            tc, pc = t[:, c].round().astype(int), p[:, c].round().astype(int)
            classes = np.union1d(tc, pc)
            cm = confusion_matrix(tc, pc, labels=classes)
            ax.imshow(cm, cmap="Blues", origin="upper")
            for (i, j), v in np.ndenumerate(cm):
                ax.text(j, i, str(v), ha="center", va="center", fontsize="small")
            set_tick_labels(ax, [str(k) for k in classes], "x")
            set_tick_labels(ax, [str(k) for k in classes], "y")
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"{name}: accuracy {np.mean(tc == pc):.2f}", fontsize="medium")
        else:
            ax.scatter(t[:, c], p[:, c], s=12, alpha=0.7)
            lo, hi = (
                float(min(t[:, c].min(), p[:, c].min())),
                float(max(t[:, c].max(), p[:, c].max())),
            )
            ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
            ax.set_xlabel("true")
            ax.set_ylabel("predicted")
            ax.set_title(f"{name}: {format_r(pearson_r(p[:, c], t[:, c]))}", fontsize="medium")
    return fig


def word_f1(pred_text: str, true_text: str) -> float:
    """Bag-of-words F1 between two texts (lower-cased, whitespace split); 1.0 when both are empty."""
    p, t = pred_text.lower().split(), true_text.lower().split()
    if not p and not t:
        return 1.0
    common = sum(min(p.count(w), t.count(w)) for w in set(p))
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


def plot_text_prediction(
    pred_texts: Sequence[str], true_texts: Sequence[str], max_samples: int = 8
) -> Figure:
    """Predicted and true texts listed side by side with their word-overlap F1.

    Parameters
    ----------
    pred_texts, true_texts : sequence of str, same length N
        Decoded predictions and references.
    max_samples : int
        At most this many pairs are listed (the first ones).

    Returns
    -------
    matplotlib.figure.Figure
        One axis holding the listing; the title gives the mean word F1 over all N pairs.

    Raises
    ------
    ValueError
        When the lists differ in length, are empty, or hold non-strings.
    """
    if isinstance(pred_texts, str) or isinstance(true_texts, str):
        raise ValueError("pred_texts and true_texts must be sequences of strings, not one string")
    if len(pred_texts) != len(true_texts):
        raise ValueError(f"{len(pred_texts)} predicted texts for {len(true_texts)} true texts")
    if len(true_texts) == 0:
        raise ValueError("no texts to plot")
    if not all(isinstance(s, str) for s in (*pred_texts, *true_texts)):
        raise ValueError("every predicted and true text must be a str")
    scores = [word_f1(p, t) for p, t in zip(pred_texts, true_texts, strict=True)]
    shown = list(zip(pred_texts, true_texts, scores, strict=True))[:max_samples]
    lines: list[str] = []
    for i, (p, t, f1) in enumerate(shown):
        lines.append(f"#{i}  word F1 = {f1:.2f}")
        lines += textwrap.wrap(f"true: {t}", 100) or ["true:"]
        lines += textwrap.wrap(f"pred: {p}", 100) or ["pred:"]
        lines.append("")
    height = 0.8 + 0.18 * len(lines)  # inches: 0.5 for the title, 0.18 per line
    fig = new_figure(10.0, height)
    ax = fig.add_axes((0.02, 0.1 / height, 0.96, 1.0 - 0.6 / height))
    ax.set_axis_off()
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=9)
    ax.set_title(
        f"text prediction: mean word F1 = {np.mean(scores):.2f} over {len(scores)} samples"
    )
    return fig
