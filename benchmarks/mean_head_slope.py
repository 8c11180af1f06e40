"""How large is the frozen mean head's prediction against the truth of new subjects?

The evidence behind ``calibrate_mean`` (docs/benchmarks.md, "Calibrated mean and spread:
the rule, written first"). For each workflow tree given, the cross-attention model (the
residual diffusion model's mean head) predicts every window of a split, and this prints
the least-squares slope of the truth on the prediction (through the origin: both are
standardised series), the R² of the prediction as it is and scaled by that slope, and, for
comparison, the R² of the training subjects' mean window at the same start (the centre of
the climatological ensemble) and of the best combination of the two. A slope below 1 on
held-out subjects (``val``) with one near 1 on ``train`` means the head predicts new
subjects too large, as a model fitted to its training subjects does. Reads no test subject
unless ``--split test`` is asked for.

    .venv/bin/python benchmarks/mean_head_slope.py --config configs/diffusion_spread.yaml \
        results/diffusion_spread results/diffusion_spread/rep-1 results/diffusion_spread/rep-2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from modalmerge.stages.common import collect_split, load_experiment_model

XATTN = "image_to_timeseries_xattn"


def _r2(truth: np.ndarray, prediction: np.ndarray) -> float:
    return float(1 - ((truth - prediction) ** 2).mean() / truth.var())


def report(root: Path, experiment: dict, split: str) -> str:
    """One table row: slope, R² before/after, group-mean window R², best combination."""
    model, tokenizer = load_experiment_model(root / "models" / experiment["name"] / "model.pt")
    train = collect_split(root / "shards", "train", experiment, tokenizer)
    held = collect_split(root / "shards", split, experiment, tokenizer, model=model)
    y, mu = held.target.astype(np.float64), held.prediction.astype(np.float64)
    slope = float((mu * y).sum() / (mu * mu).sum())
    group = {s: train.target[train.window_start == s].mean(axis=0) for s in set(held.window_start)}
    g = np.stack([group[s] for s in held.window_start]).astype(np.float64)
    design = np.stack([mu.ravel(), g.ravel()], axis=1)
    both = np.linalg.lstsq(design, y.ravel(), rcond=None)[0]
    n = len(set(held.subjects))
    return (f"| {root} | {split} | {n} | {slope:.3f} | {_r2(y, mu):.3f} | {_r2(y, slope * mu):.3f} "
            f"| {_r2(y, g):.3f} | {_r2(y, both[0] * mu + both[1] * g):.3f} "
            f"({both[0]:.2f} mu + {both[1]:.2f} g) |")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="workflow trees (results/<name>)")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--xattn", default=XATTN, help="the mean head's experiment")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    args = parser.parse_args(argv)
    entries = yaml.safe_load(args.config.read_text())["experiments"]
    found = [e for e in entries if e["name"] == args.xattn]
    if not found:
        raise SystemExit(f"{args.config}: no experiment named {args.xattn!r}")
    print(
        "| tree | split | subjects | slope of truth on mu | R² mu | R² slope x mu "
        "| R² group-mean window g | R² best a mu + b g |\n|---|---|---|---|---|---|---|---|"
    )
    for root in args.roots:
        print(report(root, found[0], args.split))


if __name__ == "__main__":
    main()
