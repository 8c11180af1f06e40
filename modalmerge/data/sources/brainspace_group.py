"""HCP group structure and function per region, as shipped inside ``brainspace``.

The samples of this source are cortical REGIONS, not subjects: the Vos de
Wael parcellation (200 regions on the conte69 32k surface, 100 per
hemisphere) with, for each region,

- its structural profile: its row of the group microstructure profile
  covariance (MPC) matrix (``mpc_<region>``, 200 columns) and the group mean
  cortical thickness, T1w/T2w ratio and curvature of its vertices
  (``thickness``, ``t1wt2w``, ``curvature``, averaged from the conte69 maps;
  vertices the maps leave NaN are left out of the mean);
- its functional connectivity profile: its row of the discovery group's
  mean FC matrix (``fc_<region>``, 200 columns);
- the same row of the held-out group's FC matrix (``holdout_fc_<region>``),
  which no model sees: evaluation checks that predictions generalise beyond
  the discovery group.

Region names are ``L_001`` .. ``L_100`` and ``R_101`` .. ``R_200`` (the
parcellation's labels; it ships no anatomical names). Nothing is imported
from brainspace (its ``vtk`` dependency is not needed) and nothing is
downloaded: the CSV and GIFTI files are read from the installed package.

Written by :func:`write_cohort` under ``root``:

- ``raw/regions.tsv``: one row per region — ``region``, ``label``,
  ``hemisphere``, ``x``/``y``/``z`` (mean conte69 midthickness position of its
  vertices, mm) and the feature columns above;
- ``raw/dataset_description.json``;
- ``atlas/``: the parcellation as a ``(64984, 1, 1)`` label image (conte69
  vertices, left hemisphere first; the medial wall is 0) with ``labels.tsv``.

Parameters (``dataset.params``)
-------------------------------
path : str, optional
    A folder laid out like ``brainspace/datasets`` (``matrices/``,
    ``parcellations/``, ``surfaces/``); default: the installed package's.
scale : int
    Regions of the Vos de Wael parcellation (default 200, the only scale the
    MPC matrix ships at).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from modalmerge.data.sources import _common
from modalmerge.io import InputError, require_file

KEYS = {"path", "scale"}
N_VERTICES = 32492  # per hemisphere on conte69 32k
MAPS = ("thickness", "t1wt2w", "curvature")
ID_COLUMNS = ("region", "label", "hemisphere", "x", "y", "z")


def _check(params: dict) -> tuple[Path, int]:
    _common.check_keys(params, KEYS, "brainspace_group")
    scale = params.get("scale", 200)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2 or scale % 2:
        raise ValueError(f"dataset.params.scale must be an even number of regions, got {scale!r}")
    if params.get("path"):
        path = Path(params["path"]).expanduser()
    else:
        from modalmerge.data.sources.brainspace import package_dir

        path = package_dir().parent
    return path, scale


def _subject_ids(params: dict) -> list[str]:
    """No subjects: the samples are regions (``SOURCE.sample_unit``)."""
    _check(params)
    return []


def _csv(path: Path, what: str, shape: tuple[int, ...], allow_nan: bool = False) -> np.ndarray:
    file = require_file(path, what)
    try:
        values = np.loadtxt(file, delimiter=",", ndmin=len(shape))
    except ValueError as exc:
        raise InputError(file, f"{what} is not a numeric CSV ({exc})") from None
    if values.shape != shape:
        raise InputError(file, f"{what} has shape {values.shape}, expected {shape}")
    if np.isinf(values).any() or (not allow_nan and np.isnan(values).any()):
        raise InputError(
            file, f"{what} holds {'infinite' if allow_nan else 'NaN or infinite'} values"
        )
    return values


def _midthickness(path: Path) -> np.ndarray:
    """(64984, 3) vertex positions of the conte69 surfaces, left first."""
    parts = []
    for hemi in ("lh", "rh"):
        file = require_file(
            path / "surfaces" / f"conte69_32k_{hemi}.gii", f"conte69 {hemi} surface"
        )
        try:
            coords = np.asarray(nib.load(file).darrays[0].data, dtype=np.float64)
        except Exception as exc:  # nibabel raises several types for a broken file
            raise InputError(file, f"unreadable GIFTI surface ({exc})") from None
        if coords.shape != (N_VERTICES, 3):
            raise InputError(
                file, f"expected ({N_VERTICES}, 3) vertex coordinates, got {coords.shape}"
            )
        parts.append(coords)
    return np.concatenate(parts)


def region_table(params: dict) -> tuple[pd.DataFrame, np.ndarray]:
    """The per-region table (see the module docstring) and the per-vertex labels.

    Raises
    ------
    modalmerge.io.InputError
        A file is missing, unreadable, of the wrong shape, holds NaN where
        none may be, or a region has no vertex with a finite map value.
    """
    path, scale = _check(params)
    n_vertices = 2 * N_VERTICES
    parc_file = path / "parcellations" / f"vosdewael_{scale}_conte69.csv"
    vertex = _csv(parc_file, "parcellation", (n_vertices,))
    if (vertex != np.round(vertex)).any() or vertex.min() < 0:
        raise InputError(parc_file, "parcellation labels must be non-negative integers")
    vertex = vertex.astype(np.int64)
    labels = np.arange(1, scale + 1)
    present = np.unique(vertex[vertex > 0])
    if not np.array_equal(present, labels):
        raise InputError(parc_file, f"expected labels 1..{scale}, found {len(present)} labels")
    half = scale // 2
    if (
        vertex[:N_VERTICES].max() > half
        or vertex[N_VERTICES:][vertex[N_VERTICES:] > 0].min() <= half
    ):
        raise InputError(parc_file, f"labels 1..{half} must be left, {half + 1}..{scale} right")
    names = [f"{'L' if i <= half else 'R'}_{i:03d}" for i in labels]

    matrices = path / "matrices"
    square = (scale, scale)
    fc = _csv(matrices / "main_group" / f"vosdewael_{scale}_mean_connectivity_matrix.csv",
              "discovery-group FC matrix", square)  # fmt: skip
    holdout = _csv(matrices / "holdout_group" / f"vosdewael_{scale}_mean_connectivity_matrix.csv",
                   "held-out-group FC matrix", square)  # fmt: skip
    mpc = _csv(matrices / "fusion_tutorial" / f"vosdewael_{scale}_mpc_matrix.csv",
               "MPC matrix", square)  # fmt: skip
    for name, matrix, file in (("FC", fc, "main_group"), ("MPC", mpc, "fusion_tutorial")):
        if not np.allclose(matrix, matrix.T, atol=1e-6):
            raise InputError(matrices / file, f"the {name} matrix is not symmetric")

    coords = _midthickness(path)
    table = pd.DataFrame(
        {
            "region": names,
            "label": labels,
            "hemisphere": ["L" if i <= half else "R" for i in labels],
        }
    )
    table[["x", "y", "z"]] = np.stack([coords[vertex == i].mean(axis=0) for i in labels])
    for name in MAPS:
        file = matrices / "main_group" / f"conte69_32k_{name}.csv"
        values = _csv(file, f"{name} map", (n_vertices,), allow_nan=True)
        sums = np.bincount(vertex, np.nan_to_num(values), minlength=scale + 1)[1:]
        counts = np.bincount(vertex, np.isfinite(values), minlength=scale + 1)[1:]
        if (counts == 0).any():
            empty = [names[i] for i in np.flatnonzero(counts == 0)][:5]
            raise InputError(file, f"no finite {name} value in region(s) {empty}")
        table[name] = sums / counts
    blocks = [
        pd.DataFrame(matrix, columns=[f"{prefix}_{n}" for n in names])
        for prefix, matrix in (("mpc", mpc), ("fc", fc), ("holdout_fc", holdout))
    ]
    return pd.concat([table, *blocks], axis=1), vertex


def _write_cohort(params: dict, root: Path) -> None:
    """``raw/regions.tsv``, ``raw/dataset_description.json`` and the conte69 ``atlas/``."""
    from modalmerge.data.parcellation.atlases import Atlas

    path, scale = _check(params)
    table, vertex = region_table(params)
    # NIfTI-2: 64984 vertices overflow NIfTI-1's 16-bit dimensions
    image = nib.Nifti2Image(vertex.astype(np.int32).reshape(-1, 1, 1), np.eye(4))
    atlas = Atlas(
        f"vosdewael_{scale}_conte69",
        list(table["region"]),
        table[["x", "y", "z"]].to_numpy(),
        image,
        table["label"].to_numpy(),
        extra=pd.DataFrame({"hemisphere": table["hemisphere"]}),
    )
    description = _common.dataset_description(
        f"HCP group structure and function, Vos de Wael {scale} regions (brainspace)",
        "brainspace_group",
        path,
    )
    _common.write_cohort_files(root, "regions.tsv", table, description, atlas)


def _write_subject(params: dict, subject: str, root: Path) -> None:
    raise ValueError(
        "dataset.kind brainspace_group has regions, not subjects: there is nothing to write "
        f"for {subject!r} (the workflow's region DAG reads raw/regions.tsv)"
    )


SOURCE = _common.Source(
    kind="brainspace_group",
    keys=KEYS,
    writes_bold=False,  # one region table, no runs
    sample_unit="region",  # the workflow builds its region DAG for this source (no subjects)
    own_subject_ids=_subject_ids,
    own_write_cohort=_write_cohort,
    own_write_subject=_write_subject,
)

# the interface the workflow calls (modalmerge.data.sources)
subject_ids, write_cohort, write_subject = (
    SOURCE.subject_ids,
    SOURCE.write_cohort,
    SOURCE.write_subject,
)
