"""Benchmark roi_means against NiftiLabelsMasker and one numpy pass (data.sum()).

Usage: .venv/bin/python benchmarks/bench_parcellate.py [--n-time 200] [--n-roi 400]
Prints seconds (best of --repeat) and ratios; the array is 91x109x91xT float32.
Times the numba kernel (when numba is installed) and the numpy/BLAS fallback.
"""

from __future__ import annotations

import argparse
import time
import warnings

import nibabel as nib
import numpy as np
from scipy.spatial import cKDTree

from modalmerge.data.parcellation import roi_kernel
from modalmerge.data.parcellation.parcellate import roi_means


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

    data_c = np.ascontiguousarray(data)  # time contiguous per voxel
    t_sum = best(lambda: data.sum(), args.repeat)
    t_sum_c = best(lambda: data_c.sum(), args.repeat)
    paths = (["numba"] if roi_kernel.HAVE_NUMBA else []) + ["numpy"]
    results = {}
    for path in paths:
        roi_kernel.HAVE_NUMBA = path == "numba"
        row = {}
        for order, array in (("F", data), ("C", data_c)):
            # the first call builds the per-atlas plan (and, for numba, loads or compiles
            # the kernel: run with NUMBA_CACHE_DIR=$(mktemp -d) to time a cold compile)
            row[f"first_{order}"] = best(lambda a=array: roi_means(a, labels), 1)
            row[order] = best(lambda a=array: roi_means(a, labels), args.repeat)
            row[f"out_{order}"] = roi_means(array, labels)
        results[path] = row

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img, atlas = nib.Nifti1Image(data, affine), nib.Nifti1Image(labels, affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nilearn.maskers import NiftiLabelsMasker

        start = time.perf_counter()
        expected = NiftiLabelsMasker(atlas, strategy="mean").fit_transform(img)
        t_nilearn = time.perf_counter() - start

    if roi_kernel.HAVE_NUMBA or "numba" in results:
        import numba

        print(f"numba {numba.__version__}")
    print(f"data.sum() F-order            {t_sum:8.3f} s")
    print(f"data.sum() C-order            {t_sum_c:8.3f} s")
    print(f"NiftiLabelsMasker             {t_nilearn:8.3f} s")
    for path, row in results.items():
        for order, t_ref in (("F", t_sum), ("C", t_sum_c)):
            t = row[order]
            diff = np.abs(row[f"out_{order}"] - expected).max()
            print(
                f"roi_means {path:5s} {order}-order {t:8.3f} s  {t / t_ref:5.2f}x sum  "
                f"{t_nilearn / t:6.1f}x masker  first call {row[f'first_{order}']:6.3f} s  "
                f"max|diff| {diff:.1e}"
            )


if __name__ == "__main__":
    main()
