"""The ROI-series view of the subject shards, read from the parcellate stage's ``.npz``:
the series (resampled to ``shard.tr`` when set), its windows (censored volumes kept in
place, their windows dropped), and the per-subject connectivity and structural features
(tangent space, ComBat)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.data.resample import resample_series, same_tr
from modalmerge.data.time_split import time_blocks
from modalmerge.io import InputError, require_file
from modalmerge.settings import ShardSettings

__all__ = ["tangent_connectivity"]


def _load_parcellated(path: Path) -> dict[str, np.ndarray]:
    require_file(path, "parcellated subject")
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {"structural_features": npz["structural_features"]}
            if "roi_timeseries" in npz.files or "connectivity" in npz.files:  # BOLD was there
                out.update(roi_timeseries=npz["roi_timeseries"], connectivity=npz["connectivity"])
            if "roi_timeseries" in out:  # original volume of each row (censoring)
                n_rows = out["roi_timeseries"].shape[0]
                out["volume_index"] = (
                    npz["volume_index"] if "volume_index" in npz.files else np.arange(n_rows)
                )
                out["n_volumes"] = int(npz["n_volumes"]) if "n_volumes" in npz.files else n_rows
            out["feature_names"] = npz["feature_names"]
            out["roi_labels"] = npz["roi_labels"]
            out["tr"] = npz["tr"] if "tr" in npz.files else np.float64("nan")
            for key in ("roi_names", "roi_coords"):
                if key in npz.files:
                    out[key] = npz[key]
    except KeyError as exc:
        raise InputError(path, f"parcellated file lacks {exc}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(path, f"unreadable .npz ({exc})") from None
    for key in ("roi_timeseries", "structural_features", "connectivity"):
        if key in out and not np.isfinite(out[key]).all():
            raise InputError(path, f"{key} holds NaN or infinite values")
    if "volume_index" in out:
        index = np.asarray(out["volume_index"], dtype=np.int64)
        if (
            index.shape != (out["roi_timeseries"].shape[0],)
            or (index.size and (index[0] < 0 or index[-1] >= out["n_volumes"]))
            or (np.diff(index) <= 0).any()
        ):
            raise InputError(path, "volume_index is not one increasing volume index per row")
        out["volume_index"] = index
    return out


def _window_starts(
    n_time: int,
    params: ShardSettings,
    split: str,
    path: Path,
    volume_index: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Window starts (original volumes) of one subject's run in ``split``, and how many
    windows were dropped because they contain a censored volume.

    ``split_by: subject``: every window of the run; ``split_by: time``: the
    windows that lie inside the split's block (:func:`time_blocks`). ``n_time``
    counts the run's volumes before censoring; ``volume_index`` (the kept
    volumes, None = all) removes every window that holds a censored one.
    """
    window, stride = params.window, params.stride
    start, stop = 0, n_time
    if params.split_by == "time":
        gap = window if params.gap is None else params.gap
        try:
            start, stop = time_blocks(n_time, params.fractions.as_dict(), window, gap)[split]
        except ValueError as exc:
            raise InputError(path, str(exc)) from None
    starts = np.arange(start, stop - window + 1, stride, dtype=np.int64)
    if volume_index is None or len(volume_index) == n_time:
        return starts, 0
    censored = np.ones(n_time, dtype=np.int64)
    censored[volume_index] = 0
    cumulative = np.concatenate([[0], np.cumsum(censored)])
    clean = cumulative[starts + window] == cumulative[starts]
    return starts[clean], int((~clean).sum())


