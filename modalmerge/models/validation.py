"""Input checks for the model: say what was expected and what came, before torch does."""

from __future__ import annotations

import torch

#: |A - A^T| allowed in a graph adjacency, relative to max |A| (float32 round-off)
SYMMETRY_TOLERANCE = 1e-5


def check_batch(
    x,
    modality: str,
    sample_shape: tuple[int, ...],
    role: str,
    vocab_size: int | None = None,
    n_numeric: int = 0,
    categorical_cardinalities: tuple[int, ...] = (),
    allow_shorter: bool = False,
) -> None:
    """Raise ValueError unless ``x`` is a valid batch of ``modality``.

    Parameters
    ----------
    x : Tensor
        The batch: ``(B, *sample_shape)``.
    modality : str
        ``image``, ``time_series``, ``tabular``, ``graph``, ``point_cloud``,
        ``volume_series`` (floating point, finite; a graph's adjacency symmetric; a cloud
        is ``(N, 3 + F)``) or ``text`` (integer ids in ``[0, vocab_size)``).
    sample_shape : tuple of int
        Expected per-sample shape.
    role : str
        ``"condition"`` or ``"target"``, used in messages.
    n_numeric, categorical_cardinalities
        Tabular layout: trailing columns must hold integer codes ``< card``
        (negative codes mark missing values).
    allow_shorter : bool
        Text only: accept sequences shorter than ``sample_shape[0]``.
    """
    # Over 60 lines: one check per modality's tensor layout, each naming the modality and the shape.
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{role} ({modality}) must be a torch.Tensor, got {type(x).__name__}")
    expected = ("B", *sample_shape)
    if x.ndim != len(expected):
        raise ValueError(
            f"{role} ({modality}) must have shape {_fmt(expected)}, got {tuple(x.shape)} "
            f"({x.ndim} axes instead of {len(expected)})"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{role} ({modality}) batch is empty: shape {tuple(x.shape)}")
    got = tuple(x.shape[1:])
    if modality == "text" and allow_shorter:
        if got[0] > sample_shape[0] or got[0] < 1:
            raise ValueError(
                f"{role} (text) must have shape (B, L) with 1 <= L <= {sample_shape[0]}, "
                f"got {tuple(x.shape)}"
            )
    elif modality == "point_cloud" and got != tuple(sample_shape):
        n, width = sample_shape
        problem = (
            f"{got[0]} points where the model takes {n} (too few)"
            if got[0] < n
            else f"{got[0]} points where the model takes {n}"
            if got[0] != n
            else f"{got[1] - 3} features per point where the model takes {width - 3}"
        )
        raise ValueError(
            f"{role} (point_cloud) must have shape (B, {n}, 3 + {width - 3}) (xyz then "
            f"features), got {tuple(x.shape)}: {problem}"
        )
    elif got != tuple(sample_shape):
        raise ValueError(
            f"{role} ({modality}) must have shape {_fmt(expected)}, got {tuple(x.shape)}"
        )

    if modality == "text":
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(
                f"{role} (text) must hold integer token ids (torch.long), got dtype {x.dtype}"
            )
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or (vocab_size is not None and hi >= vocab_size):
            raise ValueError(
                f"{role} (text) ids must lie in [0, {vocab_size}), got values in [{lo}, {hi}]"
            )
        return
    if not x.dtype.is_floating_point:
        raise ValueError(f"{role} ({modality}) must be floating point, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{role} ({modality}) holds {n_bad} NaN or infinite values")
    if modality == "graph":
        check_graph_symmetry(x, role)
    if modality == "tabular" and categorical_cardinalities:
        codes = x[:, n_numeric:]
        if not bool((codes == codes.round()).all()):
            raise ValueError(
                f"{role} (tabular) categorical columns {n_numeric}.. must hold integer codes"
            )
        cards = torch.tensor(categorical_cardinalities, device=x.device, dtype=codes.dtype)
        bad = codes >= cards  # negative codes mark missing values
        if bool(bad.any()):
            col = int(bad.any(0).nonzero()[0])
            raise ValueError(
                f"{role} (tabular) column {n_numeric + col} holds codes >= its "
                f"{categorical_cardinalities[col]} categories"
            )


def check_graph_symmetry(x: torch.Tensor, role: str) -> None:
    """Raise ValueError unless the adjacency part of graphs ``(B, N, F + N)`` is symmetric."""
    n = x.shape[-2]
    adjacency = x[..., x.shape[-1] - n :]
    gap = (adjacency - adjacency.transpose(-1, -2)).abs().amax(dim=(-1, -2))  # (B,)
    scale = adjacency.abs().amax(dim=(-1, -2)).clamp_min(1.0)
    bad = gap > SYMMETRY_TOLERANCE * scale
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"{role} (graph) adjacency (the last {n} columns of each (N, F + N) sample) "
            f"is not symmetric: sample {i} has max |A - A^T| = {float(gap[i]):.3g}"
        )


def check_time_offset(time_offset, batch_size: int) -> None:
    """Raise ValueError unless ``time_offset`` is None or non-negative integers of shape (B,)."""
    if time_offset is None:
        return
    if not isinstance(time_offset, torch.Tensor):
        raise ValueError(f"time_offset must be a torch.Tensor, got {type(time_offset).__name__}")
    if time_offset.dtype.is_floating_point or time_offset.dtype == torch.bool:
        raise ValueError(f"time_offset must be integer (torch.long), got dtype {time_offset.dtype}")
    if tuple(time_offset.shape) != (batch_size,):
        raise ValueError(
            f"time_offset must have shape ({batch_size},), got {tuple(time_offset.shape)}"
        )
    if bool((time_offset < 0).any()):
        raise ValueError("time_offset must be >= 0 (window start in samples)")


def _fmt(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"
