"""The 4D view of the shards (``shard.volume_series``): windows of BOLD volumes and their task
condition.

When ``shard.volume_series.enabled``, every sample (window) of the ROI series also holds
the same window of the subject's cleaned BOLD on the atlas grid, block-mean downsampled
by ``downsample``, and, where the cohort has an events table, the task condition of each
of its volumes::

    /samples/volume_series  (n_samples, window, D, H, W) float32, chunks=(1, window, D, H, W)
    /samples/task_condition (n_samples, window) float32, chunks=(1, window)  (codes; 0 = rest)

Both are per-sample, uncompressed, one sample per chunk, so
:class:`~modalmerge.data.shards.dataset.ShardDataset` serves them from memory maps like
the ROI windows. Row ``i`` is the same window as ``/samples/time_series[i]`` (same
subject, same ``window_start``): a model on the volumes and a baseline on the ROI series
score the very same samples. Storage: ``window x D x H x W x 4`` bytes per sample (the
default 4 mm grid downsampled 2x, 50 volumes: 1.4 MB; overlapping windows are stored
each time, which keeps a sample one contiguous read).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from modalmerge.data.nifti import load_image, same_grid
from modalmerge.data.shards.layout import _contiguous_chunks
from modalmerge.io import InputError, require_file
from modalmerge.settings import ShardSettings

__all__ = ["block_mean", "load_volumes", "read_task_conditions", "volume_conditions", "volume_grid"]

REST = "rest"


def block_mean(volumes: np.ndarray, factor: int) -> np.ndarray:
    """``(T, X, Y, Z)`` -> block means over ``factor``^3 voxels (edges cropped to a multiple)."""
    if factor == 1:
        return volumes
    shape = [n // factor for n in volumes.shape[1:]]
    if min(shape) == 0:
        raise ValueError(
            f"volume_series.downsample {factor} is larger than the grid {volumes.shape[1:]}"
        )
    t = volumes.shape[0]
    cropped = volumes[:, : shape[0] * factor, : shape[1] * factor, : shape[2] * factor]
    blocks = cropped.reshape(t, shape[0], factor, shape[1], factor, shape[2], factor)
    return blocks.mean(axis=(2, 4, 6), dtype=np.float64).astype(np.float32)


def load_volumes(bold: Path, t1: Path, n_rows: int, factor: int) -> np.ndarray:
    """A subject's cleaned BOLD ``(n_rows, D, H, W)`` float32, downsampled by ``factor``.

    The run must be on the T1's (atlas) grid and hold one volume per row of the ROI
    series (censored volumes are absent from both).
    """
    img = load_image(bold, ndim=4, what="preprocessed BOLD")
    anat = load_image(t1, ndim=3, what="preprocessed T1w")
    if not same_grid(img.slicer[..., 0], anat):
        raise InputError(bold, f"preprocessed BOLD is not on the grid of {t1}")
    if img.shape[3] != n_rows:
        raise InputError(
            bold, f"{img.shape[3]} volumes, but its ROI series has {n_rows} rows (same run?)"
        )
    data = np.moveaxis(np.asarray(img.dataobj, dtype=np.float32), 3, 0)  # (T, X, Y, Z)
    return block_mean(data, factor)


def volume_grid(bold: Path, window: int, factor: int) -> list[int]:
    """``[window, D, H, W]`` of a sample of volumes, from the first run's header alone."""
    require_file(bold, "preprocessed BOLD")
    try:
        shape = nib.load(bold).shape
    except Exception as exc:  # noqa: BLE001 - nibabel raises several types for a bad file
        raise InputError(bold, f"not a readable NIfTI image ({exc})") from None
    if len(shape) != 4:
        raise InputError(bold, f"preprocessed BOLD must be 4D, got shape {shape}")
    grid = [int(n) // factor for n in shape[:3]]
    if min(grid) < 1:
        raise InputError(bold, f"volume_series.downsample {factor} exceeds the grid {shape[:3]}")
    return [int(window), *grid]


def read_task_conditions(events: Path) -> list[str]:
    """Condition names of the codes: ``["rest", *sorted trial types]`` (code 0 = rest)."""
    table = _read_events(events)
    return [REST, *sorted(set(table["trial_type"]) - {REST})]


def volume_conditions(
    events: Path, conditions: list[str], tr: float, n_volumes: int, lag_s: float
) -> np.ndarray:
    """Code of the task condition of each original volume ``(n_volumes,)`` int64.

    Volume ``v`` takes the trial type of the event that covers time ``v * tr - lag_s``
    (onset <= time < onset + duration); none: 0 (rest). Overlapping events: the later.
    """
    if not np.isfinite(tr) or tr <= 0:
        raise InputError(events, f"volume task conditions need the TR, got {tr}")
    table = _read_events(events)
    codes = {name: i for i, name in enumerate(conditions)}
    times = np.arange(n_volumes) * tr - lag_s
    out = np.zeros(n_volumes, dtype=np.int64)
    for onset, duration, kind in table[["onset", "duration", "trial_type"]].itertuples(False):
        out[(times >= onset) & (times < onset + duration)] = codes[kind]
    return out


def _read_events(events: Path) -> pd.DataFrame:
    require_file(events, "events table")
    try:
        table = pd.read_csv(events, sep="\t")
    except (OSError, ValueError) as exc:
        raise InputError(events, f"unreadable events table ({exc})") from None
    missing = {"onset", "duration", "trial_type"} - set(table.columns)
    if missing:
        raise InputError(events, f"events table lacks column(s) {sorted(missing)}")
    if table[["onset", "duration"]].isna().any(axis=None):
        raise InputError(events, "events table has missing onsets or durations")
    table["trial_type"] = table["trial_type"].astype(str)
    return table


def _volume_shapes(shapes: dict, volumes: dict | None) -> dict:
    """The manifest's shapes of the 4D view (none when it is off)."""
    if volumes is None:
        return {}
    out = {"volume_series": shapes["volume_series"]}
    if volumes["events"] is not None:
        out["task_condition"] = [shapes["volume_series"][0]]
    return out


def _volume_datasets(samples, volumes: dict | None, total: int, window: int, shapes: dict):
    """Create ``samples/volume_series`` (and ``task_condition``) of one file, or None."""
    if volumes is None:
        return None
    grid = shapes["volume_series"][1:]
    out = {
        "volume_series": samples.create_dataset(
            "volume_series",
            (total, window, *grid),
            np.float32,
            chunks=(1, window, *grid),
            dcpl=_contiguous_chunks(),
        )  # fmt: skip
    }
    if volumes["events"] is not None:
        out["task_condition"] = samples.create_dataset(
            "task_condition", (total, window), np.float32,
            chunks=(1, window), dcpl=_contiguous_chunks(),
        )  # fmt: skip
    return out


def _write_volumes(
    datasets: dict, volumes: dict, i: int, t1: Path, parc: dict, rows: np.ndarray,
    starts: np.ndarray, written: int, params: ShardSettings, shapes: dict,
) -> None:  # fmt: skip
    """Subject ``i``'s windows of volumes (and their task conditions) at rows ``written..``."""
    settings, window = params.volume_series, params.window
    run = load_volumes(Path(volumes["bold"][i]), t1, len(parc["volume_index"]), settings.downsample)
    if list(run.shape[1:]) != shapes["volume_series"][1:]:
        raise InputError(volumes["bold"][i], f"volume grid {run.shape[1:]} differs from others'")
    k = len(starts)
    ds = datasets["volume_series"]
    for j, row in enumerate(rows.tolist()):  # one window at a time: memory of one sample
        ds[written + j] = run[row : row + window]
    if "task_condition" in datasets:
        codes = volume_conditions(
            Path(volumes["events"]), volumes["conditions"], float(parc["tr"]),
            int(parc["n_volumes"]), settings.label_lag_s,
        )  # fmt: skip
        offsets = starts[:, None] + np.arange(window)  # original volumes of each window
        datasets["task_condition"][written : written + k] = codes[offsets].astype(np.float32)