def _on_common_tr(parc: dict, params: ShardSettings, path: Path) -> dict:
    """``shard.tr`` set: the subject's ROI series resampled from its own TR to ``shard.tr``
    (:mod:`modalmerge.data.resample`), with ``n_volumes`` and ``volume_index`` of the new
    grid and ``native_tr`` kept; ``parc`` itself when it has no series or ``tr`` is unset.

    Raises
    ------
    modalmerge.io.InputError
        The run has no TR, has censored volumes and another TR (a resampled gap would be
        bridged), or its TR is not a simple ratio of ``shard.tr``.
    """
    if params.tr is None or "roi_timeseries" not in parc:
        return parc
    native = float(parc["tr"])
    if not np.isfinite(native):
        raise InputError(path, "records no TR; shard.tr needs each run's TR to resample it")
    out = dict(parc, native_tr=native, tr=np.float64(params.tr))
    if same_tr(native, params.tr):
        return out
    if params.split_by == "time":
        raise InputError(
            path,
            f"TR {native:g} s differs from shard.tr {params.tr:g} s: split_by time places its "
            "blocks on the native volumes (preprocess cleans each block), so it cannot resample",
        )
    if len(parc["volume_index"]) < parc["n_volumes"]:
        raise InputError(
            path,
            f"has censored volumes and TR {native:g} s, not shard.tr {params.tr:g} s: "
            "resampling would bridge the censored gaps (set shard.tr to this TR or drop "
            "the censoring)",
        )
    try:
        series = resample_series(parc["roi_timeseries"], native, params.tr)
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    out.update(
        roi_timeseries=series,
        n_volumes=len(series),
        volume_index=np.arange(len(series), dtype=np.int64),
    )
    return out


def _n_windows(path: Path, params: ShardSettings, split: str) -> int:
    """Windows one subject will give (0 if too short: the main pass reports it; 1 sample
    per subject for anatomy-only data)."""
    parc = _on_common_tr(_load_parcellated(path), params, path)
    if "roi_timeseries" not in parc:
        return 1
    n_time = parc["n_volumes"]
    if n_time < params.window:
        return 0
    return len(_window_starts(n_time, params, split, path, parc["volume_index"])[0])


def tangent_connectivity(
    parcellated: list[Path], subjects: list[str], train: list[str]
) -> dict[str, np.ndarray]:
    """Each subject's connectivity in the tangent space at the TRAINING subjects' mean.

    :class:`nilearn.connectome.ConnectivityMeasure` (``kind="tangent"``) is
    fitted on the training subjects' ROI series only (their geometric-mean
    covariance is the reference), then every subject is projected one at a
    time, so held-out subjects never shape the reference. The fit holds one
    ``(T, R)`` series per training subject in memory (the geometric mean needs
    them together); the projection streams.

    Raises
    ------
    modalmerge.io.InputError
        A subject has no ROI time series (anatomy-only data).
    """
    from nilearn.connectome import ConnectivityMeasure

    def series(i: int) -> np.ndarray:
        parc = _load_parcellated(parcellated[i])
        if "roi_timeseries" not in parc:
            raise InputError(parcellated[i], "tangent connectivity needs ROI time series")
        return parc["roi_timeseries"].astype(np.float64)

    position = {s: i for i, s in enumerate(subjects)}
    if len(train) < 2:
        raise ValueError("tangent connectivity needs at least two training subjects")
    measure = ConnectivityMeasure(kind="tangent", standardize="zscore_sample")
    measure.fit([series(position[s]) for s in train])

    def project(i: int) -> np.ndarray:
        # nilearn >= 0.14 refuses to transform a single subject; the projection of each
        # subject depends only on the fitted reference, so a duplicate pair gives it
        x = series(i)
        return measure.transform([x, x])[0].astype(np.float32)

    return {s: project(i) for s, i in position.items()}


def _combat_features(
    parcellated: list[Path], subjects: list[str], train: list[str], sites: dict,
    tabular: pd.DataFrame, categorical: list[str], connectivity: dict | None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:  # fmt: skip
    """``harmonize: combat``: structural features and connectivity of every subject."""
    from modalmerge.data.harmonize import harmonize_features

    structural, matrices = {}, {}
    for path, subject in zip(parcellated, subjects, strict=True):
        parc = _load_parcellated(path)
        structural[subject] = parc["structural_features"]
        if "connectivity" in parc:
            matrices[subject] = (
                parc["connectivity"] if connectivity is None else connectivity[subject]
            )
    covariates = tabular.drop(columns="site", errors="ignore")  # the batch, not a covariate
    coded = [c for c in categorical if c != "site"]
    return harmonize_features(structural, matrices or None, train, sites, covariates, coded)
