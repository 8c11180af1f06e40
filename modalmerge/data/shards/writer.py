"""One subject shard file written in a single pass over its subjects: every view's
datasets created, filled and closed together (the layout:
:mod:`modalmerge.data.shards.subjects`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from modalmerge.data.harmonize import zscore_series
from modalmerge.data.shards.images import _subject_image
from modalmerge.data.shards.layout import _contiguous_chunks, shard_file_head
from modalmerge.data.shards.roi_series import (
    _load_parcellated,
    _n_windows,
    _on_common_tr,
    _window_starts,
)
from modalmerge.data.shards.volumes import _volume_datasets, _write_volumes
from modalmerge.io import InputError, require_file
from modalmerge.settings import ShardSettings


def _write_file(
    path: Path,
    split: str,
    members: list[int],
    subjects: list[str],
    parcellated: list[Path],
    anatomy: dict[str, list[Path]],
    texts: list[Path] | None,
    tabular: pd.DataFrame,
    tabular_attrs: dict,
    params: ShardSettings,
    chash: str,
    shapes: dict,
    label_channels: tuple[str, ...] = (),
    connectivity: dict[str, np.ndarray] | None = None,
    censoring: dict | None = None,
    structural: dict[str, np.ndarray] | None = None,
    sc: dict[str, np.ndarray] | None = None,
    native_tr: dict[str, float] | None = None,
    volumes: dict | None = None,
) -> int:
    """Write one shard file with the given subjects; return its sample count.

    ``connectivity``: per-subject matrices to store instead of the parcellated
    ones (the tangent-space matrices of ``shard.connectivity: tangent``).
    ``censoring``: filled with ``{subject: {"censored_volumes", "dropped_windows"}}``
    for subjects with censored volumes (dropped windows summed over splits).
    ``structural``: per-subject features to store instead of the parcellated ones
    (``harmonize: combat``; the ROI series are then z-scored per subject).
    ``sc``: per-subject structural connectomes, stored as ``/subjects/graph_sc``
    (:mod:`modalmerge.data.shards.graphs`).
    ``native_tr``: filled with each subject's own TR when ``shard.tr`` resamples.
    ``volumes``: ``{"bold": paths, "events": path or None, "conditions": names}`` when
    ``shard.volume_series.enabled`` (:mod:`modalmerge.data.shards.volumes`).
    """
    # Over 60 lines: one HDF5 file written in a single pass over its subjects (datasets created, filled, closed together).
    censoring = {} if censoring is None else censoring
    native_tr = {} if native_tr is None else native_tr
    window, factor = params.window, params.image_downsample
    n = len(members)
    ids = [subjects[i] for i in members]
    with h5py.File(path, "w", libver=("v110", "latest")) as h5:  # fixed-array chunk index
        samples, subj = shard_file_head(h5, split, chash, ids, tabular.loc[ids], tabular_attrs)
        series_ds = starts_ds = index_ds = None
        written = 0
        for row, i in enumerate(members):
            parc = _on_common_tr(_load_parcellated(parcellated[i]), params, parcellated[i])
            if "native_tr" in parc:
                native_tr[subjects[i]] = parc["native_tr"]
            series = parc.get("roi_timeseries")  # None: anatomy only, one sample per subject
            if series is not None:
                series = series.astype(np.float32)
                if params.harmonize == "combat":
                    series = zscore_series(series)
                n_roi = series.shape[1]
                n_time = parc["n_volumes"]  # before censoring: windows keep original volumes
                if n_time < window:
                    raise InputError(parcellated[i], f"{n_time} volumes < window {window}")
            elif params.split_by == "time":
                raise InputError(
                    parcellated[i], "split_by time needs ROI time series; this subject has none"
                )
            elif volumes is not None:
                raise InputError(
                    parcellated[i], "shard.volume_series needs BOLD; this subject has none"
                )
            window_shape = None if series is None else [window, n_roi]
            conn_shape = list(parc["connectivity"].shape) if "connectivity" in parc else None
            if "structural_features" not in shapes:
                shapes.update(
                    time_series=window_shape,
                    structural_features=list(parc["structural_features"].shape),
                    connectivity=conn_shape,
                    feature_names=parc["feature_names"].tolist(),
                    roi_labels=parc["roi_labels"].tolist(),
                    roi_names=parc["roi_names"].tolist() if "roi_names" in parc else None,
                    roi_coords=(
                        np.round(parc["roi_coords"].astype(float), 2).tolist()
                        if "roi_coords" in parc
                        else None
                    ),
                    tr=float(parc["tr"]) if np.isfinite(parc["tr"]) else None,
                )
            tr = float(parc["tr"]) if np.isfinite(parc["tr"]) else None
            if tr is not None and shapes["tr"] is not None and abs(tr - shapes["tr"]) > 1e-3:
                raise InputError(
                    parcellated[i],
                    f"TR {tr} s differs from the other subjects' ({shapes['tr']} s): windows of "
                    f"{window} volumes would span different durations (one TR per cohort, or "
                    "set shard.tr to resample every run to a common TR)",
                )
            if (window_shape is None) != (shapes["time_series"] is None):
                raise InputError(
                    parcellated[i],
                    "has " + ("no " if series is None else "") + "ROI time series, unlike the "
                    "other subjects (a cohort is all BOLD or all anatomy-only)",
                )
            if (
                window_shape != shapes["time_series"]
                or list(parc["structural_features"].shape) != shapes["structural_features"]
                or conn_shape != shapes["connectivity"]
            ):
                raise InputError(parcellated[i], "array shapes differ from the other subjects'")
            image = _subject_image(anatomy, i, factor, label_channels)
            shapes.setdefault("image", list(image.shape))
            if list(image.shape) != shapes["image"]:
                raise InputError(
                    anatomy["T1w"][i], f"image shape {image.shape[1:]} differs from others'"
                )
            text = ""
            if texts is not None:
                text = require_file(texts[i], "description text").read_text(encoding="utf-8")
                text = text.strip()
            if index_ds is None:
                total = sum(_n_windows(parcellated[j], params, split) for j in members)
                if series is not None:
                    series_ds = samples.create_dataset(
                        "time_series",
                        (total, window, n_roi),
                        chunks=(1, window, n_roi),
                        dtype=np.float32,
                        dcpl=_contiguous_chunks(),
                    )
                index_ds = samples.create_dataset("subject_index", (total,), np.int64)
                starts_ds = samples.create_dataset("window_start", (total,), np.int64)
                image_ds = subj.create_dataset(
                    "image",
                    (n, *shapes["image"]),
                    np.float32,
                    chunks=(1, *shapes["image"]),
                    dcpl=_contiguous_chunks(),
                )
                feat_ds = subj.create_dataset(
                    "structural_features", (n, *shapes["structural_features"]), np.float32
                )
                feat_ds.attrs["feature_names"] = shapes["feature_names"]
                if conn_shape is not None:
                    conn_ds = subj.create_dataset("connectivity", (n, *conn_shape), np.float32)
                if sc is not None:
                    sc_ds = subj.create_dataset("graph_sc", (n, *shapes["graph_sc"]), np.float32)
                volume_ds = _volume_datasets(samples, volumes, total, window, shapes)
            if series is None:
                starts = np.zeros(1, dtype=np.int64)
            else:
                index = parc["volume_index"]
                starts, dropped = _window_starts(n_time, params, split, parcellated[i], index)
                if len(index) < n_time:
                    entry = censoring.setdefault(
                        subjects[i], {"censored_volumes": n_time - len(index), "dropped_windows": 0}
                    )
                    entry["dropped_windows"] += dropped
                    if not len(starts):
                        raise InputError(
                            parcellated[i],
                            f"every {split} window of {window} volumes holds a censored volume; "
                            "a shorter shard.window keeps some",
                        )
                rows = np.searchsorted(index, starts)  # kept windows are contiguous rows
                windows = np.lib.stride_tricks.sliding_window_view(series, window, axis=0)
                series_ds[written : written + len(starts)] = windows[rows].transpose(0, 2, 1)
                if volumes is not None:
                    _write_volumes(volume_ds, volumes, i, anatomy["T1w"][i], parc, rows, starts,
                                   written, params, shapes)  # fmt: skip
            k = len(starts)
            index_ds[written : written + k] = row
            starts_ds[written : written + k] = starts
            written += k
            image_ds[row] = image
            feat_ds[row] = (
                parc["structural_features"] if structural is None else structural[ids[row]]
            )
            if conn_shape is not None:
                own = parc["connectivity"] if connectivity is None else connectivity[subjects[i]]
                conn_ds[row] = own
            if sc is not None:
                sc_ds[row] = sc[subjects[i]]
            subj["text"][row] = text
        return written
