"""The image view of the subject shards: each subject's anatomy channels on one grid,
block-mean downsampled (label channels picked, not averaged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modalmerge.data.nifti import load_image, same_grid
from modalmerge.io import InputError


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
