"""A tiny planted structure → function task, for the demo and for learning tests.

Each subject has a small 3D "anatomy": noise plus one bright block per ROI, at a
fixed place, whose brightness varies between subjects. ROI ``r``'s time series
is a shared time course scaled by the brightness of block ``r`` (plus noise),
so a model that attends to the right block for each ROI can predict every
subject's amplitudes, and the mean predictor cannot.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def planted_regions(image_size: int, n_rois: int) -> list[tuple[slice, slice, slice]]:
    """The block of the image that drives each ROI (distinct corners/edges of the grid)."""
    half = image_size // 2
    corners = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    if n_rois > len(corners):
        raise ValueError(f"n_rois must be <= {len(corners)}, got {n_rois}")
    return [tuple(slice(k * half, (k + 1) * half) for k in corner) for corner in corners[:n_rois]]


class PlantedTask(Dataset):
    """Samples ``{"condition": (1, S, S, S), "target": (T, n_rois)}`` of the planted task.

    Parameters
    ----------
    n_subjects : int
        Number of samples (one per subject).
    image_size : int
        Side ``S`` of the cubic image, in voxels (even).
    n_rois : int
        Number of ROIs (at most 8: one per octant of the image).
    n_timepoints : int
        Length ``T`` of each ROI series.
    noise : float
        Standard deviation of the image and time-series noise.
    seed : int
        Seed of everything random; the shared time course depends only on ``n_timepoints``.
    """

    def __init__(
        self,
        n_subjects: int = 64,
        image_size: int = 8,
        n_rois: int = 4,
        n_timepoints: int = 16,
        noise: float = 0.05,
        seed: int = 0,
    ):
        rng = np.random.default_rng(seed)
        t = np.arange(n_timepoints)
        course = np.sin(2 * np.pi * t / max(n_timepoints, 2)) + 0.5 * np.cos(
            6 * np.pi * t / max(n_timepoints, 2)
        )
        self.regions = planted_regions(image_size, n_rois)
        self.brightness = rng.uniform(-1.0, 1.0, size=(n_subjects, n_rois)).astype(np.float32)
        images = noise * rng.standard_normal((n_subjects, 1, image_size, image_size, image_size))
        for r, region in enumerate(self.regions):
            images[(slice(None), 0, *region)] += self.brightness[:, r, None, None, None]
        series = self.brightness[:, None, :] * course[None, :, None]
        series = series + noise * rng.standard_normal(series.shape)
        self.images = torch.as_tensor(images, dtype=torch.float32)
        self.series = torch.as_tensor(series, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"condition": self.images[i], "target": self.series[i]}
