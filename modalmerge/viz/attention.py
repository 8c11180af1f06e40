"""Attention weights to pictures: head selection, query groups, projection onto an image.

Pure array functions used by :meth:`modalmerge.viz.Visualizer.plot_attention`;
they hold no model code, so they are tested on planted arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from modalmerge.viz._common import to_numpy

QuerySelection = int | slice | range | Sequence[int]


def select_heads(attention, head: int | None = None) -> np.ndarray:
    """Reduce one sample's attention to ``(n_target, n_condition)``.

    Parameters
    ----------
    attention : array or tensor, shape (1, heads, n_target, n_condition) or (heads, n_target, n_condition)
        Cross-attention weights of one sample.
    head : int, optional
        The head to keep; ``None`` averages all heads.

    Raises
    ------
    ValueError
        When the shape is not as above, the batch holds several samples, or
        ``head`` is out of range.
    """
    att = to_numpy(attention, "attention")
    if att.ndim == 4:
        if att.shape[0] != 1:
            raise ValueError(f"attention holds {att.shape[0]} samples; pass one sample")
        att = att[0]
    if att.ndim != 3:
        raise ValueError(
            f"attention must be (B, heads, n_target, n_condition) or (heads, n_target, n_condition), got {att.shape}"
        )
    if head is None:
        return att.mean(axis=0)
    if not -att.shape[0] <= head < att.shape[0]:
        raise ValueError(f"head {head} out of range for {att.shape[0]} heads")
    return att[head]


def query_groups(
    target_queries: QuerySelection | Iterable[QuerySelection] | None,
    n_target: int,
    default_count: int | None = None,
    target_labels: Sequence[str] | None = None,
) -> list[tuple[str, np.ndarray]]:
    """Turn a selection of target queries into named groups of query indices.

    Parameters
    ----------
    target_queries : int, slice, range, sequence of int, list of those, or None
        An int is one query (e.g. an ROI index); a slice or range is one group
        whose attention is averaged (e.g. a time window); a list of ints or ranges
        gives one group per item. ``None`` selects ``default_count`` evenly spaced
        queries, or every query when ``default_count`` is None.
    n_target : int
        Number of target queries of the model.
    default_count : int, optional
        How many queries ``None`` selects.
    target_labels : sequence of str, optional
        Names of all ``n_target`` queries, used to name single-query groups.

    Returns
    -------
    list of (str, ndarray of int)
        Group name and the query indices it averages.

    Raises
    ------
    ValueError
        When an index is out of range or a group is empty.
    """
    if target_labels is not None and len(target_labels) != n_target:
        raise ValueError(f"{len(target_labels)} target_labels for {n_target} target queries")

    def name_of(i: int) -> str:
        return str(target_labels[i]) if target_labels is not None else f"query {i}"

    if target_queries is None:
        count = n_target if default_count is None else min(default_count, n_target)
        picks = np.unique(np.linspace(0, n_target - 1, count).round().astype(int))
        return [(name_of(int(i)), np.array([i])) for i in picks]
    if isinstance(target_queries, int | np.integer | slice | range):
        items: list = [target_queries]
    else:
        items = list(target_queries)
    groups = []
    for item in items:
        if isinstance(item, slice):
            idx = np.arange(n_target)[item]
        elif isinstance(item, int | np.integer):
            idx = np.array([int(item)])
        else:
            idx = np.asarray(list(item), dtype=int)
        if idx.size == 0:
            raise ValueError(f"target query selection {item!r} selects nothing")
        if idx.min() < 0 or idx.max() >= n_target:
            raise ValueError(f"target query selection {item!r} out of range for {n_target} queries")
        if idx.size == 1:
            name = name_of(int(idx[0]))
        else:
            name = (
                f"queries {idx[0]}-{idx[-1]}"
                if np.all(np.diff(idx) == 1)
                else f"{idx.size} queries"
            )
        groups.append((name, idx))
    return groups


def project_to_image(weights, grid_shape: Sequence[int], image_shape: Sequence[int]) -> np.ndarray:
    """Put attention over image tokens back on the image grid.

    The weights are laid out on the encoder's feature-map grid (row-major, the
    order in which the encoder flattened it) and upsampled to the image by
    trilinear (3-D) or bilinear (2-D) interpolation.

    Parameters
    ----------
    weights : array, shape (n_condition,)
        Attention of one target query (or group) over the image tokens.
    grid_shape : sequence of int, length 2 or 3
        Feature-map grid of the encoder, ``prod(grid_shape) == n_condition``.
    image_shape : sequence of int, same length as ``grid_shape``
        Spatial shape of the image, (D, H, W) or (H, W).

    Returns
    -------
    ndarray, shape image_shape
        Interpolated attention on the voxel grid.

    Raises
    ------
    ValueError
        When the grid does not hold ``n_condition`` tokens or the dimensionalities differ.
    """
    w = to_numpy(weights, "weights").ravel()
    grid_shape = tuple(int(g) for g in grid_shape)
    image_shape = tuple(int(s) for s in image_shape)
    if len(grid_shape) not in (2, 3) or len(image_shape) != len(grid_shape):
        raise ValueError(
            f"grid_shape {grid_shape} and image_shape {image_shape} must both be 2-D or both 3-D"
        )
    if int(np.prod(grid_shape)) != w.size:
        raise ValueError(
            f"{w.size} condition tokens do not fill the feature grid {grid_shape} "
            f"({int(np.prod(grid_shape))} cells)"
        )
    grid = torch.as_tensor(w.reshape(grid_shape), dtype=torch.float32)[None, None]
    mode = "trilinear" if len(grid_shape) == 3 else "bilinear"
    up = F.interpolate(grid, size=image_shape, mode=mode, align_corners=False)
    return up[0, 0].numpy().astype(np.float64)


def attention_peak(volume: np.ndarray) -> tuple[int, ...]:
    """Array index of the largest value of ``volume`` (the slice the figure cuts through)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(volume)), volume.shape))
