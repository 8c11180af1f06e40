"""Local sub-graphs of region data: graph samples from ONE group connectome.

brainspace's HCP group data (:mod:`modalmerge.data.sources.brainspace_group`)
hold one matrix per measure, so a graph -> graph task has no set of subjects'
graphs to split. Its samples here are local sub-graphs instead: with
``shard.subgraph_nodes: N`` every region of a split gets the sub-graph of
itself and its ``N - 1`` nearest regions **of the same split** (Euclidean
distance between centroids; nodes ordered by that distance, the centre first).
The spatial split (:func:`~modalmerge.data.shards.regions.split_regions`:
blocks plus a buffer) then carries over: no test region is a node of a
training sub-graph, and the buffer regions are nodes of none.

Each region row of the shards gains two graph views (``(N, F + N)`` packed
graphs, :mod:`modalmerge.models.graph`; ``F = 0`` for the FC):

- ``graph_mpc`` (``condition_graph: mpc``): node features — the region's
  thickness, T1w/T2w and curvature, z-scored with the training regions'
  mean and SD, and its centroid ``x, y, z`` minus the training regions' mean
  centroid, divided by ONE pooled SD (``coordinate_scale_mm``), so distances
  between nodes stay proportional to millimetres — then the MPC sub-matrix;
- ``connectivity`` (the ``fc`` view): the discovery group's FC sub-matrix.

Matrices keep the source's values (no z-scoring). The manifest's
``subgraphs`` records the node features, the coordinate columns and scale and
every sub-graph's node list.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: scalar region features that become node features (brainspace_group's MAPS)
NODE_FEATURES = ("thickness", "t1wt2w", "curvature")
COORDINATES = ("x", "y", "z")


def nearest_members(coords: np.ndarray, members: list[int], n_nodes: int) -> np.ndarray:
    """``(len(members), n_nodes)`` row indices: each member, then its ``n_nodes - 1``
    nearest other members by centroid distance (ties by position, so deterministic)."""
    members = np.asarray(members, dtype=np.int64)
    if len(members) < n_nodes:
        raise ValueError(
            f"shard.subgraph_nodes {n_nodes} exceeds the {len(members)} regions of a split"
        )
    points = np.asarray(coords, dtype=np.float64)[members]
    distance = np.linalg.norm(points[:, None] - points[None, :], axis=-1)
    order = np.argsort(distance, axis=1, kind="stable")[:, :n_nodes]
    return members[order]


def _matrix(table: pd.DataFrame, prefix: str, regions: list[str]) -> np.ndarray:
    columns = [f"{prefix}_{r}" for r in regions]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"shard.subgraph_nodes needs the {prefix} matrix (columns {prefix}_<region>); "
            f"the region table lacks {missing[:3]}"
        )
    return table[columns].to_numpy(np.float64)


def subgraph_views(
    table: pd.DataFrame, splits: dict[str, list[str]], n_nodes: int
) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Every split's sub-graph arrays and the manifest record.

    ``table``: the region table (index: region names; ``x``/``y``/``z``,
    :data:`NODE_FEATURES`, ``mpc_*`` and ``fc_*`` columns); ``splits``: region
    names per split, in the order the shard rows are written.

    Returns
    -------
    views : dict
        ``{split: {"graph_mpc": (n, N, F + N), "connectivity": (n, N, N)}}`` float32.
    record : dict
        ``n_nodes``, ``node_features`` (names, the coordinates last),
        ``coordinate_columns``, ``coordinate_scale_mm`` and ``nodes``
        (``{region: [its sub-graph's regions]}``).
    """
    if n_nodes < 3:
        raise ValueError(f"shard.subgraph_nodes must be 0 (off) or >= 3, got {n_nodes}")
    missing = [c for c in (*NODE_FEATURES, *COORDINATES) if c not in table.columns]
    if missing:
        raise ValueError(f"shard.subgraph_nodes needs region columns {missing}")
    regions = list(table.index)
    position = {r: i for i, r in enumerate(regions)}
    mpc, fc = _matrix(table, "mpc", regions), _matrix(table, "fc", regions)
    train = [position[r] for r in splits["train"]]
    features = table[list(NODE_FEATURES)].to_numpy(np.float64)
    mean, std = features[train].mean(0), features[train].std(0)
    features = (features - mean) / np.where(std > 0, std, 1.0)
    coords = table[list(COORDINATES)].to_numpy(np.float64)
    centre = coords[train].mean(0)
    scale = float(np.sqrt(((coords[train] - centre) ** 2).mean())) or 1.0
    nodes_all = np.concatenate([features, (coords - centre) / scale], axis=1)
    views: dict[str, dict[str, np.ndarray]] = {}
    nodes: dict[str, list[str]] = {}
    for split, names in splits.items():
        if not names:
            k = len(nodes_all[0])
            views[split] = {
                "graph_mpc": np.zeros((0, n_nodes, k + n_nodes), np.float32),
                "connectivity": np.zeros((0, n_nodes, n_nodes), np.float32),
            }
            continue
        index = nearest_members(coords, [position[r] for r in names], n_nodes)
        grid = (index[:, :, None], index[:, None, :])
        views[split] = {
            "graph_mpc": np.concatenate([nodes_all[index], mpc[grid]], axis=2).astype(np.float32),
            "connectivity": fc[grid].astype(np.float32),
        }
        nodes.update({r: [regions[j] for j in row] for r, row in zip(names, index, strict=True)})
    n_features = len(NODE_FEATURES)
    record = {
        "n_nodes": int(n_nodes),
        "node_features": [*NODE_FEATURES, *COORDINATES],
        "coordinate_columns": list(range(n_features, n_features + len(COORDINATES))),
        "coordinate_scale_mm": round(scale, 6),
        "nodes": nodes,
    }
    return views, record
