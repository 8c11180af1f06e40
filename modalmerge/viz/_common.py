"""Helpers shared by the figure modules: Agg figures, array checks, slices, correlation.

Every figure in :mod:`modalmerge.viz` is a bare :class:`matplotlib.figure.Figure`
drawn by the Agg canvas. None is registered with ``pyplot``, so nothing is ever
shown, no GUI backend is touched and a figure is freed as soon as the caller drops
it (``plt.get_fignums()`` never grows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Names of the three array axes of a volume, in the order of its shape ``(i, j, k)``.
AXIS_NAMES = ("i", "j", "k")


def new_figure(width: float, height: float, **kwargs) -> Figure:
    """Return an empty Agg-backed Figure of ``width`` x ``height`` inches.

    Extra keyword arguments go to :class:`~matplotlib.figure.Figure`
    (e.g. ``layout="constrained"``).
    """
    fig = Figure(figsize=(max(width, 1.0), max(height, 1.0)), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def to_numpy(x, name: str) -> np.ndarray:
    """Return ``x`` (array-like or torch tensor) as a float64 numpy array.

    Raises
    ------
    ValueError
        When ``x`` cannot be turned into a numeric array or holds non-finite values.
    """
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().float().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}") from err
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def squeeze_leading(arr: np.ndarray, ndims: Sequence[int], name: str) -> np.ndarray:
    """Drop leading singleton axes (batch, channel) until ``arr.ndim`` is in ``ndims``.

    Raises
    ------
    ValueError
        When the array cannot be brought to one of the allowed dimensionalities.
    """
    out = arr
    while out.ndim not in ndims and out.ndim > min(ndims) and out.shape[0] == 1:
        out = out[0]
    if out.ndim not in ndims:
        allowed = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(
            f"{name} must be {allowed} (leading singleton axes allowed), got shape {arr.shape}"
        )
    return out


def orthogonal_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Return the 2-D slice of a 3-D ``volume`` at ``index`` along ``axis``, transposed for display.

    The slice is transposed so that the first remaining array axis runs left to
    right and the second bottom to top (use ``origin="lower"`` in ``imshow``).
    """
    return np.take(volume, index, axis=axis).T


def pearson_r(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays of equal size (flattened); NaN when one is constant."""
    a = np.ravel(a).astype(np.float64)
    b = np.ravel(b).astype(np.float64)
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    if denom == 0:
        return float("nan")
    return float((a * b).sum() / denom)


def format_r(r: float) -> str:
    """Format a correlation for a title: ``"r = 0.83"`` or ``"r = n/a"`` when undefined."""
    return "r = n/a" if not np.isfinite(r) else f"r = {r:.2f}"


def set_tick_labels(ax, labels: Sequence[str], axis: str, max_labels: int = 40) -> None:
    """Label the ticks of a heatmap axis (``"x"`` or ``"y"``), thinning to ``max_labels``."""
    n = len(labels)
    step = max(1, int(np.ceil(n / max_labels)))
    positions = np.arange(0, n, step)
    shown = [str(labels[p]) for p in positions]
    if axis == "x":
        ax.set_xticks(positions)
        ax.set_xticklabels(shown, rotation=90, fontsize="small")
    else:
        ax.set_yticks(positions)
        ax.set_yticklabels(shown, fontsize="small")
