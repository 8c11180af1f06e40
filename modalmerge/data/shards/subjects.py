# Over 400 lines: subject shards' split plan, windows, censoring, file writer and manifest share
# their bookkeeping; splitting the writer from the plan is an open clean-up.
"""Write the HDF5 shards: subject-level split, sliding windows, one file per subject group.

Layout of each ``{split}-NNNN.h5`` (docs/architecture.md §2)::

    /attrs: format_version, config_hash, split
    /samples/time_series   (n_samples, window, R) float32, chunks=(1, window, R),
                           uncompressed, allocated at creation (constant chunk stride);
                           absent for anatomy-only data (then one sample per subject)
    /samples/subject_index (n_samples,) int64   -> row in /subjects/*
    /samples/window_start  (n_samples,) int64   (original volumes from run start)
    /subjects/id           (n_subjects,) str
    /subjects/image        (n_subjects, 1, D, H, W) float32, chunks=(1, 1, D, H, W), ditto
    /subjects/tabular      (n_subjects, n_columns) float32 (attrs: columns, categorical,
                           categories = JSON {column: [names by code]})
    /subjects/text         (n_subjects,) str
    /subjects/structural_features (n_subjects, R, F) float32 (attrs: feature_names)
    /subjects/connectivity (n_subjects, R, R) float32 (absent for anatomy-only data)
    /subjects/graph_sc     (n_subjects, R, R) float32: structural connectomes, only when the
                           dataset has them (modalmerge.data.shards.graphs)

Inputs are read one subject at a time; everything is written into a temporary
directory that replaces ``out_dir`` only when complete.

Censored volumes (preprocess drops the volumes a confound strategy's sample
mask censors) keep their place: a parcellated run's rows carry their original
volume index (``volume_index``), windows are laid on the original volumes, and
a window that contains a censored volume is dropped, never bridged. The
manifest's ``censoring`` counts the censored volumes and dropped windows.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from modalmerge.data.harmonize import zscore_series
from modalmerge.data.nifti import load_image, same_grid
from modalmerge.data.resample import resample_series, same_tr
from modalmerge.data.shards.graphs import read_structural_connectomes
from modalmerge.data.shards.point_clouds import add_point_clouds, load_point_clouds
from modalmerge.data.shards.volumes import read_task_conditions, volume_grid
from modalmerge.data.time_split import SPLITS, time_blocks
from modalmerge.io import InputError, atomic_dir, require_file
from modalmerge.settings import ShardSettings

__all__ = [
    "FORMAT_VERSION",
    "SPLITS",
    "config_hash",
    "manifest_head",
    "read_participants",
    "shard_file_head",
    "split_subjects",
    "tangent_connectivity",
    "time_blocks",
    "write_shards",
]

FORMAT_VERSION = 1


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


def check_fractions(fractions) -> None:
    """``shard.fractions``: exactly train/val/test, non-negative, summing to 1, train > 0."""
    if not isinstance(fractions, dict) or set(fractions) != set(SPLITS):
        raise ValueError(f"shard.fractions must map exactly {SPLITS} to fractions")
    values = [fractions[s] for s in SPLITS]
    if any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in values):
        raise ValueError("shard.fractions must be non-negative numbers")
    if abs(sum(values) - 1.0) > 1e-6 or fractions["train"] <= 0:
        raise ValueError(f"shard.fractions must sum to 1 with train > 0, got {fractions}")


def config_hash(params: dict) -> str:
    """SHA-256 (hex, first 16 chars) of the parameters as canonical JSON."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def split_subjects(
    subjects: list[str],
    fractions: dict,
    seed: int,
    by: str = "subject",
    sites: dict[str, str] | None = None,
    test_site: str | None = None,
) -> dict[str, list[str]]:
    """Assign subjects to train/val/test, deterministically.

    ``by="subject"``: the sorted subject ids are permuted with
    ``numpy.random.default_rng(seed)`` and cut by ``fractions``
    (largest-remainder rounding; a split with a positive fraction gets at least
    one subject). ``by="time"``: every subject goes to every split with a
    positive fraction (each split then holds one block of each run, see
    :func:`time_blocks`). ``by="site"``: whole sites per split, no site in two
    splits: the subjects of ``test_site`` are the test split; the other sites are
    dealt to train and val as ``by="subject"`` deals subjects, with the shares
    ``train / (train + val)`` and ``val / (train + val)`` (``fractions["test"]``
    is not used), so validation, like test, is a site the model never saw. The
    result does not depend on the order of ``subjects``.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.

    Raises
    ------
    ValueError
        Duplicate ids, or too few subjects to give every positive split one.
    """
    ids = sorted(subjects)
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate subject ids")
    if by == "time":
        return {s: list(ids) if fractions[s] > 0 else [] for s in SPLITS}
    if by == "site":
        return _split_by_site(ids, fractions, seed, sites, test_site)
    wanted = [s for s in SPLITS if fractions[s] > 0]
    if len(ids) < len(wanted):
        raise ValueError(f"{len(ids)} subject(s) cannot fill the splits {wanted}")
    exact = np.array([fractions[s] * len(ids) for s in SPLITS])
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: len(ids) - counts.sum()]:
        counts[i] += 1
    for i, name in enumerate(SPLITS):  # no positive split left empty
        if fractions[name] > 0 and counts[i] == 0:
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    order = np.random.default_rng(seed).permutation(len(ids))
    bounds = np.cumsum(counts)[:-1]
    return {
        name: sorted(ids[j] for j in part)
        for name, part in zip(SPLITS, np.split(order, bounds), strict=True)
    }


