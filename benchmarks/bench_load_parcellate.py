"""Benchmark loading + parcellating one subject from .nii.gz files, ours vs nibabel + nilearn.

Usage: .venv/bin/python benchmarks/bench_load_parcellate.py [--n-time 200] [--n-roi 400]
       [--repeat 2] [--dir /tmp]

Writes a 91x109x91xT float32 BOLD run (drawn like bench_nifti.py's, per volume) and a
same-grid int32 label image (nearest-centroid parcels, every label present, 0 outside
an ellipsoid brain) with ``nibabel.save`` as .nii.gz into a temporary directory, then
times, from the files, in the same process and in turn:

- reference: ``nibabel.load`` both files + ``NiftiLabelsMasker(labels).fit_transform(bold)``
  (default settings: mean, no standardisation, no resampling on the shared grid);
- ours: what ``modalmerge.data.parcellation.parcellate.parcellate_subject`` does to get the ROI
  series: ``load_labels(atlas)``, the present labels, ``load_image(bold, ndim=4)``,
  ``check_same_grid``, ``roi_means(bold, labels, roi_labels)``, with the per-atlas
  plan cache cleared before every pass (a workflow job parcellates one subject).

The first pass of each is reported on its own (it pays numba's kernel load for ours);
then best of --repeat passes, the order alternating. Every output is checked against
the first reference output (same region order, |ours - masker| <= atol + rtol |masker|,
default 1e-5 + 1e-6 |masker|: at this run's ~500 intensity one float32 ulp is 3.1e-5, so
an absolute 1e-5 alone would demand bit-identical rounding) and a mismatch exits
non-zero; the max difference, in float32 ulp, and both paths' error against a float64
mean are printed. Imports are not timed. Peak RSS per path is the process's VmHWM, reset
before each pass (Linux /proc/self/clear_refs, when allowed), minus its RSS then.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from modalmerge.data.nifti import check_same_grid, load_image, load_labels
from modalmerge.data.parcellation import label_runs
from modalmerge.data.parcellation.parcellate import roi_means

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_parcellate import synthetic_atlas  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from nilearn.maskers import NiftiLabelsMasker

SHAPE = (91, 109, 91)


def write_inputs(directory: Path, n_time: int, n_roi: int) -> tuple[Path, Path]:
    """The BOLD run and the label image, both written by ``nibabel.save``."""
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -90.0
    # one volume at a time (bounded memory): a signal quantised like a real float32 run
    data = np.empty((*SHAPE, n_time), dtype=np.float32, order="F")
    for t in range(n_time):
        data[..., t] = np.round(rng.normal(500, 20, SHAPE), 1)
    data[:20] = 0  # background, as in bench_nifti.py
    bold_path, atlas_path = directory / "bold.nii.gz", directory / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), bold_path)
    del data
    labels = synthetic_atlas(SHAPE, n_roi)
    assert np.array_equal(np.unique(labels), np.arange(n_roi + 1)), "a label is missing"
    nib.save(nib.Nifti1Image(labels, affine), atlas_path)
    return bold_path, atlas_path


def exact_means(bold_path: Path, atlas_path: Path, roi_labels: np.ndarray) -> np.ndarray:
    """(T, R) region means summed in float64 (bincount per volume), not timed."""
    data = np.asanyarray(load_image(bold_path, ndim=4).dataobj)
    flat = np.asanyarray(load_labels(atlas_path)[1]).reshape(-1, order="F")
    counts = np.bincount(flat)
    vols = data.reshape(-1, data.shape[3], order="F")  # (V, T) view, each volume contiguous
    sums = [np.bincount(flat, weights=vols[:, t].astype(np.float64)) for t in range(vols.shape[1])]
    return (np.stack(sums) / counts)[:, roi_labels]


def reference(bold_path: Path, atlas_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """nibabel.load + NiftiLabelsMasker: (T, R) series and the region labels, in order."""
    bold, atlas = nib.load(bold_path), nib.load(atlas_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masker = NiftiLabelsMasker(atlas)
        series = masker.fit_transform(bold)
    regions = np.array([masker.region_ids_[i] for i in range(series.shape[1])])
    return series, regions


def ours(bold_path: Path, atlas_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The parcellate stage's load + ROI-series path for one subject."""
    label_runs._CACHE.clear()  # a workflow job builds the per-atlas plan once per subject
    atlas, labels = load_labels(atlas_path, what="atlas")
    present = np.flatnonzero(np.bincount(labels.ravel()))
    roi_labels = present[present != 0]
    bold = load_image(bold_path, ndim=4, what="preprocessed BOLD")
    check_same_grid(bold, atlas, bold_path, "preprocessed BOLD")
    return roi_means(np.asanyarray(bold.dataobj), labels, roi_labels), roi_labels


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _status_mib(field: str) -> float:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of this process, MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-time", type=int, default=200)
    parser.add_argument("--n-roi", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=2, help="timed passes after the first")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary dir")
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument(
        "--rtol", type=float, default=1e-6, help="equal: |ours - masker| <= atol + rtol |masker|"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        start = time.perf_counter()
        bold_path, atlas_path = write_inputs(Path(tmp), args.n_time, args.n_roi)
        size = np.prod(SHAPE) * args.n_time * 4
        print(
            f"{bold_path.name}: {(*SHAPE, args.n_time)} float32 ({size / 1e6:.0f} MB), "
            f"{bold_path.stat().st_size / 1e6:.0f} MB compressed; {atlas_path.name}: "
            f"{args.n_roi} regions; written in {time.perf_counter() - start:.1f} s"
        )

        paths = {
            "nibabel.load + NiftiLabelsMasker": reference,
            "load_labels + load_image + roi_means": ours,
        }
        names = list(paths)
        times: dict[str, list[float]] = {name: [] for name in names}
        peaks: dict[str, float] = dict.fromkeys(names, 0.0)  # above the RSS at the start
        expected = expected_regions = None
        worst = ulps = 0.0
        result = None
        for i in range(args.repeat + 1):
            for name in names if i % 2 == 0 else names[::-1]:
                tracked = _reset_peak()
                rss = _status_mib("VmRSS")
                start = time.perf_counter()
                series, regions = paths[name](bold_path, atlas_path)
                times[name].append(time.perf_counter() - start)
                if tracked:
                    peaks[name] = max(peaks[name], _status_mib("VmHWM") - rss)
                if expected is None:
                    expected, expected_regions = series, regions  # the reference runs first
                    continue
                if not np.array_equal(regions, expected_regions):
                    sys.exit(f"FAIL: {name} gives regions in another order or set")
                if series.shape != expected.shape:
                    sys.exit(f"FAIL: {name} gives shape {series.shape} != {expected.shape}")
                diff = np.abs(series.astype(np.float64) - expected)
                worst = max(worst, float(diff.max()))
                ulps = max(ulps, float((diff / np.spacing(np.abs(expected))).max()))
                bound = args.atol + args.rtol * np.abs(expected)
                if not (diff <= bound).all():
                    sys.exit(
                        f"FAIL: {name} differs from the reference by up to {diff.max():.2e} "
                        f"(> {args.atol:g} + {args.rtol:g} |masker|)"
                    )
                if paths[name] is ours:
                    result = series
        exact = exact_means(bold_path, atlas_path, expected_regions)

    print(
        f"outputs {expected.shape} equal: max|ours - masker| = {worst:.2e} ({ulps:.0f} float32 "
        f"ulp; bound {args.atol:g} + {args.rtol:g} |masker|, values up to "
        f"{np.abs(expected).max():.0f})"
    )
    print(
        f"max|x - float64 mean|: masker {np.abs(expected - exact).max():.2e}, "
        f"ours {np.abs(result - exact).max():.2e}"
    )
    print(f"{'':38s} {'first':>8s} {'best':>8s}  passes (s)   peak RSS above start")
    for name in names:
        first, rest = times[name][0], times[name][1:]
        peak = f"{peaks[name]:6.0f} MiB" if peaks[name] else "n/a"
        print(
            f"{name:38s} {first:8.3f} {min(rest):8.3f}  "
            f"{' '.join(f'{t:.2f}' for t in rest)}   {peak}"
        )
    ref, us = (times[name] for name in names)
    ratio = min(ref[1:]) / min(us[1:])
    print(f"speed-up, best of {args.repeat}: {ratio:.2f}x   first pass: {ref[0] / us[0]:.2f}x")
    print(f"target >= 3x: {'met' if ratio >= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
