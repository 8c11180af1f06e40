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

import json
from pathlib import Path

from modalmerge.data.shards.graphs import read_structural_connectomes
from modalmerge.data.shards.layout import (
    FORMAT_VERSION,
    config_hash,
    manifest_head,
    shard_file_head,
)
from modalmerge.data.shards.point_clouds import add_point_clouds, load_point_clouds
from modalmerge.data.shards.roi_series import _combat_features, tangent_connectivity
from modalmerge.data.shards.splits import split_subjects
from modalmerge.data.shards.tabular import _standardize_numeric, read_participants, subject_sites
from modalmerge.data.shards.volumes import _volume_shapes, read_task_conditions, volume_grid
from modalmerge.data.shards.writer import _write_file
from modalmerge.data.time_split import SPLITS, time_blocks
from modalmerge.io import InputError, atomic_dir
from modalmerge.settings import ShardSettings

# The helpers live in one module per part (docs/architecture.md, Package layout); the public
# names that were defined here are re-exported, so imports from this module keep working.
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


def _check_name(path: Path, subject: str, what: str) -> None:
    if subject not in path.name:
        raise ValueError(f"{what} {path} does not belong to subject {subject}")


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
