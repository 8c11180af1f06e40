"""Benchmark loading a 4D .nii.gz: modalmerge.data.nifti.load_image (ISA-L) vs nibabel.load.

Usage: .venv/bin/python benchmarks/bench_nifti.py [--n-time 200] [--path /tmp/bench_bold.nii.gz]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from modalmerge.data.nifti import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-time", type=int, default=200)
    parser.add_argument("--path", type=Path, default=Path("/tmp/bench_bold.nii.gz"))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # smooth-ish signal quantised like a real float32 BOLD run (pure noise would not compress)
    data = np.round(rng.normal(500, 20, (91, 109, 91, args.n_time)), 1).astype(np.float32)
    data[:20] = 0  # background
    nib.save(nib.Nifti1Image(data, np.eye(4)), args.path)  # nibabel's own gzip writer
    del data
    print(f"{args.path}: {args.path.stat().st_size / 1e6:.0f} MB compressed")

    def with_nibabel():
        return nib.load(args.path).get_fdata(dtype=np.float32)

    def with_isal():
        return np.asanyarray(load_image(args.path, ndim=4).dataobj)

    timings = {}
    for name, fn in (
        ("nibabel.load + get_fdata(float32)", with_nibabel),
        ("load_image", with_isal),
    ):
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        timings[name] = min(times)
        print(f"{name:36s} {timings[name]:7.3f} s")
    ratio = timings["nibabel.load + get_fdata(float32)"] / timings["load_image"]
    print(f"load_image speed-up: {ratio:.1f}x (load_image includes the NaN/inf check)")
    args.path.unlink()


if __name__ == "__main__":
    main()
