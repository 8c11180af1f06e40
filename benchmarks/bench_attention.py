"""Time the cross-attention step: fused SDPA against the explicit softmax(QK^T)V twin.

Both paths are those of :class:`modalmerge.models.conditioning.CrossAttentionLayer`
(``attend(..., return_attention=False)`` calls
:func:`torch.nn.functional.scaled_dot_product_attention`; ``return_attention=True``
computes ``softmax(Q K^T / sqrt(d)) V`` and keeps the weights for drawing). They
are timed in the same process, interleaved, with :mod:`torch.utils.benchmark`,
and checked to agree. Run on demand (not a test)::

    .venv/bin/python benchmarks/bench_attention.py --threads 1
"""

from __future__ import annotations

import argparse

import torch
from torch.utils import benchmark

from modalmerge.models.conditioning import CrossAttentionLayer

# (name, batch, n_target queries, n_condition tokens): the seed configuration's 50 time
# queries over a resnet50 grid of a 64^3 image (2x2x2 = 8 tokens), a cnn grid (8^3 = 512
# tokens) and a long condition (4096 tokens)
SHAPES = [
    ("seed: 50 x 8 tokens", 8, 50, 8),
    ("cnn grid: 50 x 512", 8, 50, 512),
    ("long: 256 x 4096", 4, 256, 4096),
]


def time_attention(
    dim: int, heads: int, batch: int, n_q: int, n_kv: int, backward: bool, min_time: float
) -> tuple[float, float, float]:
    """Median seconds of the SDPA and explicit paths, and their largest output difference."""
    layer = CrossAttentionLayer(dim, heads).eval()
    d = dim // heads
    q = torch.randn(batch, heads, n_q, d, requires_grad=backward)
    k = torch.randn(batch, heads, n_kv, d, requires_grad=backward)
    v = torch.randn(batch, heads, n_kv, d, requires_grad=backward)
    fused, _ = layer.attend(q, k, v, None, False)
    explicit, _ = layer.attend(q, k, v, None, True)
    diff = (fused - explicit).abs().max().item()
    stmt = "out, _ = layer.attend(q, k, v, None, explicit)"
    if backward:
        stmt += "; out.sum().backward()"
    results = []
    for explicit_path in (False, True):
        timer = benchmark.Timer(
            stmt=stmt,
            globals={"layer": layer, "q": q, "k": k, "v": v, "explicit": explicit_path},
            num_threads=torch.get_num_threads(),
        )
        results.append(timer.blocked_autorange(min_run_time=min_time).median)
    return results[0], results[1], diff


def main(argv: list[str] | None = None) -> None:
    """Print one table row per shape: times (ms) of both paths and the ratio explicit/SDPA."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512, help="embedding size (seed: 512)")
    parser.add_argument("--heads", type=int, default=16, help="attention heads (seed: 16)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement")
    parser.add_argument("--backward", action="store_true", help="time forward + backward")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    mode = "forward+backward" if args.backward else "forward"
    print(
        f"cross-attention {mode}, dim {args.dim}, {args.heads} heads, "
        f"torch {torch.__version__}, {args.threads} thread(s), device cpu"
    )
    print(f"{'shape':<24}{'SDPA ms':>10}{'explicit ms':>13}{'explicit/SDPA':>15}{'max |diff|':>12}")
    for name, batch, n_q, n_kv in SHAPES:
        fused, explicit, diff = time_attention(
            args.dim, args.heads, batch, n_q, n_kv, args.backward, args.min_time
        )
        print(
            f"{name:<24}{fused * 1e3:>10.3f}{explicit * 1e3:>13.3f}"
            f"{explicit / fused:>15.2f}{diff:>12.1e}"
        )


if __name__ == "__main__":
    main()
