"""Throughput of the spatiotemporal encoder on CPU: divided space-time attention vs a joint twin.

Both encoders are :class:`modalmerge.models.encoders.volume_series.SpatioTemporalEncoder`
with the same patches, sizes and layers; ``attention="divided"`` attends over time then
over space in each block (TimeSformer), ``attention="joint"`` over all ``t x s`` tokens at
once. They are timed in the same process, interleaved, forward + backward on a batch
(training) and forward alone (inference), and each one's peak memory is measured in a
fresh subprocess (the high-water mark of one training step above the built model, Linux).
Run on demand (not a test)::

    .venv/bin/python benchmarks/bench_volume_series.py --threads 1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch

from modalmerge.models.encoders.volume_series import SpatioTemporalEncoder

# (name, window (T, D, H, W), patch): the decoding config's 20 volumes of 18 x 22 x 18
# with 6^3 patches (20 x 36 = 720 tokens), and 10 volumes with 3^3 patches (10 x 288 = 2880
# tokens: the joint twin's attention matrix alone is then 2880^2 x 4 heads x 4 B = 133 MB
# per sample)
CASES = [
    ("20 x 18x22x18, patch 6: 20 x 36 tokens", (20, 18, 22, 18), 6),
    ("10 x 18x22x18, patch 3: 10 x 288 tokens", (10, 18, 22, 18), 3),
]


def build(shape, patch: int, attention: str, dim: int, layers: int) -> SpatioTemporalEncoder:
    torch.manual_seed(0)
    return SpatioTemporalEncoder(shape, dim, patch=patch, n_layers=layers, attention=attention)


def step_seconds(encoder, x: torch.Tensor, train: bool) -> float:
    start = time.perf_counter()
    if train:
        encoder.train()
        encoder(x).square().mean().backward()
    else:
        encoder.eval()
        with torch.no_grad():
            encoder(x)
    return time.perf_counter() - start


def _status_kb(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def peak_mb(shape, patch, attention, dim, layers, batch) -> float:
    """Peak resident memory a training step adds above the built model and its input (MB), in a
    fresh process: the kernel's high-water mark (VmHWM) is reset (``/proc/self/clear_refs``)
    just before the step, so the imports' own peak does not hide it (Linux only)."""
    code = (
        "import json, sys, torch\n"
        "sys.path.insert(0, '.')\n"
        "from benchmarks.bench_volume_series import build, _status_kb\n"
        f"torch.set_num_threads(1); e = build({shape!r}, {patch}, {attention!r}, {dim}, {layers})\n"
        f"x = torch.randn({batch}, *{shape!r})\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = _status_kb('VmRSS')\n"
        "e(x).square().mean().backward()\n"
        "print(json.dumps((_status_kb('VmHWM') - before) / 1024))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, threads {a.threads}, batch {a.batch}, dim {a.dim}, "
          f"layers {a.layers}, median of {a.repeats} interleaved steps")  # fmt: skip
    print(
        "| window, tokens | attention | train samples/s | inference samples/s | peak MB (train step) |"
    )
    print("|---|---|---|---|---|")
    for name, shape, patch in CASES:
        encoders = {m: build(shape, patch, m, a.dim, a.layers) for m in ("divided", "joint")}
        x = torch.randn(a.batch, *shape)
        times = {(m, t): [] for m in encoders for t in (True, False)}
        for m in encoders:  # warm-up
            step_seconds(encoders[m], x, True)
        for _ in range(a.repeats):
            for m, enc in encoders.items():
                for train in (True, False):
                    times[m, train].append(step_seconds(enc, x, train))
        for m in encoders:
            train = sorted(times[m, True])[a.repeats // 2]
            infer = sorted(times[m, False])[a.repeats // 2]
            mem = peak_mb(shape, patch, m, a.dim, a.layers, a.batch)
            print(f"| {name} | {m} | {a.batch / train:.1f} | {a.batch / infer:.1f} | {mem:.0f} |")


if __name__ == "__main__":
    main()
