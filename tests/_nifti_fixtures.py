"""Tiny NIfTI fixtures for the data-stage tests (a 10x12x10 grid, 6 regions)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (10, 12, 10)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
TR = 2.0
N_ROI = 6


def atlas_labels() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.int16)
    inner = labels[1:-1, 1:-1, 1:-1]  # (8, 10, 8): a 2 x 3 grid of regions
    for i in range(2):
        for j in range(3):
            inner[i * 4 : (i + 1) * 4, j * 3 : (j + 1) * 3 + (j == 2), :] = 1 + i * 3 + j
    return labels


def write_atlas(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    atlas = folder / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas_labels(), AFFINE), atlas)
    rows = ["index\tname\tx\ty\tz"] + [f"{k}\tregion{k}\t{k}.0\t0.0\t0.0" for k in range(1, 7)]
    (folder / "labels.tsv").write_text("\n".join(rows) + "\n")
    return atlas, folder / "labels.tsv"


def write_subject(
    folder: Path,
    subject: str = "sub-001",
    n_volumes: int = 40,
    seed: int = 0,
    affine: np.ndarray = AFFINE,
    shape: tuple = SHAPE,
    sidecar: bool = True,
) -> tuple[Path, Path]:
    """Write raw-like T1 (3D) and BOLD (4D, float32) for one subject."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = atlas_labels() if shape == SHAPE else np.ones(shape, dtype=np.int16)
    t1 = (100 + 10 * labels + rng.normal(0, 3, shape)).astype(np.float32)
    t = np.arange(n_volumes) * TR
    phases = rng.uniform(0, 2 * np.pi, N_ROI + 1)
    regional = np.sin(2 * np.pi * 0.05 * t[None, :] + phases[:, None])  # (7, T)
    bold = 500 + 5 * regional[labels] + rng.normal(0, 1, (*shape, n_volumes))
    bold += 0.05 * t  # a linear drift the preprocessing removes
    t1_path = folder / f"{subject}_T1w.nii.gz"
    bold_path = folder / f"{subject}_task-rest_bold.nii.gz"
    nib.save(nib.Nifti1Image(t1, affine), t1_path)
    nib.save(nib.Nifti1Image(bold.astype(np.float32), affine), bold_path)
    if sidecar:
        (folder / f"{subject}_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": TR}))
    return t1_path, bold_path
