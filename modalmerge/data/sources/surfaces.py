"""Real surface point clouds: brainspace's conte69 32k midthickness with its group maps.

The same files the ``brainspace_group`` source reads, offline, nothing imported from
brainspace (its import needs ``vtk``): the conte69 midthickness surfaces
(``surfaces/conte69_32k_{lh,rh}.gii``, 32,492 vertices each, left first) and the
discovery group's per-vertex maps ``thickness``, ``t1wt2w`` and ``curvature``
(``matrices/main_group/conte69_32k_<map>.csv``; NaN on the medial wall). Vertices with a
non-finite map value are left out, the rest optionally sampled (seeded, without
replacement) to a fixed N: the ``(N, 3 + 3)`` cloud of :mod:`modalmerge.data.point_clouds`.

fsaverage5: brainspace ships its pial mesh (``surfaces/fsa5.pial.{lh,rh}.gii``) but no
thickness or curvature map on it, so it is not a point-cloud source here.

One template brain (a group average): a loader for conditioning on real cortical geometry
and for the figures, not a cohort of subjects.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from modalmerge.data.point_clouds import check_point_cloud
from modalmerge.data.sources.brainspace_group import MAPS, N_VERTICES, _csv, _midthickness
from modalmerge.io import InputError


def brainspace_root() -> Path:
    """The installed brainspace's ``datasets`` folder (found without importing brainspace)."""
    from modalmerge.data.sources.brainspace import package_dir

    return package_dir().parent


def conte69_point_cloud(
    n_points: int | None = None, seed: int = 0, path: str | os.PathLike | None = None
) -> tuple[np.ndarray, list[str]]:
    """The conte69 cortex as a point cloud: midthickness xyz (mm) and the group maps.

    Parameters
    ----------
    n_points : int, optional
        Sample this many vertices (seeded, without replacement); None keeps every vertex
        with finite maps (58,558 of 64,984).
    seed : int
        Seed of the sample.
    path : path, optional
        A ``datasets`` folder laid out as brainspace's; default: the installed package's.

    Returns
    -------
    points : ndarray, shape (N, 6) float32
        x, y, z, thickness, t1wt2w, curvature; left hemisphere's vertices first.
    feature_names : list of str
        ``["thickness", "t1wt2w", "curvature"]``.

    Raises
    ------
    modalmerge.io.InputError
        A missing or malformed file (named), or fewer usable vertices than ``n_points``.
    """
    root = Path(path).expanduser() if path is not None else brainspace_root()
    xyz = _midthickness(root)
    maps = [
        _csv(root / "matrices" / "main_group" / f"conte69_32k_{name}.csv", f"{name} map",
             (2 * N_VERTICES,), allow_nan=True)
        for name in MAPS
    ]  # fmt: skip
    points = np.column_stack([xyz, *maps])
    keep = np.flatnonzero(np.isfinite(points).all(axis=1))
    if n_points is not None:
        if n_points < 1 or n_points > len(keep):
            raise InputError(
                root / "matrices" / "main_group",
                f"{len(keep)} vertices have finite maps; cannot sample {n_points}",
            )
        keep = np.sort(np.random.default_rng(seed).choice(keep, n_points, replace=False))
    return check_point_cloud(points[keep], MAPS, root), list(MAPS)


__all__ = ["brainspace_root", "conte69_point_cloud"]
