"""Pure figure functions for the workflow's figures stage: arrays and tables in, Figure out.

Each function validates its inputs (a bad shape or a missing column raises
``ValueError`` naming what was expected and what came), draws on an Agg-backed
:class:`~matplotlib.figure.Figure` that ``pyplot`` never sees, and returns it.
:func:`save_figure` writes a figure atomically and releases it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from modalmerge.evaluation.metrics import fc_matrix_similarity
from modalmerge.io import atomic_path
from modalmerge.viz._common import format_r, new_figure, pearson_r, set_tick_labels, to_numpy
from modalmerge.viz.summary_chart import summary_chart  # noqa: F401  (re-exported)


def peak_world_coordinates(volume: np.ndarray, affine: np.ndarray) -> tuple[float, float, float]:
    """World coordinates (mm) of the voxel where ``volume`` (3-D) is largest.

    Parameters
    ----------
    volume : ndarray, shape (D, H, W)
        A map, e.g. attention projected onto the image grid.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine of ``volume``.

    Returns
    -------
    tuple of float
        ``(x, y, z)`` in the affine's world units (mm for NIfTI).
    """
    voxel = np.unravel_index(int(np.argmax(volume)), volume.shape)
    world = np.asarray(affine, dtype=np.float64) @ np.array([*voxel, 1.0])
    return float(world[0]), float(world[1]), float(world[2])


def attention_on_anatomy(
    attention_volume: np.ndarray,
    anatomy: np.ndarray,
    affine: np.ndarray,
    title: str = "attention",
) -> Figure:
    """Overlay an attention map on the anatomy: three orthogonal cuts through its peak.

    Drawn with :func:`nilearn.plotting.plot_stat_map` (anatomy as ``bg_img``,
    ``display_mode="ortho"``); the cuts pass through the voxel of largest attention.

    Parameters
    ----------
    attention_volume : ndarray, shape (D, H, W)
        Non-negative attention on the anatomy's voxel grid (e.g. from
        :func:`modalmerge.viz.attention.project_to_image`).
    anatomy : ndarray, shape (D, H, W)
        The structural image on the same grid.
    affine : ndarray, shape (4, 4)
        Voxel-to-world affine shared by both arrays (mm).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Three cut axes, nilearn's frame axes and a colour bar.

    Raises
    ------
    ValueError
        When the arrays are not 3-D, differ in shape, hold NaN, or the affine is not 4 x 4.
    """
    from nilearn import plotting  # heavy import, only where needed

    att = to_numpy(attention_volume, "attention_volume")
    anat = to_numpy(anatomy, "anatomy")
    aff = to_numpy(affine, "affine")
    if att.ndim != 3 or anat.ndim != 3:
        raise ValueError(
            f"attention_volume and anatomy must be 3-D (D, H, W), got {att.shape} and {anat.shape}"
        )
    if att.shape != anat.shape:
        raise ValueError(
            f"attention_volume {att.shape} and anatomy {anat.shape} must share one voxel grid"
        )
    if aff.shape != (4, 4):
        raise ValueError(f"affine must be 4 x 4, got shape {aff.shape}")
    fig = new_figure(9.0, 3.5)
    vmax = float(att.max()) if att.max() > 0 else 1.0
    plotting.plot_stat_map(
        nib.Nifti1Image(att.astype(np.float32), aff),
        bg_img=nib.Nifti1Image(anat.astype(np.float32), aff),
        display_mode="ortho",
        cut_coords=peak_world_coordinates(att, aff),
        figure=fig,
        title=title,
        cmap="hot",
        vmin=0.0,
        vmax=vmax,
        # show the anatomy where attention is below its median (a map of softmax
        # weights is positive everywhere: without a threshold it hides the brain)
        threshold=float(np.median(att)),
        transparency=0.8,
        black_bg=True,
        dim=0,
    )
    return fig


def _square_matrix(m, name: str) -> np.ndarray:
    arr = to_numpy(m, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square (R, R) matrix, got shape {arr.shape}")
    return arr


def profile_matrices(
    true: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    row_labels: Sequence[str],
    title: str = "connectivity profiles of held-out regions",
    row_r: Mapping[str, float] | None = None,
) -> Figure:
    """True and predicted profiles (one row per held-out region) side by side.

    Parameters
    ----------
    true : ndarray, shape (n_rows, n_columns)
        E.g. each held-out region's row of the FC matrix.
    predictions : dict of str to ndarray, shape (n_rows, n_columns)
        Predictors by name (model, ridge, ...), drawn in the given order.
    row_labels : sequence of str
        One name per row.
    row_r : dict of str to float, optional
        Each prediction's score for its panel title (e.g. the evaluate stage's
        row r without self-connections); by default the mean row-wise Pearson r
        over all columns.

    Returns
    -------
    matplotlib.figure.Figure
        ``1 + len(predictions)`` matrix panels on one colour scale, titled with
        each prediction's mean row-wise Pearson r.

    Raises
    ------
    ValueError
        When a prediction differs from ``true`` in shape or ``row_labels`` in length.
    """
    from nilearn import plotting

    true_m = to_numpy(true, "true")
    if true_m.ndim != 2:
        raise ValueError(f"true must be (n_rows, n_columns), got shape {true_m.shape}")
    if len(row_labels) != true_m.shape[0]:
        raise ValueError(f"row_labels has {len(row_labels)} names for {true_m.shape[0]} rows")
    panels = [("true", true_m, None)]
    for name, values in predictions.items():
        pred = to_numpy(values, name)
        if pred.shape != true_m.shape:
            raise ValueError(f"{name} has shape {pred.shape}, true has {true_m.shape}")
        if row_r is not None and name in row_r:
            r = row_r[name]
        else:
            r = np.nanmean([pearson_r(p, t) for p, t in zip(pred, true_m, strict=True)])
        panels.append((name, pred, float(r)))
    lo, hi = np.percentile(np.concatenate([m.ravel() for _, m, _ in panels]), [1, 99])
    fig = new_figure(3.4 * len(panels) + 1.0, 4.2, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, matrix, r) in zip(axes, panels, strict=True):
        plotting.plot_matrix(
            matrix, axes=ax, vmin=lo, vmax=hi, cmap="RdBu_r", colorbar=ax is axes[-1]
        )
        ax.set_aspect("auto")  # rows are few, columns many
        ax.set_title(name if r is None else f"{name} (row {format_r(r)})", fontsize=9)
        ax.set_xlabel("region")
        ax.set_yticks(range(len(row_labels)))
        ax.set_yticklabels(row_labels if len(row_labels) <= 30 else [], fontsize=5)
    fig.suptitle(title)
    return fig


def connectivity_comparison(
    true_fc: np.ndarray, pred_fc: np.ndarray, labels: Sequence[str] | None = None
) -> Figure:
    """True and predicted functional connectivity side by side on one colour scale.

    Parameters
    ----------
    true_fc, pred_fc : ndarray, shape (R, R)
        Connectivity matrices (e.g. Pearson correlations between ROI time series).
    labels : sequence of str, optional
        ROI names, length R, used as tick labels.

    Returns
    -------
    matplotlib.figure.Figure
        Two matrix axes and one shared colour bar; the title gives the FC
        similarity r (Pearson r of the upper triangles).

    Raises
    ------
    ValueError
        When a matrix is not square, the two differ in shape, or ``labels`` has the wrong length.
    """
    from nilearn import plotting

    true_m, pred_m = _square_matrix(true_fc, "true_fc"), _square_matrix(pred_fc, "pred_fc")
    if true_m.shape != pred_m.shape:
        raise ValueError(f"true_fc {true_m.shape} and pred_fc {pred_m.shape} differ in shape")
    n = true_m.shape[0]
    # FC similarity as scored (evaluation.metrics); undefined ("n/a") below three ROIs
    r = fc_matrix_similarity(pred_m, true_m) if n >= 3 else float("nan")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels has {len(labels)} names for {n} ROIs")
    off_diag = ~np.eye(n, dtype=bool)
    both = np.concatenate([true_m[off_diag], pred_m[off_diag]]) if n > 1 else true_m.ravel()
    vmax = float(np.max(np.abs(both))) or 1.0
    fig = new_figure(11.0, 5.0, layout="constrained")
    axes = fig.subplots(1, 2)
    image = None
    for ax, mat, name in zip(axes, (true_m, pred_m), ("true", "predicted"), strict=True):
        image = plotting.plot_matrix(
            mat,
            axes=ax,
            labels=list(labels) if labels is not None else None,
            colorbar=False,
            vmin=-vmax,
            vmax=vmax,
            title=f"{name} connectivity",
            auto_fit=False,
        )
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="connectivity")
    fig.suptitle(f"FC similarity {format_r(r)}")
    return fig


def learning_curves(history: pd.DataFrame) -> Figure:
    """Training and validation loss per epoch, with the best validation epoch marked.

    Parameters
    ----------
    history : pandas.DataFrame
        Columns ``epoch``, ``train_loss``, ``val_loss`` (one row per epoch, as in
        ``models/<exp>/history.csv``); with a ``member`` column (a ``train.ensemble``)
        each member's curves and best epoch, one line style per member; other columns
        are ignored.

    Returns
    -------
    matplotlib.figure.Figure
        One axis with the two curves (per member for an ensemble).

    Raises
    ------
    ValueError
        When a column is missing or the table is empty.
    """
    missing = {"epoch", "train_loss", "val_loss"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks column(s) {sorted(missing)}; has {list(history.columns)}")
    if len(history) == 0:
        raise ValueError("history is empty: no epoch was recorded")
    fig = new_figure(6.0, 4.0, layout="constrained")
    ax = fig.subplots()
    if "member" in history:
        _member_curves(ax, history)
        return fig
    epoch = history["epoch"].to_numpy()
    ax.plot(epoch, history["train_loss"].to_numpy(dtype=float), marker="o", ms=3, label="train")
    val = history["val_loss"].to_numpy(dtype=float)
    ax.plot(epoch, val, marker="o", ms=3, label="validation")
    if np.isfinite(val).any():
        best = int(np.nanargmin(val))
        ax.axvline(epoch[best], color="grey", ls="--", lw=1, label=f"best epoch {epoch[best]}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("learning curves")
    ax.legend()
    return fig


def _member_curves(ax, history: pd.DataFrame) -> None:
    """An ensemble's learning curves: train (C0) and validation (C1) per member, one line
    style each, and each member's best validation epoch as a star."""
    styles = ("-", "--", ":", "-.")
    for k, (member, part) in enumerate(history.groupby("member", sort=True)):
        epoch, ls = part["epoch"].to_numpy(), styles[k % len(styles)]
        ax.plot(epoch, part["train_loss"].to_numpy(dtype=float), ls=ls, color="C0", lw=1,
                label=f"train, member {member}")  # fmt: skip
        val = part["val_loss"].to_numpy(dtype=float)
        ax.plot(epoch, val, ls=ls, color="C1", lw=1, label=f"validation, member {member}")
        if np.isfinite(val).any():
            best = int(np.nanargmin(val))
            ax.plot(epoch[best], val[best], marker="*", ms=10, color="C1", ls="none")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"learning curves of {history['member'].nunique()} ensemble members (*: best)")
    ax.legend(fontsize="small", ncol=2)


