"""Graph views of the shards: which subject-level array a ``graph`` modality reads.

A ``graph`` sample is one ``(N, F + N)`` array (node features, then the adjacency
rows; :mod:`modalmerge.models.graph`). The shards hold two views, both with
``F = 0``:

- ``fc``: the subject's functional connectivity, the parcellate stage's
  ``connectivity`` (R, R) (already in every BOLD cohort's shards);
- ``sc``: the subject's structural connectome ``/subjects/graph_sc`` (R, R), written
  when the dataset has ``raw/derivatives/connectome/<subject>_desc-sc_connectome.tsv``
  for every subject (the synthetic cohort with ``connectome: true``; any dataset
  with such TSVs: a ``region`` column, then one column per region, in the atlas's
  label order).

Region data with ``shard.subgraph_nodes`` hold ``mpc`` (``/subjects/graph_mpc``, node
features plus the MPC sub-matrix) and ``fc`` (the FC sub-matrix) per local sub-graph
(:mod:`modalmerge.data.shards.subgraphs`).

An experiment picks a view per role (``condition_graph`` / ``target_graph``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.io import InputError

SC_DIR = Path("derivatives") / "connectome"
SC_SUFFIX = "_desc-sc_connectome.tsv"
#: graph view -> the /subjects/ dataset it reads
GRAPH_VIEWS = {"fc": "connectivity", "sc": "graph_sc", "mpc": "graph_mpc"}
#: |A - A^T| allowed in a stored SC, relative to max |A| (TSV round-off)
SYMMETRY_TOLERANCE = 1e-5


def graph_source(view: str | None) -> str:
    """The ``/subjects/`` dataset of a graph view (None: ``fc``)."""
    view = view or "fc"
    if view not in GRAPH_VIEWS:
        raise ValueError(f"unknown graph view {view!r}; expected one of {sorted(GRAPH_VIEWS)}")
    return GRAPH_VIEWS[view]


def sc_path(raw_dir: str | Path, subject: str) -> Path:
    """Where a subject's structural connectome TSV lives under the dataset's ``raw/``."""
    return Path(raw_dir) / SC_DIR / f"{subject}{SC_SUFFIX}"


def read_sc(path: Path, roi_names: list[str] | None = None) -> np.ndarray:
    """One SC TSV as a float32 (R, R) array; InputError naming the file and the problem."""
    try:
        table = pd.read_csv(path, sep="\t", index_col="region")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(
            path, f"not a readable connectome TSV with a 'region' column ({err})"
        ) from None
    matrix = table.to_numpy(dtype=np.float64, na_value=np.nan)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputError(path, f"connectome must be square (R x R), got {matrix.shape}")
    if list(table.columns) != list(table.index.astype(str)):
        raise InputError(path, "connectome column names must repeat the region column, in order")
    if roi_names is not None and list(table.index.astype(str)) != list(roi_names):
        raise InputError(path, f"regions {list(table.index)[:4]}... differ from the atlas's ROIs")
    if not np.isfinite(matrix).all():
        raise InputError(
            path, f"connectome holds {int((~np.isfinite(matrix)).sum())} NaN/inf values"
        )
    gap = float(np.abs(matrix - matrix.T).max())
    if gap > SYMMETRY_TOLERANCE * max(1.0, float(np.abs(matrix).max())):
        raise InputError(path, f"connectome is not symmetric (max |A - A^T| = {gap:.3g})")
    return (0.5 * (matrix + matrix.T)).astype(np.float32)


def read_structural_connectomes(
    raw_dir: str | Path, subjects: list[str], roi_names: list[str] | None = None
) -> dict[str, np.ndarray] | None:
    """Every subject's SC, or None when the dataset has none; InputError when only some have one."""
    paths = {s: sc_path(raw_dir, s) for s in subjects}
    present = {s: p.is_file() for s, p in paths.items()}
    if not any(present.values()):
        return None
    missing = [s for s, ok in present.items() if not ok]
    if missing:
        raise InputError(
            paths[missing[0]],
            f"no structural connectome, while other subjects have one ({len(missing)} missing)",
        )
    return {s: read_sc(p, roi_names) for s, p in paths.items()}
