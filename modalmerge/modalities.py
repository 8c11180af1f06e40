"""The modalities, named once: what a model conditions on or predicts, and what the
shards also store per subject. Lightweight (no torch, no h5py), so the data and
model layers both check names with the one :func:`check_modality`."""

from __future__ import annotations

from collections.abc import Sequence

#: What a model encodes or decodes (``MultiModalModel(condition_type=, target_type=)``).
MODALITIES = ("image", "time_series", "text", "tabular", "graph", "point_cloud", "volume_series")
#: ``volume_series``: windows of preprocessed BOLD on the (downsampled) atlas grid, per sample
#: ``(T, D, H, W)``; ``task_condition``: the task condition code of each volume of a window,
#: ``(T,)`` (read as a table of T categorical columns: the brain-decoding target). Both are
#: in the shards only when ``shard.volume_series.enabled``.
#: What the shards hold and ``ShardDataset`` / ``load_split_arrays`` can read.
SHARD_MODALITIES = (
    "image",
    "time_series",
    "tabular",
    "text",
    "structural_features",
    "connectivity",
    "graph",
    "point_cloud",
    "volume_series",
    "task_condition",
)


def check_modality(name: str, role: str = "modality", allowed: Sequence[str] = MODALITIES) -> str:
    """Return ``name``, or raise ValueError naming ``role`` and the ``allowed`` modalities."""
    if name not in allowed:
        raise ValueError(f"unknown {role} {name!r}; expected one of {list(allowed)}")
    return name
