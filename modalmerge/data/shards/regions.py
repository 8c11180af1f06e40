"""Shards whose samples are regions: a spatially blocked split of one region table.

For group-level data (one value per region and feature, e.g. brainspace's HCP
group matrices, :mod:`modalmerge.data.sources.brainspace_group`) the samples
are the cortical regions themselves. Their shards follow the same contract as
the subject shards (docs/architecture.md §2), with one row of
``/subjects/*`` per region and one sample per row::

    /samples/subject_index (n_regions,) int64   -> row in /subjects/*
    /samples/window_start  (n_regions,) int64   (zeros)
    /subjects/id           (n_regions,) str     region names
    /subjects/tabular      (n_regions, n_columns) float32 (attrs: columns, ...)
    /subjects/text         (n_regions,) str     (empty)

so :class:`~modalmerge.data.shards.dataset.ShardDataset` and the train, evaluate and
figures stages read them unchanged; an experiment picks its condition and
target as two column views of the table (``condition_columns`` /
``target_columns``). The manifest says ``split_by: space`` and
``sample_unit: region`` and keeps each region's hemisphere and centroid.

Neighbouring regions have similar profiles, so a random split would leak:
regions are grouped into ``n_blocks`` spatial blocks (k-means on their
centroids, within each hemisphere), whole blocks go to train, val or test,
and training regions closer than ``buffer_mm`` to a held-out region are left
out of every split (listed in the manifest as ``excluded``). ``buffer_mm: null``
(the default) is two median nearest-neighbour centroid distances of the
table's regions (:func:`median_nn_distance`; 2 x 12.6 mm on the Vos de Wael
200 parcellation), so the buffer removes two rings of neighbours, not one; the
manifest records the value used (``buffer_mm_used``).

With ``hold_out_homologs: true`` a held-out region's homolog (and any region
whose homolog it is) goes to the same split before the buffer is drawn
(``homologs`` in the manifest), so no homolog pair has one side in training. Homologs are
matched by position, not name: a region's homolog is the region of another
hemisphere whose centroid lies nearest its mirrored centroid (-x, y, z)
(:func:`mirror_homologs`; one-directional, so two regions may share a homolog).
Moved homologs leave their block: blocks no longer map one-to-one to splits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from modalmerge.data.shards.layout import config_hash, manifest_head, shard_file_head
from modalmerge.data.time_split import SPLITS
from modalmerge.io import InputError, atomic_dir, require_file
from modalmerge.settings import ShardSettings

__all__ = [
    "median_nn_distance",
    "mirror_homologs",
    "read_region_table",
    "region_of_column",
    "spatial_blocks",
    "split_regions",
    "write_region_shards",
]

#: Columns of ``regions.tsv`` that identify and place a region; every other column is a feature.
ID_COLUMNS = ("region", "label", "hemisphere", "x", "y", "z")


def read_region_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``regions.tsv``: identity columns plus numeric feature columns, no gaps.

    Raises
    ------
    modalmerge.io.InputError
        Unreadable file, missing identity columns, duplicate regions,
        non-numeric or missing/infinite feature values (the message names them).
    """
    path = require_file(path, "region table")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"region": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(path, f"unreadable region table ({exc})") from None
    missing = [c for c in ID_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(path, f"region table lacks column(s) {missing}")
    if table["region"].duplicated().any():
        raise InputError(
            path,
            f"region(s) listed twice: {table['region'][table['region'].duplicated()].tolist()[:5]}",
        )
    features = [c for c in table.columns if c not in ID_COLUMNS]
    if not features:
        raise InputError(path, "region table has no feature columns")
    text = [c for c in features if not pd.api.types.is_numeric_dtype(table[c])]
    if text:
        raise InputError(path, f"non-numeric feature column(s) {text[:5]}")
    values = table[features + ["x", "y", "z"]].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        bad = [c for c in features + ["x", "y", "z"] if not np.isfinite(table[c]).all()]
        raise InputError(path, f"missing or infinite values in column(s) {bad[:5]}")
    return table.set_index("region")


def spatial_blocks(coords: np.ndarray, hemispheres, n_blocks: int, seed: int) -> np.ndarray:
    """Block id of each region: k-means on the centroids, within each hemisphere.

    Blocks are shared out between hemispheres in proportion to their regions
    (each hemisphere gets at least one), so no block spans the midline.
    """
    from sklearn.cluster import KMeans

    coords = np.asarray(coords, dtype=np.float64)
    hemispheres = np.asarray(hemispheres).astype(str)
    names = sorted(set(hemispheres))
    if n_blocks < len(names) or n_blocks > len(coords):
        raise ValueError(
            f"n_blocks {n_blocks} must lie between {len(names)} and {len(coords)} regions"
        )
    blocks = np.empty(len(coords), dtype=np.int64)
    counts = np.array([(hemispheres == h).sum() for h in names])
    shares = np.maximum(1, np.floor(n_blocks * counts / counts.sum()).astype(int))
    shares[np.argmax(counts)] += n_blocks - shares.sum()
    first = 0
    for hemi, k in zip(names, shares, strict=True):
        where = np.flatnonzero(hemispheres == hemi)
        k = int(min(k, len(where)))
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(coords[where])
        blocks[where] = labels + first
        first += k
    return blocks


def median_nn_distance(coords: np.ndarray) -> float:
    """The median over regions of the distance from a centroid to its nearest other
    centroid (both hemispheres together)."""
    coords = np.asarray(coords, dtype=np.float64)
    distance = np.linalg.norm(coords[:, None] - coords[None, :], axis=-1)
    np.fill_diagonal(distance, np.inf)
    return float(np.median(distance.min(axis=1)))


def mirror_homologs(coords: np.ndarray, hemispheres) -> np.ndarray:
    """Index of each region's homolog: the region of another hemisphere whose centroid
    lies nearest the region's mirrored centroid (-x, y, z); -1 when no other
    hemisphere has regions. Not necessarily symmetric or one-to-one."""
    coords = np.asarray(coords, dtype=np.float64)
    hemispheres = np.asarray(hemispheres).astype(str)
    mirrored = coords * np.array([-1.0, 1.0, 1.0])
    distance = np.linalg.norm(mirrored[:, None] - coords[None, :], axis=-1)
    distance[hemispheres[:, None] == hemispheres[None, :]] = np.inf
    homolog = distance.argmin(axis=1)
    homolog[~np.isfinite(distance.min(axis=1))] = -1
    return homolog


def _homolog_closure(held: list[int], train: list[int], homolog: np.ndarray) -> set[int]:
    """Training regions paired with a held-out one, in either direction and through
    chains (``homolog`` is one-directional: two regions may share a homolog): moving
    them leaves no pair ``(i, homolog[i])`` with one side in training."""
    held_set, train_set, moved = set(held), set(train), set()
    changed = True
    while changed:
        changed = False
        for j in sorted(train_set - moved):
            partner = int(homolog[j])
            paired = partner in held_set or partner in moved
            paired = paired or any(int(homolog[i]) == j for i in held_set | moved)
            if paired:
                moved.add(j)
                changed = True
    return moved


def split_regions(
    regions: list[str], coords: np.ndarray, hemispheres, params: ShardSettings | dict | None
) -> tuple[dict[str, list[str]], list[str], np.ndarray, dict]:
    """Assign whole spatial blocks to train / val / test.

    Blocks are shuffled with ``params.seed`` and dealt to test, then val,
    until each holds its fraction of the regions (at least one block each when
    its fraction is positive); the rest train. With ``hold_out_homologs`` every
    training region paired with a test region (either is the other's
    :func:`mirror_homologs` homolog, also through chains of such pairs), then
    with a val region, moves from train to that split: no homolog pair
    straddles training and a held-out split. Training regions within ``buffer_mm``
    (null: 2 x :func:`median_nn_distance`) of a held-out region are then excluded.

    Returns
    -------
    splits : dict
        ``{"train": [...], "val": [...], "test": [...]}`` region names, sorted.
    excluded : list of str
        Training-side regions dropped by the buffer.
    blocks : ndarray
        Block id of each region.
    info : dict
        ``buffer_mm_used`` (mm), ``median_nn_mm``, ``hold_out_homologs`` and, with
        it, ``homologs`` (``{region: homolog}`` of every region).
    """
    params = ShardSettings.coerce(params)
    coords = np.asarray(coords, dtype=np.float64)
    blocks = spatial_blocks(coords, hemispheres, params.n_blocks, params.seed)
    order = np.random.default_rng(params.seed).permutation(np.unique(blocks))
    assigned: dict[str, list[int]] = {s: [] for s in SPLITS}
    queue = list(order)
    for split in ("test", "val"):
        wanted = getattr(params.fractions, split) * len(regions)
        taken = 0
        while queue and wanted > 0 and (taken == 0 or taken < wanted):
            block = queue.pop(0)
            members = np.flatnonzero(blocks == block).tolist()
            assigned[split] += members
            taken += len(members)
    assigned["train"] = [i for b in queue for i in np.flatnonzero(blocks == b).tolist()]
    if not assigned["train"]:
        raise ValueError(f"n_blocks {params.n_blocks} leaves no block for training")
    median_nn = median_nn_distance(coords)
    buffer = 2.0 * median_nn if params.buffer_mm is None else float(params.buffer_mm)
    info: dict = {
        "buffer_mm_used": round(buffer, 3),
        "median_nn_mm": round(median_nn, 3),
        "hold_out_homologs": bool(params.hold_out_homologs),
    }
    if params.hold_out_homologs:
        homolog = mirror_homologs(coords, hemispheres)
        for split in ("test", "val"):
            moved = _homolog_closure(assigned[split], assigned["train"], homolog)
            assigned[split] += sorted(moved)
            assigned["train"] = [i for i in assigned["train"] if i not in moved]
        if not assigned["train"]:
            raise ValueError("hold_out_homologs leaves no region for training")
        info["homologs"] = {regions[i]: regions[h] for i, h in enumerate(homolog) if h >= 0}
    held = assigned["val"] + assigned["test"]
    excluded = []
    if buffer > 0 and held:
        distance = np.linalg.norm(coords[assigned["train"], None] - coords[None, held], axis=-1)
        near = distance.min(axis=1) < buffer
        excluded = sorted(regions[i] for i, n in zip(assigned["train"], near, strict=True) if n)
        assigned["train"] = [i for i, n in zip(assigned["train"], near, strict=True) if not n]
        if not assigned["train"]:
            raise ValueError(f"buffer_mm {buffer:.3g} excludes every training region")
    splits = {s: sorted(regions[i] for i in assigned[s]) for s in SPLITS}
    return splits, excluded, blocks, info


def region_of_column(column: str, regions) -> tuple[str, str] | None:
    """``(prefix, region)`` of a per-region column ``<prefix>_<region>`` (one entry of a
    region x region matrix row, e.g. ``holdout_fc_L_001``), else None."""
    names = regions if isinstance(regions, set | frozenset | dict) else set(regions)
    cut = column.find("_")
    while cut != -1:
        if column[cut + 1 :] in names:
            return column[:cut], column[cut + 1 :]
        cut = column.find("_", cut + 1)
    return None


def column_groups(columns: list[str], regions: list[str]) -> list[str]:
    """The standardisation group of each column: ``<prefix>`` for a per-region
    column ``<prefix>_<region>`` (one row of a region x region matrix), else itself."""
    names = set(regions)
    return [(region_of_column(c, names) or (c,))[0] for c in columns]


def standardize_by_group(
    features: pd.DataFrame, regions: list[str], train: list[str]
) -> tuple[pd.DataFrame, dict]:
    """Z-score features with the TRAINING regions' statistics, one mean and SD per group.

    A matrix's columns (``fc_<region>`` ...) share one mean and SD, so a row
    keeps its shape (z-scoring each column alone would blow up the columns of
    held-out regions, which training regions barely connect to); scalar
    columns (thickness ...) get their own. Per-column statistics go into the
    manifest, as for subject tables.
    """
    groups = column_groups(list(features.columns), regions)
    rows = features.loc[train]
    mean = pd.Series(0.0, index=features.columns)
    std = pd.Series(1.0, index=features.columns)
    for group in dict.fromkeys(groups):
        members = [c for c, g in zip(features.columns, groups, strict=True) if g == group]
        values = rows[members].to_numpy(np.float64)
        mean[members] = values.mean()
        std[members] = values.std() or 1.0
    out = ((features - mean) / std).astype(np.float32)
    return out, {"numeric_mean": [float(v) for v in mean], "numeric_std": [float(v) for v in std]}


def _region_records(table: pd.DataFrame, coords: np.ndarray, blocks: np.ndarray) -> dict:
    """The manifest's ``regions``: label, hemisphere, centroid (mm) and block of each region."""
    return {
        r: {
            "label": int(table.at[r, "label"]),
            "hemisphere": str(table.at[r, "hemisphere"]),
            "xyz": [round(float(v), 3) for v in coords[i]],
            "block": int(blocks[i]),
        }
        for i, r in enumerate(table.index)
    }


def write_region_shards(
    regions_tsv: str | os.PathLike,
    out_dir: str | os.PathLike,
    params: ShardSettings | dict | None,
) -> dict:
    """Split the regions of ``regions_tsv`` in space and write ``out_dir`` (shards + manifest).

    Feature columns are z-scored with the TRAINING regions' mean and SD, one
    pair per matrix (:func:`standardize_by_group`; the statistics go into the
    manifest, so predictions can be mapped back to the table's units).
    ``out_dir`` is replaced atomically.

    Returns
    -------
    dict
        The manifest.
    """
    params = ShardSettings.coerce(params)
    record = params.region_params()  # what the manifest and the config hash hold
    table = read_region_table(regions_tsv)
    regions = list(table.index)
    coords = table[["x", "y", "z"]].to_numpy(np.float64)
    splits, excluded, blocks, info = split_regions(regions, coords, table["hemisphere"], params)
    features = table[[c for c in table.columns if c not in ID_COLUMNS]].astype(np.float32)
    features, stats = standardize_by_group(features, regions, splits["train"])
    graphs, graph_record = None, None
    if params.subgraph_nodes:  # local sub-graphs as graph samples (one group connectome)
        from modalmerge.data.shards.subgraphs import subgraph_views

        graphs, graph_record = subgraph_views(table, splits, params.subgraph_nodes)
    chash = config_hash(record)
    attrs = {"columns": list(features.columns), "categorical": [], "categories": json.dumps({})}

    out_dir = Path(out_dir)
    files = []
    with atomic_dir(out_dir) as tmp_dir:  # the old shards stay until the new are whole
        for split in SPLITS:
            members = splits[split]
            name = f"{split}-0000.h5"
            n = len(members)
            with h5py.File(tmp_dir / name, "w", libver=("v110", "latest")) as h5:
                values = features.loc[members].to_numpy(np.float32).reshape(n, -1)
                samples, rows = shard_file_head(h5, split, chash, members, values, attrs)
                for key, array in (graphs or {}).get(split, {}).items():
                    rows.create_dataset(key, data=array)
                samples.create_dataset("subject_index", data=np.arange(n, dtype=np.int64))
                samples.create_dataset("window_start", data=np.zeros(n, dtype=np.int64))
            files.append({"file": name, "split": split, "n_subjects": n, "n_samples": n})
        shapes = {"tabular": [features.shape[1]]}
        if graphs is not None:
            shapes |= {k: list(v.shape[1:]) for k, v in graphs["train"].items()}
        manifest = manifest_head(record, chash, splits, files) | {
            "shapes": shapes,
            "tabular": {"columns": list(features.columns), "categorical": [], "categories": {}}
            | stats,
            "roi_labels": [int(v) for v in table["label"]],
            "roi_names": regions,
            "split_by": "space",
            "sample_unit": "region",
            "regions": _region_records(table, coords, blocks),
            "excluded": excluded,
            **info,
            **({"subgraphs": graph_record} if graph_record is not None else {}),
        }
        (tmp_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
