"""Point clouds on disk: one ``.npz`` per subject, the one reader and writer.

A cloud is ``points`` ``(N, 3 + F)`` float32: xyz in mm (RAS world coordinates, the
image's), then F per-point features named by ``feature_names`` (e.g. ``t1_intensity``,
``thickness_mm``, ``curvature``). The synthetic generator writes the grey/white
boundary of each subject (:mod:`modalmerge.data.synthetic.surface`), real sources a
template surface's vertices (:mod:`modalmerge.data.sources.surfaces`); the shard stage
reads them (:mod:`modalmerge.data.shards.point_clouds`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from modalmerge.io import InputError, atomic_path, require_file

#: The file name of a subject's surface cloud under ``raw/sub-X/anat/``.
SUFFIX = "desc-white_pointcloud.npz"


def point_cloud_name(subject: str) -> str:
    """``sub-X_desc-white_pointcloud.npz``."""
    return f"{subject}_{SUFFIX}"


def check_point_cloud(
    points: np.ndarray, feature_names, where: str | os.PathLike, min_points: int = 1
) -> np.ndarray:
    """``points`` as float32 ``(N, 3 + F)``, or an InputError naming ``where`` and the fault.

    Faults: not 2-D, fewer than 3 columns, columns that disagree with ``feature_names``,
    fewer than ``min_points`` points, NaN or infinite values.
    """
    points = np.asarray(points)
    names = [str(n) for n in feature_names]
    if points.ndim != 2 or points.shape[1] < 3:
        raise InputError(where, f"points must be (N, 3 + F): xyz then features, got {points.shape}")
    if points.shape[1] != 3 + len(names):
        raise InputError(
            where,
            f"points have {points.shape[1] - 3} feature columns but {len(names)} feature "
            f"names {names}",
        )
    if points.shape[0] < min_points:
        raise InputError(where, f"{points.shape[0]} points, fewer than the {min_points} needed")
    if not np.isfinite(points).all():
        bad = int((~np.isfinite(points)).any(axis=1).sum())
        raise InputError(where, f"{bad} point(s) hold NaN or infinite values")
    return points.astype(np.float32)


def write_point_cloud(path: str | os.PathLike, points: np.ndarray, feature_names) -> Path:
    """Write a cloud atomically (checked first); return the path."""
    points = check_point_cloud(points, feature_names, path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # np.savez on a path would append ".npz" to the temp name
            np.savez_compressed(f, points=points, feature_names=np.array(list(feature_names)))
    return Path(path)


def read_point_cloud(path: str | os.PathLike, min_points: int = 1) -> tuple[np.ndarray, list[str]]:
    """``(points (N, 3 + F) float32, feature_names)`` of a file :func:`write_point_cloud` wrote."""
    path = require_file(path, "point cloud")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "points" not in npz.files or "feature_names" not in npz.files:
                raise InputError(
                    path, f"needs arrays 'points' and 'feature_names', has {npz.files}"
                )
            points, names = npz["points"], [str(n) for n in npz["feature_names"]]
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable file is a bad input
        raise InputError(path, f"not a readable point-cloud .npz ({err})") from None
    return check_point_cloud(points, names, path, min_points), names


__all__ = [
    "SUFFIX",
    "check_point_cloud",
    "point_cloud_name",
    "read_point_cloud",
    "write_point_cloud",
]
