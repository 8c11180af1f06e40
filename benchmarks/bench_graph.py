"""Throughput and peak memory of the graph encoder on 1,000-node graphs, on CPU.

The ``graph_transformer`` encoder (attention biased by the edge weights, one
float bias ``(B, heads, N, N)`` handed to ``scaled_dot_product_attention``) is
timed against its plain dense-attention twin (``edge_bias=False``: the same
blocks with no bias, so SDPA may take its unmasked kernel) in the same process,
interleaved, with :mod:`torch.utils.benchmark`. Peak memory is measured for
each variant and mode in a fresh child process (this script with ``--memory``):
the rise of its peak resident set (``VmHWM``) over its resident set just before
one call, inputs and weights already built (in one process the allocator keeps
the first variant's pages, hiding the second's). Run on demand (not a test)::

    nice -n 10 .venv/bin/python benchmarks/bench_graph.py --threads 2
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils import benchmark

from modalmerge.models.encoders.graph import GraphTransformerEncoder


def _status_kib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")  # pragma: no cover - not Linux


def _statement(train: bool) -> str:
    return "encoder(x).sum().backward()" if train else "with torch.no_grad(): encoder(x)"


def throughput(encoder: torch.nn.Module, x: torch.Tensor, train: bool, min_time: float) -> float:
    """Samples per second of forward (and backward when ``train``)."""
    encoder.train(train)
    timer = benchmark.Timer(
        stmt=_statement(train), globals={"encoder": encoder, "x": x, "torch": torch},
        num_threads=torch.get_num_threads(),
    )  # fmt: skip
    seconds = timer.blocked_autorange(min_run_time=min_time).median
    encoder.zero_grad(set_to_none=True)
    return x.shape[0] / seconds


def peak_rise_mib(argv: list[str]) -> float:
    """Peak memory rise (MiB) of one call, in a fresh child process (``--memory``)."""
    out = subprocess.run(
        [sys.executable, __file__, *argv], check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Print one row per (variant, mode): samples/s and peak memory rise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--memory", choices=("biased", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--train", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = args.nodes
    a = torch.rand(args.batch, n, n)
    x = (a + a.transpose(1, 2)) / 2  # (B, N, N): adjacency only, F = 0
    variants = {"edge-biased": "biased", "plain dense twin": "plain"}
    encoders = {
        variant: GraphTransformerEncoder(
            (n, n), args.dim, n_heads=args.heads, n_layers=args.layers, edge_bias=flag == "biased"
        )
        for variant, flag in variants.items()
        if args.memory in (None, flag)
    }
    if args.memory is not None:  # the child: one call, print its peak rise
        (encoder,) = encoders.values()
        encoder.train(args.train)
        before = _status_kib("VmRSS")
        exec(_statement(args.train), {"encoder": encoder, "x": x, "torch": torch})  # noqa: S102
        print((_status_kib("VmHWM") - before) / 1024.0)
        return
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads; {n} nodes, batch {args.batch}, dim {args.dim}, "
        f"{args.heads} heads, {args.layers} layers"
    )
    print(f"{'variant':<18} {'mode':<9} {'samples/s':>10} {'peak MiB':>9}")
    common = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
              if k in ("nodes", "batch", "dim", "heads", "layers", "threads")]  # fmt: skip
    for train in (False, True):
        for variant, encoder in encoders.items():
            rate = throughput(encoder, x, train, args.min_time)
            flags = [*common, f"--memory={variants[variant]}", *(["--train"] if train else [])]
            peak = peak_rise_mib(flags)
            mode = "fwd+bwd" if train else "forward"
            print(f"{variant:<18} {mode:<9} {rate:>10.2f} {peak:>9.1f}")


if __name__ == "__main__":
    main()
