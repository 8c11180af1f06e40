"""Benchmark random batches of 32 from ShardDataset vs np.load(mmap_mode='r') of the same arrays;
with ``--memory``, peak memory of a training epoch and of evaluate's loading at two cohort sizes.

Usage: .venv/bin/python benchmarks/bench_shards.py [--subjects 32] [--n-time 200] [--n-roi 400]
       .venv/bin/python benchmarks/bench_shards.py --memory [--cohorts 64 512] [--cases ...]
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
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from torch.utils.data import default_collate

from modalmerge.data.shards.dataset import ShardDataset, collate_samples
from modalmerge.data.shards.split_arrays import load_split_arrays
from modalmerge.data.shards.subjects import write_shards

MEMORY_CASES = (
    "epoch, 0 workers",
    "epoch, 2 workers",
    "evaluate loading",
    "evaluate baselines, in memory",
    "evaluate baselines, streamed",
)


def _write_cohort(
    root: Path, n: int, n_time: int, n_roi: int, side: int, per_shard: int, held_out=None
) -> Path:
    """``n`` tiny random subjects written straight into shards (no workflow): ``root/shards``;
    with ``held_out``, about that many subjects each in val and test (else the shard
    defaults' fractions), so that only the training split grows with ``n``."""
    rng = np.random.default_rng(n)
    subjects = [f"sub-{i:04d}" for i in range(1, n + 1)]
    parc, anat = [], []
    for sid in subjects:
        p = root / f"{sid}.npz"
        np.savez(
            p,
            roi_timeseries=rng.standard_normal((n_time, n_roi), dtype=np.float32),
            connectivity=np.eye(n_roi, dtype=np.float32),
            structural_features=rng.standard_normal((n_roi, 6), dtype=np.float32),
            feature_names=np.array(list("abcdef")),
            roi_labels=np.arange(1, n_roi + 1),
            tr=2.0,
        )
        a = root / f"{sid}_T1w.nii"
        image = rng.standard_normal((side, side, side), dtype=np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), a)
        parc.append(p), anat.append(a)
    tsv = root / "participants.tsv"
    tsv.write_text("participant_id\tage\n" + "".join(f"{s}\t30\n" for s in subjects))
    params = {"window": 50, "stride": 25, "subjects_per_shard": per_shard}
    if held_out:
        f = held_out / n
        params["fractions"] = {"train": 1 - 2 * f, "val": f, "test": f}
    write_shards(subjects, parc, anat, tsv, None, root / "shards", params)
    for path in (*parc, *anat):
        path.unlink()
    return root / "shards"


