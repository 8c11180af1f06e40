"""Peak memory of loading a saved model: ``MultiModalModel.load`` (memory-mapped checkpoint)
against the same load reading the whole checkpoint into memory first (``mmap=False``).

Usage: .venv/bin/python benchmarks/bench_model_load.py [--config seed]

The model of ``benchmarks/bench_training.py``'s ``--config`` is saved once; each way of
loading then runs in a fresh child process, which reports its peak anonymous memory
(``Pss_Anon``, sampled every 5 ms) above its level just before the load, in MiB, and
the ratio of the two. The weights' own size is printed for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_shards import _rollup_kb  # noqa: E402
from bench_training import CONFIGS  # noqa: E402

from modalmerge.models.model import MultiModalModel  # noqa: E402


def _load(path: str, mmap: bool) -> dict:
    """Load ``path`` as :meth:`MultiModalModel.load` does, with or without ``mmap``."""
    torch.set_num_threads(1)
    peak = {"anon": 0}
    stop = threading.Event()

    def sample() -> None:
        peak["anon"] = max(peak["anon"], _rollup_kb(os.getpid())["Pss_Anon"])

    def run() -> None:
        while not stop.wait(0.005):
            sample()

    start = _rollup_kb(os.getpid())["Pss_Anon"]
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if mmap:
        model = MultiModalModel.load(path)
    else:  # what load did before: the whole file in memory, then copied into the model
        data = torch.load(path, map_location="cpu", weights_only=True)
        model = MultiModalModel.from_config(data["config"])
        model.load_state_dict(data["state_dict"])
        del data
    sample()
    stop.set()
    thread.join()
    n_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {"peak_mib": (peak["anon"] - start) / 1024, "weights_mib": n_bytes / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="seed", choices=list(CONFIGS))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_load(args.child[0], args.child[1] == "mmap")))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        torch.manual_seed(0)
        MultiModalModel(**CONFIGS[args.config]).save(path)
        results = {}
        for way in ("mmap", "read"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path), way],
                check=True,
                capture_output=True,
                text=True,
            )
            results[way] = json.loads(out.stdout.strip().splitlines()[-1])
    weights = results["mmap"]["weights_mib"]
    print(f"config {args.config}: weights {weights:.1f} MiB")
    print("| load | peak anonymous memory above the level before (MiB) | x weights |")
    print("|---|---|---|")
    for way, label in (("read", "torch.load into memory (before)"), ("mmap", "mmap=True (now)")):
        peak = results[way]["peak_mib"]
        print(f"| {label} | {peak:.1f} | {peak / weights:.2f} |")
    print(f"ratio mmap / read: {results['mmap']['peak_mib'] / results['read']['peak_mib']:.2f}")


if __name__ == "__main__":
    main()
