"""The evaluate stage's training split as a stream (issue 14: memory flat in cohort size).

When the training windows of a time-series target would hold more than
``evaluate.in_memory_mb`` (:class:`~modalmerge.settings.EvaluateSettings`, default 32 MB,
as read, float32), evaluate does not load them: the baselines are
fitted by passes over the shards, one subject at a time
(:mod:`modalmerge.evaluation.streaming`, :mod:`modalmerge.evaluation.time_series_stream`).
Below it, the training split is loaded and fitted in memory as before, so the default
workflow's metrics stay byte-identical (the streaming ridge agrees with the in-memory one
to rounding, not to the last bit). A generative model (its sample scores read the training
windows) and other targets keep the in-memory path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from modalmerge.data.shards.dataset import collate_samples
from modalmerge.data.shards.split_arrays import load_split_arrays, read_manifest
from modalmerge.evaluation.scoring import condition_features
from modalmerge.evaluation.streaming import SubjectWindows, TrainStream, subject_groups
from modalmerge.io import InputError
from modalmerge.stages.common import experiment_dataset

__all__ = ["train_bytes", "train_stream"]


def train_bytes(shard_dir, experiment, tokenizer) -> int:
    """Bytes of the training split's conditions and targets as ``collect_split`` holds them."""
    dataset = experiment_dataset(shard_dir, "train", experiment, tokenizer)
    try:
        n = len(dataset)
        if n == 0:
            return 0
        item = dataset[0]
        per_sample = sum(
            item[key].numel() * item[key].element_size() for key in ("condition", "target")
        )
    finally:
        dataset.close()
    return n * per_sample


def _parcel_rows(shard_dir) -> dict[str, np.ndarray] | None:
    """Each training subject's parcel structural features, flattened; None without them."""
    if "structural_features" not in read_manifest(shard_dir).get("shapes", {}):
        return None
    table = load_split_arrays(shard_dir, "train", "structural_features")
    data = np.asarray(table["data"], dtype=np.float64)
    return {s: data[i].reshape(-1) for i, s in enumerate(table["subject"])}


def train_stream(
    shard_dir, experiment, tokenizer, vocab: int | None, parcel: bool, batch_size: int = 32
) -> TrainStream:
    """A function that reads the training split again at each call and yields one
    :class:`~modalmerge.evaluation.streaming.SubjectWindows` per subject (in shard order).

    ``parcel``: attach each subject's parcel structural features (image conditions).

    Raises
    ------
    modalmerge.io.InputError
        The split has no samples, or a subject's samples are not contiguous in the shards.
    """
    parcels = _parcel_rows(shard_dir) if parcel else None

    def batches():
        dataset = experiment_dataset(shard_dir, "train", experiment, tokenizer)
        try:
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_samples
            )
            for batch in loader:
                yield (
                    list(batch["subject"]),
                    np.asarray(batch["window_start"], dtype=np.int64),
                    batch["condition"].numpy(),
                    batch["target"].numpy(),
                )
        finally:
            dataset.close()

    def stream():
        n = 0
        try:
            for subject, starts, condition, target in subject_groups(batches(), "train split"):
                n += 1
                yield SubjectWindows(
                    subject=subject,
                    window_start=starts,
                    features=condition_features(experiment.condition, condition, vocab),
                    target=target,
                    condition=condition,
                    parcel=None if parcels is None else parcels.get(subject),
                )
        except InputError:
            raise
        except ValueError as err:  # rows of a subject not contiguous
            raise InputError(Path(shard_dir), str(err)) from err
        if n == 0:
            raise InputError(Path(shard_dir), "the train split has no samples")

    return stream
