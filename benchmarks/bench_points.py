"""Point-cloud encoder throughput on CPU: point_transformer against a dense-attention twin.

Both encoders take the same clouds ``(B, N, 3 + F)`` (default 10,000 points: a cortical
surface at ~2 mm spacing) and return the same number of centroid tokens:

- ``point_transformer`` (:class:`modalmerge.models.encoders.point_cloud.PointTransformerEncoder`):
  farthest-point centroids, point-transformer local attention over k nearest neighbours
  at two scales, then one transformer layer over the centroids;
- ``dense twin``: the same point embedding, then one transformer layer of global
  self-attention over ALL N points (PyTorch's fused scaled-dot-product attention), read
  out at the same farthest-point centroids.

Throughput (samples/s) is timed in the same process, interleaved, with
:mod:`torch.utils.benchmark` (median of ``blocked_autorange``), for a forward pass
(``torch.no_grad``) and a training step (forward + backward). Peak memory is the peak
resident set of a forked child running one training step, minus its own resident set
before the step (``VmHWM`` reset through ``/proc/self/clear_refs``): CPU torch has no
allocator statistics.
Run on demand (not a test)::

    nice -n 10 .venv/bin/python benchmarks/bench_points.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import resource

import torch
from torch import nn
from torch.utils import benchmark

from modalmerge.models.encoders.point_cloud import (
    FourierCoordinates,
    PointTransformerEncoder,
    farthest_point_sample,
    gather,
)


class DensePointEncoder(nn.Module):
    """The twin: global self-attention over every point, read out at the FPS centroids."""

    def __init__(self, input_shape, dim: int, n_tokens: int, n_heads: int = 4):
        super().__init__()
        width = input_shape[1]
        self.n_tokens = n_tokens
        self.embed = nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, dim))
        self.position = FourierCoordinates(dim)
        self.layer = nn.TransformerEncoderLayer(
            dim, n_heads, 4 * dim, 0.0, "gelu", batch_first=True, norm_first=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xyz = x[..., :3] / 70.0
        h = self.embed(torch.cat([xyz, x[..., 3:]], -1)) + self.position(xyz)  # (B, N, dim)
        h = self.layer(h)
        return gather(h, farthest_point_sample(x[..., :3], self.n_tokens))


def clouds(batch: int, n_points: int, n_features: int, seed: int = 0) -> torch.Tensor:
    """Points on a 70 mm sphere with random features."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randn(batch, n_points, 3, generator=g)
    xyz = 70 * xyz / xyz.norm(dim=-1, keepdim=True)
    return torch.cat([xyz, torch.randn(batch, n_points, n_features, generator=g)], -1)


def step(model: nn.Module, x: torch.Tensor) -> None:
    model(x).square().mean().backward()


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(key))
    return int(line.split()[1]) / 1024  # kB


def peak_mb(model: nn.Module, x: torch.Tensor) -> float:
    """Peak RSS (MB) a training step adds, measured in a forked child.

    The child resets its peak (``/proc/self/clear_refs`` = 5, Linux >= 4.0), runs one
    step and reports ``VmHWM - VmRSS before the step`` through a pipe.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one step, then leave without cleanup
        os.close(read)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_mb("VmRSS")
        step(model, x)
        os.write(write, f"{_status_mb('VmHWM') - base:.1f}".encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        value = f.read()
    _, status = os.waitpid(pid, 0)
    if status or not value:
        raise RuntimeError(f"the measuring child failed (status {status})")
    return float(value)


def main(argv: list[str] | None = None) -> None:
    """Print a table: encoder, parameters, forward and training samples/s, peak MB."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=5.0, help="seconds per timing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.points, 3 + args.features)
    x = clouds(args.batch, *shape[:1], args.features)
    models = {
        "point_transformer (kNN 16+32)": PointTransformerEncoder(
            shape, args.dim, n_tokens=args.tokens, neighbours=(16, 32), n_layers=1
        ),
        "dense twin (global attention)": DensePointEncoder(shape, args.dim, args.tokens),
    }
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), batch {args.batch}, {args.points} points x "
        f"{3 + args.features}, dim {args.dim}, {args.tokens} tokens, load {os.getloadavg()}"
    )
    print("| encoder | parameters | forward samples/s | train step samples/s | peak MB (step) |")
    print("|---|---|---|---|---|")
    for name, model in models.items():
        n_params = sum(p.numel() for p in model.parameters())
        times = []
        for stmt in ("with torch.no_grad(): model(x)", "step(model, x)"):
            timer = benchmark.Timer(
                stmt=stmt,
                globals={"model": model, "x": x, "torch": torch, "step": step},
                num_threads=args.threads,
            )
            times.append(timer.blocked_autorange(min_run_time=args.min_time).median)
        memory = peak_mb(model, x)
        print(
            f"| {name} | {n_params:,} | {args.batch / times[0]:.2f} | "
            f"{args.batch / times[1]:.2f} | {memory:.0f} |"
        )
    print(
        f"max RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
