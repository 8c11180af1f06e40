"""Benchmark roi_means against NiftiLabelsMasker and one numpy pass (data.sum()).

Usage: .venv/bin/python benchmarks/bench_parcellate.py [--n-time 200] [--n-roi 400]
Prints seconds (best of --repeat) and ratios; the array is 91x109x91xT float32.
"""

from __future__ import annotations

import argparse
import time
import warnings

import nibabel as nib
import numpy as np
from scipy.spatial import cKDTree

from modalmerge.data.parcellate import roi_means


def synthetic_atlas(shape: tuple, n_roi: int, seed: int = 0) -> np.ndarray:
    """Nearest-centroid parcels filling an ellipsoid brain (label 0 outside)."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, n) for n in shape]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    inside = (grid**2).sum(-1) < 0.8
    points = grid[inside]
    centres = points[rng.choice(len(points), n_roi, replace=False)]
    labels = np.zeros(shape, dtype=np.int32)
    labels[inside] = cKDTree(centres).query(points)[1] + 1
    return labels


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-time", type=int, default=200)
    parser.add_argument("--n-roi", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shape = (91, 109, 91)
    rng = np.random.default_rng(0)
    data = np.asfortranarray(rng.standard_normal((*shape, args.n_time), dtype=np.float32))
    labels = synthetic_atlas(shape, args.n_roi)
    print(f"array {data.shape} float32 ({data.nbytes / 1e6:.0f} MB), {args.n_roi} regions, "
          f"{(labels > 0).mean():.0%} of voxels labelled")  # fmt: skip

    t_sum = best(lambda: data.sum(), args.repeat)
    t_first_f = best(lambda: roi_means(data, labels), 1)  # builds the per-atlas plan
    t_f = best(lambda: roi_means(data, labels), args.repeat)
    data_c = np.ascontiguousarray(data)  # time contiguous per voxel
    t_first_c = best(lambda: roi_means(data_c, labels), 1)
    t_c = best(lambda: roi_means(data_c, labels), args.repeat)
    t_sum_c = best(lambda: data_c.sum(), args.repeat)

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img, atlas = nib.Nifti1Image(data, affine), nib.Nifti1Image(labels, affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nilearn.maskers import NiftiLabelsMasker

        start = time.perf_counter()
        expected = NiftiLabelsMasker(atlas, strategy="mean").fit_transform(img)
        t_nilearn = time.perf_counter() - start
    diff_f = np.abs(roi_means(data, labels) - expected).max()
    diff_c = np.abs(roi_means(data_c, labels) - expected).max()

    print(f"data.sum() F-order            {t_sum:8.3f} s")
    print(f"data.sum() C-order            {t_sum_c:8.3f} s")
    print(f"roi_means F-order (NIfTI)     {t_f:8.3f} s   {t_f / t_sum:5.1f}x sum")
    print(f"roi_means C-order (time-contig){t_c:7.3f} s   {t_c / t_sum_c:5.1f}x sum")
    print(f"first call (plan build) F {t_first_f:6.3f} s, C {t_first_c:6.3f} s")
    print(f"NiftiLabelsMasker             {t_nilearn:8.3f} s")
    print(f"speed-up vs NiftiLabelsMasker F {t_nilearn / t_f:6.1f}x, C {t_nilearn / t_c:6.1f}x")
    print(f"max |roi_means - masker|      F {diff_f:.2e}, C {diff_c:.2e}")


if __name__ == "__main__":
    main()
