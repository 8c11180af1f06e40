"""Attention over space-time tokens drawn back onto the brain: orthogonal slices per time point.

The ``spatiotemporal`` encoder's tokens are 3D patches of the volumes of a window
(``space_time`` provenance: grid ``(t, d, h, w)``, cell size ``(volumes, p, p, p)``).
:func:`space_time_maps` puts one query's attention back on the voxels of every volume
(each voxel takes its patch's weight: the patches are what the model attended to, so
no interpolation invents detail), and :func:`plot_space_time_attention` draws, for a
few time points, three orthogonal slices through the attention peak over the volume.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modalmerge.viz._common import new_figure, orthogonal_slice, to_numpy
from modalmerge.viz.figures import save_figure

__all__ = ["plot_space_time_attention", "space_time_maps"]


def space_time_maps(weights, provenance) -> np.ndarray:
    """One query's weights over ``space_time`` tokens -> ``(T, D, H, W)`` on the input grid.

    Parameters
    ----------
    weights : array, shape (n_tokens,)
        Attention of one target query (or a mean over queries) over the tokens.
    provenance : TokenProvenance
        The encoder's ``space_time`` provenance (grid, cell size, input shape).
    """
    w = to_numpy(weights, "weights").ravel()
    if provenance.kind != "space_time" or provenance.cell_size is None:
        raise ValueError(f"space_time provenance needed, got {provenance.kind!r}")
    if w.size != provenance.n_tokens:
        raise ValueError(f"{w.size} weights for {provenance.n_tokens} space-time tokens")
    grid = w.reshape(provenance.grid_shape)
    for axis, size in enumerate(provenance.cell_size):
        grid = np.repeat(grid, size, axis=axis)  # each voxel: its patch's weight
    return grid[tuple(slice(0, n) for n in provenance.input_shape)]


def plot_space_time_attention(
    weights,
    provenance,
    window,
    times: Sequence[int] | None = None,
    path: str | os.PathLike | None = None,
    title: str = "",
    dpi: int = 120,
):
    """Attention on orthogonal slices for a few time points of a 4D window.

    Parameters
    ----------
    weights : array, shape (n_tokens,)
        One query's attention over the window's space-time tokens.
    provenance : TokenProvenance
        ``space_time`` provenance of those tokens.
    window : array, shape (T, D, H, W)
        The BOLD window, drawn in grey beneath the attention.
    times : sequence of int, optional
        Volumes to draw (default: four spread over the window).
    path : path-like, optional
        Where to save the figure (atomically).

    Returns
    -------
    Figure, or the written Path when ``path`` is given (the figure is then released).
    """
    maps = space_time_maps(weights, provenance)
    window = to_numpy(window, "window")
    if window.shape != maps.shape:
        raise ValueError(f"window shape {window.shape} differs from the tokens' {maps.shape}")
    n_time = window.shape[0]
    times = list(np.linspace(0, n_time - 1, min(4, n_time)).round().astype(int) if times is None
                 else times)  # fmt: skip
    if any(not 0 <= t < n_time for t in times):
        raise ValueError(f"times {times} outside the window's {n_time} volumes")
    fig = new_figure(7.5, 2.2 * len(times) + 0.4, layout="constrained")
    axes = fig.subplots(len(times), 3, squeeze=False)
    vmin, vmax = float(maps.min()), float(maps.max())  # near-uniform weights stay visible
    peak = np.unravel_index(int(np.argmax(maps.sum(axis=0))), maps.shape[1:])  # over time
    for row, t in enumerate(times):
        for col, name in enumerate(("sagittal (i)", "coronal (j)", "axial (k)")):
            ax = axes[row, col]
            ax.imshow(orthogonal_slice(window[t], col, peak[col]), cmap="gray", origin="lower")
            image = ax.imshow(
                orthogonal_slice(maps[t], col, peak[col]), cmap="hot", origin="lower",
                alpha=0.55, vmin=vmin, vmax=max(vmax, vmin + 1e-12),
            )  # fmt: skip
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{name} = {peak[col]}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"volume {t}", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig if path is None else save_figure(fig, Path(path), dpi=dpi)
