"""Benchmark random batches of 32 from ShardDataset vs np.load(mmap_mode='r') of the same arrays.

Usage: .venv/bin/python benchmarks/bench_shards.py [--subjects 32] [--n-time 200] [--n-roi 400]
Both sides read (time_series window, structural_features) per sample for the same indices:
the baseline with one fancy-indexed read per array and batch (numpy arrays out),
ShardDataset through ``__getitems__`` (what DataLoader calls) collated by
``collate_samples`` or by torch's ``default_collate`` (tensors out), and through 32
``__getitem__`` calls (a list of item dicts out); the dataset cases run with each of
``--threads`` torch threads (the training stage reads in its main process with the
rule's threads; DataLoader workers run with one).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from torch.utils.data import default_collate

from modalmerge.data.shards.dataset import ShardDataset, collate_samples
from modalmerge.data.shards.split_arrays import load_split_arrays
from modalmerge.data.shards.subjects import write_shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=32)
    parser.add_argument("--n-time", type=int, default=200)
    parser.add_argument("--n-roi", type=int, default=400)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--passes", type=int, default=15, help="interleaved passes over all cases")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="torch thread counts to run the dataset cases with (the baseline is numpy's one)",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subjects = [f"sub-{i:03d}" for i in range(1, args.subjects + 1)]
        parc, anat, texts = [], [], []
        for sid in subjects:
            p = root / f"{sid}.npz"
            np.savez(
                p,
                roi_timeseries=rng.standard_normal((args.n_time, args.n_roi), dtype=np.float32),
                connectivity=np.eye(args.n_roi, dtype=np.float32),
                structural_features=rng.standard_normal((args.n_roi, 6), dtype=np.float32),
                feature_names=np.array(list("abcdef")),
                roi_labels=np.arange(1, args.n_roi + 1),
                tr=2.0,
            )
            a = root / f"{sid}_T1w.nii.gz"
            nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), a)
            t = root / f"{sid}_description.txt"
            t.write_text("text")
            parc.append(p), anat.append(a), texts.append(t)
        tsv = root / "participants.tsv"
        tsv.write_text("participant_id\tage\n" + "".join(f"{s}\t30\n" for s in subjects))
        params = {"window": 32, "stride": 8, "fractions": {"train": 1.0, "val": 0.0, "test": 0.0}}
        start = time.perf_counter()
        write_shards(subjects, parc, anat, tsv, texts, root / "shards", params)
        print(f"write_shards: {time.perf_counter() - start:.2f} s for {args.subjects} subjects")

        ds = ShardDataset(root / "shards", "train", "structural_features", "time_series")
        series = load_split_arrays(root / "shards", "train", "time_series")
        np.save(root / "series.npy", series["data"])
        feats = load_split_arrays(root / "shards", "train", "structural_features")["data"]
        np.save(root / "feats.npy", feats)
        row = {
            s: i
            for i, s in enumerate(load_split_arrays(root / "shards", "train", "tabular")["subject"])
        }
        subj_row = np.array([row[s] for s in series["subject"]])
        mm_series = np.load(root / "series.npy", mmap_mode="r")
        mm_feats = np.load(root / "feats.npy", mmap_mode="r")
        batches = [rng.choice(len(ds), 32, replace=False) for _ in range(args.batches)]
        ds[0]  # open files (the one-off cost a worker pays once)

        def read_getitem():
            for batch in batches:
                [ds[int(i)] for i in batch]

        def read_getitems():  # what DataLoader(collate_fn=collate_samples) runs per batch
            for batch in batches:
                collate_samples(ds.__getitems__(batch.tolist()))

        def read_collated():  # DataLoader's default collate: items rebuilt and restacked
            for batch in batches:
                default_collate(ds.__getitems__(batch.tolist()))

        def read_mmap():
            for batch in batches:
                np.asarray(mm_series[batch]), np.asarray(mm_feats[subj_row[batch]])

        cases = [("np.load mmap", read_mmap)]
        for threads in args.threads:

            def pinned(fn, threads=threads):
                def run():
                    torch.set_num_threads(threads)
                    fn()

                return run

            cases += [
                (f"__getitems__+collate_samples {threads}t", pinned(read_getitems)),
                (f"__getitems__+default_collate {threads}t", pinned(read_collated)),
                (f"__getitem__ x 32 {threads}t", pinned(read_getitem)),
            ]
        for _, fn in cases:
            fn()  # warm the page cache (and the per-process lookups) for all
        timings = {name: [] for name, _ in cases}
        for _ in range(args.passes):  # interleaved, so load from others hits every case alike
            for name, fn in cases:
                start = time.perf_counter()
                fn()
                timings[name].append((time.perf_counter() - start) / args.batches)
        reference = np.array(timings["np.load mmap"])
        print("per batch of 32: best of the passes; ratio: median over passes of the pass's")
        print("time over np.load mmap's in the same pass (range: min-max)")
        for name, times in timings.items():
            ratios = np.array(times) / reference
            print(
                f"{name:32s} {min(times) * 1e3:7.3f} ms  ratio {np.median(ratios):4.2f}"
                f" ({ratios.min():4.2f}-{ratios.max():4.2f})"
            )
        direct = ds._maps.get((0, "samples/time_series"))
        print(
            f"memmap path: {direct is not None}, strided: {getattr(direct, 'array', None) is not None}"
        )


if __name__ == "__main__":
    main()
