"""Throughput and peak memory of the graph encoder on 1,000-node graphs, on CPU.

The ``graph_transformer`` encoder (attention biased by the edge weights, one
float bias ``(B, heads, N, N)`` handed to ``scaled_dot_product_attention``) is
timed against its plain dense-attention twin (``edge_bias=False``: the same
blocks with no bias, so SDPA may take its unmasked kernel) in the same process,
interleaved, with :mod:`torch.utils.benchmark`. Peak memory is the rise of the
process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``)
over its resident set before the timed calls. Run on demand (not a test)::

    nice -n 10 .venv/bin/python benchmarks/bench_graph.py --threads 2
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
from torch.utils import benchmark

from modalmerge.models.encoders.graph import GraphTransformerEncoder


def _status_kib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")  # pragma: no cover - not Linux


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:  # pragma: no cover - not Linux / not allowed
        return False


def measure(
    encoder: torch.nn.Module, x: torch.Tensor, train: bool, min_time: float
) -> tuple[float, float]:
    """(samples per second, peak memory rise in MiB) of forward (and backward when ``train``)."""
    encoder.train(train)
    if train:
        stmt = "encoder(x).sum().backward()"
    else:
        stmt = "with torch.no_grad(): encoder(x)"
    timer = benchmark.Timer(
        stmt=stmt, globals={"encoder": encoder, "x": x, "torch": torch},
        num_threads=torch.get_num_threads(),
    )  # fmt: skip
    before = _status_kib("VmRSS")
    peak = float("nan")
    if _reset_peak():
        exec(stmt, {"encoder": encoder, "x": x, "torch": torch})  # noqa: S102 - the timed statement
        peak = (_status_kib("VmHWM") - before) / 1024.0
    seconds = timer.blocked_autorange(min_run_time=min_time).median
    encoder.zero_grad(set_to_none=True)
    return x.shape[0] / seconds, peak


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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = args.nodes
    a = torch.rand(args.batch, n, n)
    x = (a + a.transpose(1, 2)) / 2  # (B, N, N): adjacency only, F = 0
    encoders = {
        variant: GraphTransformerEncoder(
            (n, n), args.dim, n_heads=args.heads, n_layers=args.layers, edge_bias=bias
        )
        for variant, bias in (("edge-biased", True), ("plain dense twin", False))
    }
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads; {n} nodes, batch {args.batch}, dim {args.dim}, "
        f"{args.heads} heads, {args.layers} layers"
    )
    print(f"{'variant':<18} {'mode':<9} {'samples/s':>10} {'peak MiB':>9}")
    for train in (False, True):
        for variant, encoder in encoders.items():
            rate, peak = measure(encoder, x, train, args.min_time)
            mode = "fwd+bwd" if train else "forward"
            print(f"{variant:<18} {mode:<9} {rate:>10.2f} {peak:>9.1f}")


if __name__ == "__main__":
    main()