def _rollup_kb(pid: int) -> dict[str, int]:
    """``Pss_Anon`` and ``Pss_File`` of a process (kB, /proc/PID/smaps_rollup): proportional
    set sizes, so pages a forked worker still shares with its parent count once in all."""
    out = {"Pss_Anon": 0, "Pss_File": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                key = line.split(":")[0]
                if key in out:
                    out[key] = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


class _PeakSampler:
    """Peak memory of this process and its children (loader workers) together, sampled
    every 5 ms and at each batch: anonymous pages (``Pss_Anon``: what the processes
    themselves hold) and file pages (``Pss_File``: mainly the memory-mapped shards, page
    cache the kernel can drop)."""

    def __init__(self):
        import psutil

        self._me = psutil.Process()
        self.anon = self.file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        pids = [os.getpid(), *(c.pid for c in self._me.children(recursive=True))]
        rollups = [_rollup_kb(p) for p in pids]
        self.anon = max(self.anon, sum(r["Pss_Anon"] for r in rollups))
        self.file = max(self.file, sum(r["Pss_File"] for r in rollups))

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.sample()
        self._stop.set()
        self._thread.join()


def _memory_case(case: str, shards: Path) -> dict:
    """Run one case in this (fresh) process; peak memory above the level before it, in MiB."""
    from modalmerge.stages.common import collect_split
    from modalmerge.stages.evaluate import parcel_features

    experiment = {"name": "bench", "condition": "image", "target": "time_series"}
    torch.set_num_threads(1)
    collect_split(shards, "val", experiment, batch_size=16)  # warm imports and allocator
    start = _rollup_kb(os.getpid())
    start_anon, start_file = start["Pss_Anon"], start["Pss_File"]
    begin, cpu = time.perf_counter(), time.process_time()
    scores = None
    with _PeakSampler() as peak:
        if case.startswith("epoch"):
            ds = ShardDataset(shards, "train", "image", "time_series")
            loader = torch.utils.data.DataLoader(
                ds,
                batch_size=16,
                shuffle=True,
                generator=torch.Generator().manual_seed(0),
                num_workers=int(case.split()[1]),
                collate_fn=collate_samples,
            )
            n = 0
            for batch in loader:
                n += len(batch["subject"])
                peak.sample()
        elif case == "evaluate loading":  # what evaluate reads before scoring (no model)
            train = collect_split(shards, "train", experiment, batch_size=32)
            test = collect_split(shards, "test", experiment, batch_size=32)
            parcel_features(shards, "train", train.subjects)
            parcel_features(shards, "test", test.subjects)
            n = len(train.subjects) + len(test.subjects)
        else:  # loading and the time-series scorer with its baselines (the "model" = target)
            n, scores = _evaluate_baselines(shards, experiment, streamed=case.endswith("streamed"))
    return {
        "samples": n,
        "seconds": time.perf_counter() - begin,
        "cpu_seconds": time.process_time() - cpu,
        "scores": scores,
        "anon_mib": (peak.anon - start_anon) / 1024,
        "file_mib": (peak.file - start_file) / 1024,
    }


def _evaluate_baselines(shards: Path, experiment: dict, streamed: bool) -> tuple[int, dict]:
    """What evaluate does for image -> time series without a model: load the test split,
    fit the group mean, ridge (voxel PCA) and ridge_parcel on the training split (in memory,
    or streamed over its shards as evaluate does above ``evaluate.in_memory_mb``) and score."""
    from modalmerge.evaluation.scoring import BaselineSettings, ScoringInput, condition_features
    from modalmerge.evaluation.time_series import score_time_series
    from modalmerge.settings import ExperimentSettings
    from modalmerge.stages.common import SplitArrays, collect_split
    from modalmerge.stages.evaluate import parcel_features
    from modalmerge.stages.evaluate_stream import train_stream

    test = collect_split(shards, "test", experiment, batch_size=32)
    test.prediction = test.target  # no model: its scores are not the point here
    settings = BaselineSettings(alphas=np.array([0.1, 1.0, 10.0, 100.0, 1e3, 1e4]), n_components=20)
    if streamed:
        stream = train_stream(shards, ExperimentSettings.coerce(experiment), None, None, True)
        train, x_train, parcel_train = SplitArrays(), None, None
    else:
        stream = None
        train = collect_split(shards, "train", experiment, batch_size=32)
        x_train = condition_features("image", train.condition, None)
        parcel_train = parcel_features(shards, "train", train.subjects)
    data = ScoringInput(
        condition="image", train=train, test=test, x_train=x_train,
        x_test=condition_features("image", test.condition, None), baselines=settings,
        parcel_train=parcel_train, parcel_test=parcel_features(shards, "test", test.subjects),
        train_stream=stream,
    )  # fmt: skip
    scored = score_time_series(data)
    names = ("group_mean", "ridge", "ridge_parcel")
    return len(test.subjects), {k: scored.scores[k]["pearson_r"] for k in names}


def memory_main(args) -> None:
    """Write each cohort, then run every case in a fresh child process and tabulate."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.cohorts:
            root = Path(tmp) / f"n{n}"
            root.mkdir()
            start = time.perf_counter()
            shards = _write_cohort(
                root, n, args.n_time, args.n_roi, args.side, args.per_shard, args.held_out
            )
            manifest = json.loads((shards / "manifest.json").read_text())
            files = sum(e["split"] == "train" for e in manifest["shards"])
            print(f"{n} subjects: shards written in {time.perf_counter() - start:.1f} s, "
                  f"{manifest['n_samples']} samples, {files} train file(s)", flush=True)  # fmt: skip
            for case in args.cases:
                out = subprocess.run(
                    [sys.executable, __file__, "--memory-case", case, "--shards", str(shards)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                results[n, case] = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"  {case}: {results[n, case]}", flush=True)
    small, large = min(args.cohorts), max(args.cohorts)
    print(f"\npeak memory above the process's level before the case (MiB); ratio {large}/{small}")
    print("| case | " + " | ".join(f"{n} subj: samples, anon, file" for n in args.cohorts)
          + f" | anon ratio {large}/{small} |")  # fmt: skip
    print("|---|" + "---|" * (len(args.cohorts) + 1))
    for case in args.cases:
        cells = [
            f"{results[n, case]['samples']}, {results[n, case]['anon_mib']:.1f}, "
            f"{results[n, case]['file_mib']:.1f}"
            for n in args.cohorts
        ]
        ratio = results[large, case]["anon_mib"] / max(results[small, case]["anon_mib"], 1e-9)
        print(f"| {case} | " + " | ".join(cells) + f" | {ratio:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory", action="store_true", help="peak-memory table instead")
    parser.add_argument("--cohorts", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--side", type=int, default=24, help="--memory: image side (voxels)")
    parser.add_argument("--per-shard", type=int, default=64, help="--memory: subjects_per_shard")
    parser.add_argument(
        "--cases", nargs="+", choices=MEMORY_CASES, default=MEMORY_CASES, help="--memory: cases"
    )
    parser.add_argument(
        "--held-out",
        type=int,
        default=None,
        help="--memory: about this many val and test subjects each, whatever the cohort",
    )
    parser.add_argument("--memory-case", choices=MEMORY_CASES, help=argparse.SUPPRESS)
    parser.add_argument("--shards", type=Path, help=argparse.SUPPRESS)
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
    if args.memory_case:
        print(json.dumps(_memory_case(args.memory_case, args.shards)))
        return
    if args.memory:
        memory_main(args)
        return
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