def _split_by_site(
    ids: list[str], fractions: dict, seed: int, sites: dict | None, test_site: str | None
) -> dict[str, list[str]]:
    """``split_subjects(by="site")``: the test site held out whole, val from the others."""
    if sites is None or any(s not in sites for s in ids):
        raise ValueError("split_by site needs every subject's site (participants.tsv: site)")
    names = sorted(set(sites[s] for s in ids))
    if test_site not in names:
        raise ValueError(f"shard.test_site {test_site!r} is not a site of this cohort: {names}")
    if len(names) < 2:
        raise ValueError(f"split_by site needs at least 2 sites, got {names}")
    share = fractions["val"] / (fractions["train"] + fractions["val"])
    rest = [n for n in names if n != test_site]
    try:  # whole sites into train and val, drawn like subjects are
        inner = split_subjects(rest, {"train": 1.0 - share, "val": share, "test": 0.0}, seed)
    except ValueError:
        raise ValueError(
            f"split_by site with a validation share needs at least 3 sites, got {names}"
        ) from None
    return {
        name: sorted(s for s in ids if sites[s] in members)
        for name, members in {**inner, "test": [test_site]}.items()
    }


def subject_sites(table: pd.DataFrame, categories: dict, where) -> dict[str, str]:
    """Each participant's site from :func:`read_participants`' table (``site`` column)."""
    if "site" not in table.columns:
        raise InputError(where, "has no site column (needed by split_by site / harmonize)")
    codes = table["site"]
    if "site" in categories:
        return {s: categories["site"][int(c)] for s, c in codes.items()}
    return {s: f"{c:g}" for s, c in codes.items()}