def roi_attention_matrix(
    attention: np.ndarray,
    target_labels: Sequence[str],
    condition_labels: Sequence[str],
    title: str = "attention",
) -> Figure:
    """Heatmap of attention weights, target queries (rows) by condition tokens (columns).

    Parameters
    ----------
    attention : ndarray, shape (n_target, n_condition)
        Attention weights (e.g. averaged over heads and samples).
    target_labels : sequence of str, length n_target
        Row names (e.g. target ROI names).
    condition_labels : sequence of str, length n_condition
        Column names (e.g. condition ROI names, words, columns).
    title : str
        Axis title.

    Returns
    -------
    matplotlib.figure.Figure
        The heatmap axis and its colour bar.

    Raises
    ------
    ValueError
        When ``attention`` is not 2-D or a label list has the wrong length.
    """
    att = to_numpy(attention, "attention")
    if att.ndim != 2:
        raise ValueError(f"attention must be 2-D (n_target, n_condition), got shape {att.shape}")
    if len(target_labels) != att.shape[0]:
        raise ValueError(f"{len(target_labels)} target_labels for {att.shape[0]} target rows")
    if len(condition_labels) != att.shape[1]:
        raise ValueError(
            f"{len(condition_labels)} condition_labels for {att.shape[1]} condition columns"
        )
    fig = new_figure(
        min(2.0 + 0.25 * att.shape[1], 16.0),
        min(1.5 + 0.25 * att.shape[0], 12.0),
        layout="constrained",
    )
    ax = fig.subplots()
    image = ax.imshow(att, aspect="auto", cmap="viridis", interpolation="nearest")
    set_tick_labels(ax, list(condition_labels), "x")
    set_tick_labels(ax, list(target_labels), "y")
    ax.set_xlabel("condition token")
    ax.set_ylabel("target query")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="attention weight")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix) and release it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to write; it is closed afterwards (also when writing fails).
    path : path-like
        Target file, e.g. ``figures/<exp>/attention.png``; parent folders are created.
    dpi : int
        Resolution in dots per inch.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    ValueError
        When ``path`` has no file suffix to take the format from.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    try:
        if not fmt:
            raise ValueError(f"{path}: no suffix to choose the image format from (e.g. .png)")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
    finally:
        plt.close(fig)  # frees a pyplot-managed figure; a no-op for our bare Agg figures
        fig.clear()
    return path
