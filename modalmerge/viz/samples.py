"""Figures of a generative model's samples: samples beside the truth, the denoising
trajectory of one window, and the FC of samples against the true and group FC."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from modalmerge.data.parcellation.connectivity import connectivity
from modalmerge.viz._common import new_figure


def samples_beside_truth(
    samples: np.ndarray,
    truth: np.ndarray,
    rois: Sequence[int] = (0, 1, 2, 3),
    roi_labels: Sequence[str] | None = None,
    tr: float = 1.0,
    title: str = "",
) -> Figure:
    """One held-out window: each sample ``(S, T, R)`` thin, their mean dashed, the truth bold.

    One row per ROI in ``rois``; time in seconds (``tr`` per volume).
    """
    samples, truth = np.asarray(samples), np.asarray(truth)
    rois = [r for r in rois if r < truth.shape[-1]]
    time = np.arange(truth.shape[0]) * tr
    fig = new_figure(9.0, 1.9 * len(rois) + 0.6, layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(rois), 1, sharex=True))
    for ax, r in zip(axes, rois, strict=True):
        for s in samples[:, :, r]:
            ax.plot(time, s, color="tab:blue", alpha=0.35, lw=0.8)
        ax.plot(time, samples[:, :, r].mean(axis=0), "--", color="tab:blue", lw=1.4)
        ax.plot(time, truth[:, r], color="black", lw=1.8)
        ax.set_ylabel(roi_labels[r] if roi_labels is not None else f"ROI {r}", fontsize=8)
    axes[-1].set_xlabel("time in the window (s)")
    axes[0].set_title(
        title or f"{len(samples)} samples (blue; dashed: their mean) and the truth (black)"
    )
    return fig


def denoising_trajectory(
    trajectory: np.ndarray, truth: np.ndarray, roi: int = 0, tr: float = 1.0, title: str = ""
) -> Figure:
    """The predicted clean window of one ROI after each DDIM step ``(steps, T, R)``:
    early steps pale, the last dark, the truth in black."""
    trajectory, truth = np.asarray(trajectory), np.asarray(truth)
    time = np.arange(truth.shape[0]) * tr
    fig = new_figure(9.0, 3.6, layout="constrained")
    ax = fig.subplots()
    n = len(trajectory)
    colors = [(0.1, 0.3, 0.8, 0.15 + 0.85 * (i + 1) / n) for i in range(n)]
    for i, (step, color) in enumerate(zip(trajectory, colors, strict=True)):
        ax.plot(time, step[:, roi], color=color, lw=1.0, label="last step" if i == n - 1 else None)
    ax.plot(time, truth[:, roi], color="black", lw=1.8, label="truth")
    ax.set_xlabel("time in the window (s)")
    ax.set_ylabel(f"ROI {roi}")
    ax.legend(fontsize=8)
    ax.set_title(title or f"denoising trajectory: predicted window after each of {n} DDIM steps")
    return fig


def sample_fc(
    samples: np.ndarray, truth: np.ndarray, group_fc: np.ndarray | None = None, title: str = ""
) -> Figure:
    """FC of one sample run, of the true run, and the group FC, on one colour scale.

    ``samples`` ``(S, T, R)`` (the first is drawn), ``truth`` ``(T, R)``; the titles give
    the correlation of each matrix's upper triangle with the true FC's.
    """
    true_fc = connectivity(np.asarray(truth))
    mats = [("true FC", true_fc), ("one sample's FC", connectivity(np.asarray(samples)[0]))]
    if group_fc is not None:
        mats.append(("group FC (training)", np.asarray(group_fc)))
    iu = np.triu_indices(true_fc.shape[0], k=1)
    fig = new_figure(4.2 * len(mats), 4.2, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(mats)))
    image = None
    for ax, (name, m) in zip(axes, mats, strict=True):
        m = np.array(m, dtype=float)
        np.fill_diagonal(m, 0.0)
        r = np.corrcoef(m[iu], true_fc[iu])[0, 1]
        image = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(f"{name}\nr with true FC = {r:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def volume_windows_beside_truth(
    rows: dict[str, np.ndarray], mask: np.ndarray, n_times: int = 5, title: str = ""
) -> Figure:
    """One held-out 4D window on its middle axial slice at ``n_times`` volumes spread over
    the window: one row per entry of ``rows`` (name -> window ``(T, D, H, W)``: the truth,
    the group mean, the prediction, samples), voxels outside ``mask`` ``(D, H, W)`` blank,
    one colour scale (the truth's in-brain range) for every panel."""
    names = list(rows)
    windows = [np.asarray(rows[n], dtype=float) for n in names]
    n_volumes, depth = windows[0].shape[0], windows[0].shape[-1]
    times = np.unique(np.linspace(0, n_volumes - 1, min(n_times, n_volumes)).round().astype(int))
    z = depth // 2
    limit = float(np.abs(windows[0][:, mask]).max()) or 1.0
    fig = new_figure(1.9 * len(times) + 1.2, 1.9 * len(names) + 0.6, layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names), len(times), squeeze=False))
    image = None
    for i, (name, window) in enumerate(zip(names, windows, strict=True)):
        for j, t in enumerate(times):
            ax = axes[i, j]
            shown = np.where(mask, window[t], np.nan)[:, :, z].T
            image = ax.imshow(shown, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"volume {t}", fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7)
    fig.suptitle(title or f"axial slice z = {z} over the window")
    return fig


#: the predictions.npz arrays :func:`image_samples_beside_truth` draws, in its argument order
IMAGE_SAMPLES = ("samples", "sample_target", "sample_subjects")


def image_samples_beside_truth(
    samples: np.ndarray,
    truth: np.ndarray,
    subjects: Sequence[str] | None = None,
    n_shown: int = 4,
    max_rows: int = 8,
) -> Figure:
    """The first ``max_rows`` held-out subjects, one row each: the true image, the mean of its samples and the
    first ``n_shown`` samples, on the central slice of the last axis (first channel), one
    grey scale per row (the truth's range).

    ``samples`` ``(n, S, C, *spatial)`` and ``truth`` ``(n, C, *spatial)`` (2-D or 3-D).
    """
    samples, truth = np.asarray(samples), np.asarray(truth)
    if samples.shape[0] != truth.shape[0] or samples.shape[2:] != truth.shape[1:]:
        raise ValueError(f"samples {samples.shape} do not match the truth {truth.shape}")
    samples, truth = samples[:max_rows], truth[:max_rows]

    def plane(image):  # (C, *spatial) -> the first channel's central slice, rows = 2nd axis
        x = image[0]
        return (x[..., x.shape[-1] // 2] if x.ndim == 3 else x).T

    shown = min(n_shown, samples.shape[1])
    columns = ["truth", f"mean of {samples.shape[1]}"] + [f"sample {k + 1}" for k in range(shown)]
    fig = new_figure(1.6 * len(columns), 1.7 * len(truth) + 0.4, layout="constrained")
    axes = fig.subplots(len(truth), len(columns), squeeze=False)
    for i, row in enumerate(axes):
        images = [truth[i], samples[i].mean(axis=0), *samples[i, :shown]]
        lo, hi = float(truth[i].min()), float(truth[i].max())
        for j, (ax, image) in enumerate(zip(row, images, strict=True)):
            ax.imshow(plane(image), cmap="gray", vmin=lo, vmax=hi, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=8)
        if subjects is not None:
            row[0].set_ylabel(str(subjects[i]), fontsize=8)
    return fig
