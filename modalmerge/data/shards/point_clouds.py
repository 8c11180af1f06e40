"""The shards' ``point_cloud``: one surface cloud per subject, features standardised.

Each subject's cloud (:mod:`modalmerge.data.point_clouds`) is stored as
``/subjects/point_cloud`` ``(n_subjects, N, 3 + F)`` float32: xyz in mm as written (the
encoders scale coordinates themselves), the F features z-scored with the TRAINING
subjects' pooled mean and SD per feature (as the table's numeric columns), recorded in the
manifest's ``point_cloud`` entry (``feature_names``, ``feature_mean``, ``feature_std``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from modalmerge.data.point_clouds import read_point_cloud
from modalmerge.io import InputError


def load_point_clouds(
    paths: list[Path], subjects: list[str], train: list[str]
) -> tuple[dict[str, np.ndarray], dict]:
    """Every subject's cloud, features z-scored with the training subjects' statistics.

    All clouds must have the same number of points and the same feature names (an
    InputError names the first file that differs). Returns ``({subject: (N, 3 + F)},
    manifest entry)``. Holds every cloud in memory (N x (3 + F) x 4 bytes per subject:
    24 kB at N = 1,024 and F = 3).
    """
    clouds: dict[str, np.ndarray] = {}
    names: list[str] | None = None
    first: Path | None = None
    for subject, path in zip(subjects, paths, strict=True):
        points, feature_names = read_point_cloud(path)
        if names is None:
            names, first = feature_names, Path(path)
            shape = points.shape
        elif feature_names != names or points.shape != shape:
            raise InputError(
                path,
                f"point cloud {points.shape} with features {feature_names} differs from "
                f"{first}'s {shape} with {names} (every subject needs the same N and features)",
            )
        clouds[subject] = points
    if not train:
        raise ValueError("point clouds need training subjects for their feature statistics")
    pooled = np.concatenate([clouds[s][:, 3:] for s in train]).astype(np.float64)
    mean = pooled.mean(axis=0)
    std = pooled.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature stays constant (0)
    for subject, points in clouds.items():
        features = (points[:, 3:] - mean) / std
        clouds[subject] = np.concatenate([points[:, :3], features], axis=1).astype(np.float32)
    entry = {
        "feature_names": list(names or []),
        "feature_mean": [float(v) for v in mean],
        "feature_std": [float(v) for v in std],
        "n_points": int(shape[0]),
        "coordinates": "mm, as written (RAS world coordinates)",
    }
    return clouds, entry


def add_point_clouds(path: Path, clouds: dict[str, np.ndarray], feature_names: list[str]) -> None:
    """Append ``/subjects/point_cloud`` to a shard file, rows in its ``/subjects/id`` order."""
    with h5py.File(path, "a") as h5:
        ids = [s.decode() if isinstance(s, bytes) else s for s in h5["subjects/id"][()]]
        if not ids:
            return
        shape = next(iter(clouds.values())).shape
        ds = h5["subjects"].create_dataset(
            "point_cloud", (len(ids), *shape), np.float32, chunks=(1, *shape)
        )
        ds.attrs["feature_names"] = list(feature_names)
        for row, subject in enumerate(ids):
            ds[row] = clouds[subject]


__all__ = ["add_point_clouds", "load_point_clouds"]