def read_participants(path: str | os.PathLike) -> tuple[pd.DataFrame, list[str], dict]:
    """Read ``participants.tsv`` into numeric-then-categorical float columns.

    Returns
    -------
    table : pandas.DataFrame
        Indexed by participant_id; numeric columns as read, categorical ones as
        integer codes (float), numeric columns first.
    categorical : list of str
        Names of the categorical (coded) columns.
    categories : dict
        ``{column: [category names in code order]}``.
    """
    path = require_file(path, "participants TSV")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"participant_id": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(path, f"unreadable participants TSV ({exc})") from None
    if "participant_id" not in table.columns:
        raise InputError(path, "participants TSV lacks a participant_id column")
    table = table.set_index("participant_id")
    if table.index.duplicated().any():
        raise InputError(path, "participants TSV lists a participant twice")
    table = table.dropna(axis=1, how="all")  # a column no subject fills carries nothing
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    categorical = [c for c in table.columns if c not in numeric]
    if table.isna().any(axis=None):
        bad = table.columns[table.isna().any()].tolist()
        raise InputError(path, f"missing values (n/a or NaN) in column(s) {bad}")
    categories = {}
    for column in categorical:
        names = sorted(table[column].astype(str).unique())
        categories[column] = names
        table[column] = table[column].astype(str).map({n: i for i, n in enumerate(names)})
    return table[numeric + categorical].astype(np.float32), categorical, categories


