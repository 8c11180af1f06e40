"""Peak memory of the evaluate stage's 4D sample scoring: all samples at once against
scored subject by subject as they are drawn, as the held-out split grows.

The evaluate stage of a generative ``volume_series`` model draws ``S`` samples of every
held-out 4D window. Held at once (``draw_samples`` + ``add_volume_sample_scores``) they are
``n x S`` windows, which grows with the cohort; streamed (``stream_volume_samples``, what
the stage does) memory holds a batch and the subjects it leaves unfinished. Each variant
runs in its own child process, and its peak RSS is the child's own (``ru_maxrss``), beside
the same child's RSS before sampling (the data), so the figure to carry across machines is
the growth of the sampling part with n and the ratio streamed / at once.

The model is a stand-in with the real interface (``parameters()``, ``sample()``): it returns
seeded normal draws around the condition's mean, so the benchmark measures the stage's
buffers and scoring, not a denoiser (whose activations do not depend on n).

    .venv/bin/python benchmarks/bench_volume_samples_memory.py            # n 40 and 160
    .venv/bin/python benchmarks/bench_volume_samples_memory.py --windows 40 80 160 --samples 16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import torch

from modalmerge.evaluation.scoring import Scored
from modalmerge.evaluation.volume_series import add_volume_sample_scores
from modalmerge.stages.common import SplitArrays
from modalmerge.stages.evaluate_samples import draw_samples, stream_volume_samples

GRID = (16, 16, 16)
T = 20
WINDOWS_PER_SUBJECT = 5


class StandIn(torch.nn.Module):
    """Seeded draws of the target's shape: what the stage does with them is measured."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def sample(self, condition, n_samples, seed, time_offset=None, return_attention=False):
        shape = (len(condition), n_samples, T, *GRID)
        draws = torch.randn(shape, generator=seed) + condition.mean()
        return SimpleNamespace(samples=draws, attention=None)


def _split(n: int, prefix: str, rng) -> SplitArrays:
    target = np.zeros((n, T, *GRID), np.float32)
    target[:, :, 2:14, 2:14, 2:14] = rng.standard_normal((n, T, 12, 12, 12))
    return SplitArrays(
        subjects=[f"{prefix}-{i // WINDOWS_PER_SUBJECT:03d}" for i in range(n)],
        window_start=np.arange(n, dtype=np.int64) % WINDOWS_PER_SUBJECT * T,
        condition=rng.standard_normal((n, 1, 4, 4, 4)).astype(np.float32),
        target=target,
    )


def child(n: int, samples: int, streamed: bool) -> dict:
    """One variant in this process: RSS before sampling and at the end, in MB."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    test, train = _split(n, "sub", rng), _split(40, "train", rng)
    units = sorted(set(test.subjects))
    scored = Scored(scores={"model": {}}, arrays={}, per_unit={"units": units, "model": {}})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = StandIn()
    if streamed:
        test.prediction, _, found = stream_volume_samples(model, test, train, samples, 0)
        from modalmerge.evaluation.volume_series import finish_volume_sample_scores

        finish_volume_sample_scores(scored, found)
    else:
        drawn, _ = draw_samples(model, test, samples, 0)
        test.prediction = drawn.mean(axis=1)
        add_volume_sample_scores(scored, drawn, test, train)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    crps = float(np.mean(scored.per_unit["model"]["crps"]))
    return {"before_mb": before, "peak_mb": peak, "crps": crps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[40, 160])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, s, streamed = int(args.child[0]), int(args.child[1]), args.child[2] == "1"
        print(json.dumps(child(n, s, streamed)))
        return
    window_mb = args.samples * T * np.prod(GRID) * 4 / 2**20
    print(f"S = {args.samples} samples of {T} x {GRID} per window ({window_mb:.1f} MB)\n")
    print("| held-out windows | samples at once (MB) | at once, sampling part | streamed (MB) "
          "| streamed, sampling part | streamed / at once | same CRPS |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for n in args.windows:
        found = {}
        for streamed in (False, True):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(n),
                str(args.samples),
                str(int(streamed)),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            found[streamed] = json.loads(out.strip().splitlines()[-1])
        whole, stream = found[False], found[True]
        grow_w = whole["peak_mb"] - whole["before_mb"]
        grow_s = stream["peak_mb"] - stream["before_mb"]
        print(f"| {n} | {whole['peak_mb']:.0f} | {grow_w:.0f} | {stream['peak_mb']:.0f} "
              f"| {grow_s:.0f} | {grow_s / grow_w:.2f} | {whole['crps'] == stream['crps']} |")  # fmt: skip


if __name__ == "__main__":
    main()