def _downsample(volume: np.ndarray, factor: int) -> np.ndarray:
    """Block mean by an integer factor (edges cropped to a multiple of it)."""
    if factor == 1:
        return volume
    shape = [n // factor for n in volume.shape]
    if min(shape) == 0:
        raise ValueError(f"image_downsample {factor} is larger than the image {volume.shape}")
    cropped = volume[tuple(slice(0, n * factor) for n in shape)]
    blocks = cropped.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
    return blocks.mean(axis=(1, 3, 5))


def _downsample_labels(volume: np.ndarray, factor: int) -> np.ndarray:
    """A label image at the block-mean grid: the first voxel of each block (no mixing)."""
    if factor == 1:
        return volume
    shape = [n // factor for n in volume.shape]
    return volume[: shape[0] * factor : factor, : shape[1] * factor : factor,
                  : shape[2] * factor : factor]  # fmt: skip


def _subject_image(
    anatomy: dict[str, list[Path]], i: int, factor: int, label_channels
) -> np.ndarray:
    """Subject ``i``'s image channels ``(C, D, H, W)``: T1w first, then the extra anatomy."""
    channels, grid = [], None
    for name, paths in anatomy.items():
        img = load_image(paths[i], ndim=3, what=f"preprocessed {name}")
        if grid is None:
            grid = img
        elif not same_grid(img, grid):
            raise InputError(paths[i], f"{name} is not on the grid of {anatomy['T1w'][i]}")
        volume = np.asarray(img.dataobj, dtype=np.float32)
        down = _downsample_labels if name in label_channels else _downsample
        channels.append(down(volume, factor))
    return np.stack(channels)


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


def shard_file_head(h5: h5py.File, split: str, chash: str, ids: list[str], table, table_attrs):
    """What every shard file starts with: the format attributes, the ``samples`` and
    ``subjects`` groups, the row ids, (empty) texts and the table; returns the two groups."""
    h5.attrs.update(format_version=FORMAT_VERSION, config_hash=chash, split=split)
    samples, rows = h5.create_group("samples"), h5.create_group("subjects")
    rows.create_dataset("id", data=ids, dtype=h5py.string_dtype())
    rows.create_dataset("text", (len(ids),), dtype=h5py.string_dtype())  # unwritten: ""
    rows.create_dataset("tabular", data=table).attrs.update(table_attrs)
    return samples, rows


def manifest_head(params: dict, chash: str, splits: dict, files: list[dict]) -> dict:
    """The manifest keys every shard directory has (format, parameters, splits, files)."""
    return {
        "format_version": FORMAT_VERSION,
        "config_hash": chash,
        "params": params,
        "splits": splits,
        "shards": files,
        "n_samples": {s: sum(f["n_samples"] for f in files if f["split"] == s) for s in SPLITS},
    }


def _contiguous_chunks() -> h5py.h5p.PropDCID:
    """Creation properties that place every chunk at creation, in order and
    uncompressed, so sample i is one byte range at a constant stride (what
    :mod:`modalmerge.data.shards.chunk_map` serves from a memmap); no fill pass."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


def _check_name(path: Path, subject: str, what: str) -> None:
    if subject not in path.name:
        raise ValueError(f"{what} {path} does not belong to subject {subject}")


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
    from modalmerge.data.shards.volumes import load_volumes, volume_conditions

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


def _standardize_numeric(
    tabular: pd.DataFrame, categorical: list[str], train_subjects: list[str]
) -> tuple[pd.DataFrame, dict]:
    """Z-score the table's numeric columns with the TRAINING subjects' mean and SD.

    Models then see (and predict) ages and scores on a unit scale whatever their
    units; the statistics go into the manifest, so values can be mapped back.
    Test subjects never inform them.
    """
    numeric = [c for c in tabular.columns if c not in categorical]
    train = tabular.loc[train_subjects, numeric]
    mean = train.mean()
    std = train.std(ddof=0).replace(0.0, 1.0).fillna(1.0)
    out = tabular.copy()
    out[numeric] = ((tabular[numeric] - mean) / std).astype(np.float32)
    stats = {
        "numeric_mean": [float(v) for v in mean],
        "numeric_std": [float(v) for v in std],
    }
    return out, stats


def write_shards(
    subjects: list[str],
    parcellated: list[Path],
    anatomy: list[Path],
    participants_tsv: Path,
    texts: list[Path] | None,
    out_dir: Path,
    params: ShardSettings | dict | None,
    extra_anatomy: dict[str, list[Path]] | None = None,
    label_channels=(),
    point_clouds: list[Path] | None = None,
    bold: list[Path] | None = None,
    events: Path | None = None,
) -> None:
    """Split subjects, cut sliding windows and write ``out_dir`` (shards + manifest.json).

    Parameters
    ----------
    subjects : list of str
        Subject ids (``sub-001`` ...), aligned with the three path lists; each
        path's file name must contain its subject id.
    parcellated : list of Path
        The parcellate stage's ``.npz`` files (in the workflow
        ``parcellated/sub-XXX/sub-XXX_space-S_seg-A_parcellated.npz``; see
        :mod:`modalmerge.data.parcellation.parcellate`).
    anatomy : list of Path
        Preprocessed T1 images (atlas grid); stored as ``(1, D, H, W)`` after an
        optional integer block-mean downsampling.
    participants_tsv : Path
        BIDS ``participants.tsv``; every subject must have a row. Numeric
        columns (e.g. age) come first, categorical ones (sex, group) follow as
        integer codes, names in the dataset attrs and the manifest.
    texts : list of Path or None
        One UTF-8 description per subject; None (real data) stores empty texts.
    out_dir : Path
        Output directory, replaced atomically.
    extra_anatomy : dict of str to list of Path, optional
        Further preprocessed anatomy per channel name (BraTS: ``ce-gd_T1w``,
        ``T2w``, ``FLAIR``, ``dseg``), each aligned with ``subjects`` and on
        the T1's grid: the image becomes ``(1 + n_extra, D, H, W)``, channel
        names in the manifest's ``image_channels``.
    label_channels : sequence of str
        Channels that hold labels (downsampled by picking, not averaging;
        listed as ``label_channels`` in the manifest).
    point_clouds : list of Path, optional
        A surface point cloud per subject (:mod:`modalmerge.data.point_clouds`), stored
        as ``/subjects/point_cloud`` with features z-scored on the training subjects
        (:mod:`modalmerge.data.shards.point_clouds`; the manifest's ``point_cloud``).
    bold : list of Path, optional
        ``shard.volume_series.enabled`` only (then required): each subject's cleaned
        BOLD on the atlas grid (preprocess's output), stored as windows of volumes.
    events : Path, optional
        ``shard.volume_series.enabled``: the cohort's events table (BIDS
        ``task-<task>_events.tsv``), for the task condition of each volume; None or a
        missing file (a resting-state source): no ``task_condition`` in the shards.
    params : ShardSettings or dict
        :class:`modalmerge.settings.ShardSettings` or a ``shard:`` mapping
        (defaults filled, unknown keys and bad values raise ValueError). Read
        here: ``seed``, ``fractions``, ``window``, ``stride`` (volumes),
        ``image_downsample``, ``subjects_per_shard``, ``split_by``
        (``subject``: whole subjects per split, drawn with ``seed``; ``time``:
        every subject in every split, each split a block of the run in time,
        ``gap`` volumes apart — for one long run, or to forecast later
        volumes), ``connectivity``, ``tr`` (a common TR every ROI series is
        resampled to before windows are cut: :mod:`modalmerge.data.resample`;
        the manifest then records each subject's ``native_tr``).

    Raises
    ------
    modalmerge.io.InputError
        Missing/corrupt inputs or NaNs (the message names the file).
    ValueError
        Bad params, misaligned lists, too few subjects.
    """
    # Over 60 lines: the plan (splits, windows, tangent fit, censoring) and the atomic directory swap, in order.
    params = ShardSettings.coerce(params)
    if params.test_site == "all" or params.harmonize == "both":  # modalmerge.folds
        raise ValueError(
            "shard.test_site all / harmonize both name folds, not one split: the workflow "
            "expands them (one shard directory per held-out site and harmonisation); call "
            "write_shards with one test_site and harmonize none or combat"
        )
    record = params.subject_params()  # what the manifest and the config hash hold
    subjects = list(subjects)
    lists = {"parcellated": parcellated, "anatomy": anatomy}
    if texts is not None:
        lists["texts"] = texts
    if point_clouds is not None:
        lists["point_clouds"] = point_clouds
    extra_anatomy = dict(extra_anatomy or {})
    if "T1w" in extra_anatomy:
        raise ValueError("extra_anatomy must not repeat the T1w channel")
    unknown = set(label_channels) - set(extra_anatomy)
    if unknown:
        raise ValueError(f"label channel(s) {sorted(unknown)} are not among extra_anatomy")
    lists.update(extra_anatomy)
    volumes = None
    if params.volume_series.enabled:
        if bold is None:
            raise ValueError("shard.volume_series.enabled needs the subjects' cleaned BOLD")
        lists["bold"] = bold
        if events is not None and not Path(events).is_file():  # a source without (rest)
            print(f"no events table {events}: the shards hold no task_condition", flush=True)
            events = None
        volumes = {"bold": [Path(p) for p in bold], "events": events, "conditions": None}
        if events is not None:
            volumes["conditions"] = read_task_conditions(Path(events))
    elif bold is not None or events is not None:
        raise ValueError("bold and events are read only when shard.volume_series.enabled")
    for name, paths in lists.items():
        if len(paths) != len(subjects):
            raise ValueError(f"{len(paths)} {name} paths for {len(subjects)} subjects")
        for sid, p in zip(subjects, paths, strict=True):
            _check_name(Path(p), sid, name)
    parcellated = [Path(p) for p in parcellated]
    channels = {"T1w": [Path(p) for p in anatomy]}
    channels.update({name: [Path(p) for p in paths] for name, paths in extra_anatomy.items()})
    texts = None if texts is None else [Path(p) for p in texts]
    tabular, categorical, categories = read_participants(participants_tsv)
    absent = [s for s in subjects if s not in tabular.index]
    if absent:
        raise InputError(participants_tsv, f"no row for subject(s) {absent[:10]}")
    tabular_attrs = {
        "columns": list(tabular.columns),
        "categorical": categorical,
        "categories": json.dumps(categories),
    }
    sites = None
    if params.split_by == "site" or params.harmonize != "none":
        sites = subject_sites(tabular.loc[subjects], categories, participants_tsv)
    splits = split_subjects(
        subjects, params.fractions.as_dict(), params.seed, params.split_by, sites, params.test_site
    )
    if params.split_by == "site":  # the held-out site's code was never seen in training
        tabular, categorical = tabular.drop(columns="site"), [c for c in categorical if c != "site"]
        categories = {c: v for c, v in categories.items() if c != "site"}
        tabular_attrs.update(columns=list(tabular.columns), categorical=categorical)
        tabular_attrs["categories"] = json.dumps(categories)
    tabular, numeric_stats = _standardize_numeric(tabular, categorical, splits["train"])
    chash = config_hash(record)
    position = {s: i for i, s in enumerate(subjects)}
    tangent = None
    if params.connectivity == "tangent":
        if params.split_by == "time":
            raise ValueError("shard.connectivity tangent needs split_by subject")
        tangent = tangent_connectivity(parcellated, subjects, splits["train"])
    structural = None
    if params.harmonize == "combat":
        structural, tangent = _combat_features(
            parcellated, subjects, splits["train"], sites, tabular, categorical, tangent
        )

    clouds, cloud_entry = None, None
    if point_clouds is not None:
        clouds, cloud_entry = load_point_clouds(
            [Path(p) for p in point_clouds], subjects, splits["train"]
        )

    out_dir = Path(out_dir)
    shapes: dict = {}
    sc = read_structural_connectomes(Path(participants_tsv).parent, subjects)
    if sc is not None:
        shapes["graph_sc"] = list(next(iter(sc.values())).shape)
    if volumes is not None:
        shapes["volume_series"] = volume_grid(
            volumes["bold"][0], params.window, params.volume_series.downsample
        )
    censoring: dict = {}
    native_tr: dict = {}
    files = []
    with atomic_dir(out_dir) as tmp_dir:  # the old shards stay until the new are whole
        for split in SPLITS:
            members = [position[s] for s in splits[split]]
            size = params.subjects_per_shard
            for number, first in enumerate(range(0, len(members), size)):
                name = f"{split}-{number:04d}.h5"
                group = members[first : first + size]
                n_samples = _write_file(
                    tmp_dir / name, split, group, subjects, parcellated, channels, texts,
                    tabular, tabular_attrs, params, chash, shapes, tuple(label_channels),
                    tangent, censoring, structural, sc, native_tr, volumes,
                )  # fmt: skip
                if clouds is not None:
                    add_point_clouds(tmp_dir / name, clouds, cloud_entry["feature_names"])
                files.append(
                    {"file": name, "split": split, "n_subjects": len(group), "n_samples": n_samples}
                )
        manifest = manifest_head(record, chash, splits, files) | {
            "shapes": {
                k: shapes[k]
                for k in ("time_series", "image", "structural_features", "connectivity")
                + ("graph_sc",)
                if shapes.get(k) is not None  # anatomy-only data: no time series, no FC
            }
            | {"tabular": [len(tabular.columns)]}
            | ({} if clouds is None else {"point_cloud": list(next(iter(clouds.values())).shape)})
            | _volume_shapes(shapes, volumes),
            "tabular": {"columns": list(tabular.columns), "categorical": categorical}
            | {"categories": categories}
            | numeric_stats,
            "feature_names": shapes["feature_names"],
            "roi_labels": shapes["roi_labels"],
            "roi_names": shapes["roi_names"],
            "roi_coords": shapes["roi_coords"],  # mm, the atlas's region centres
            "tr": shapes["tr"],
            "split_by": params.split_by,
            "connectivity": params.connectivity or "as parcellated",
            "image_channels": list(channels),
            "label_channels": [c for c in channels if c in set(label_channels)],
            **({} if cloud_entry is None else {"point_cloud": cloud_entry}),
            "censoring": {
                "rule": "windows holding a censored volume are dropped; window_start counts "
                "original volumes",
                "censored_volumes": sum(c["censored_volumes"] for c in censoring.values()),
                "dropped_windows": sum(c["dropped_windows"] for c in censoring.values()),
                "subjects": dict(sorted(censoring.items())),
            },
        }
        if params.tr is not None:  # each subject's own TR (evaluate resamples its truth)
            manifest["native_tr"] = dict(sorted(native_tr.items()))
        if volumes is not None:
            manifest["volume_series"] = {
                "downsample": params.volume_series.downsample,
                "task_conditions": volumes["conditions"],  # code i = name i; None: no events
                "label_lag_s": params.volume_series.label_lag_s,
            }
        (tmp_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
