"""Model A − model B, paired per held-out subject, in each workflow tree and pooled over all.

``summary.csv`` and :func:`modalmerge.evaluation.summary.compare_experiments` pair two
experiments within one tree (one cohort: 9 test subjects by default). Several
independent cohorts (the repeats of a ``--configfile`` with ``repeats: K``) answer the same
question with more subjects; this reads each tree's ``eval/<A>/metrics.json`` and
``eval/<B>/metrics.json``, checks they score the same subjects, and prints per tree and
pooled the mean of A, of B, and the paired difference A − B with its seeded bootstrap
interval over subjects (the bootstrap of the pooled row resamples subjects across
cohorts; the seeded bootstrap draws subject indices, so the pooled interval depends, in
its third decimal, on the order the trees are named: quote the command). Each side is
``EXPERIMENT[:PREDICTOR]``: the model by default, or one of the experiment's baselines
(``image_to_timeseries_xattn:ridge_parcel``), so a model is compared with a baseline on the
same subjects. A realism ratio is not pooled this way (it is a ratio of means: use
``diffusion_must_show.py``). It chooses nothing.

    .venv/bin/python benchmarks/paired_pooled.py image_to_timeseries_xattn \\
        image_to_timeseries_mix_ens3 results/diffusion_confirm{,/rep-1,/rep-2} \\
        --metric pearson_r --metric mse
    .venv/bin/python benchmarks/paired_pooled.py image_to_timeseries_xattn \\
        image_to_timeseries_xattn:ridge_parcel results/diffusion_confirm{,/rep-1,/rep-2}
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from modalmerge.evaluation.intervals import paired_difference
from modalmerge.evaluation.summary import read_metrics


def _split(spec: str) -> tuple[str, str]:
    """``EXPERIMENT[:PREDICTOR]`` -> (experiment, predictor); the predictor defaults to
    ``model`` (a baseline: ``group_mean``, ``ridge``, ``ridge_parcel``, ...)."""
    name, _, predictor = spec.partition(":")
    return name, predictor or "model"


def per_subject(root: Path, a: str, b: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The per-subject ``metric`` of ``a`` and ``b`` (each ``EXPERIMENT[:PREDICTOR]``) in
    one tree; InputError naming a missing or broken ``metrics.json``, ValueError naming the
    tree when the two score other subjects or lack the predictor or the metric."""
    units, values = [], []
    for spec in (a, b):
        name, predictor = _split(spec)
        per_unit = read_metrics(root / "eval" / name / "metrics.json")["per_unit"]
        if metric not in per_unit.get(predictor, {}):
            raise ValueError(f"{root}: {name} has no per-subject {metric!r} of {predictor!r}")
        units.append(per_unit["units"])
        values.append(np.asarray(per_unit[predictor][metric], dtype=np.float64))
    if units[0] != units[1]:
        raise ValueError(f"{root}: {a} and {b} score other held-out subjects")
    return values[0], values[1]


def row(label: str, x: np.ndarray, y: np.ndarray) -> str:
    diff = paired_difference(x, y)
    return (f"| {label} | {len(x)} | {x.mean():.4f} | {y.mean():.4f} | {diff.value:+.4f} "
            f"[{diff.ci_low:+.4f}, {diff.ci_high:+.4f}] |")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="experiment A, EXPERIMENT[:PREDICTOR] (default model)")
    parser.add_argument("b", help="experiment B, likewise (e.g. NAME:ridge_parcel)")
    parser.add_argument("trees", nargs="+", help="workflow trees (results/<name>[/rep-k])")
    parser.add_argument("--metric", action="append", help="per-subject metric (default pearson_r)")
    args = parser.parse_args(argv)
    for metric in args.metric or ["pearson_r"]:
        print(f"\n{metric}: {args.a} (A) − {args.b} (B)\n")
        print("| tree | n | A | B | A − B [95 % CI] |")
        print("|---|---|---|---|---|")
        pooled: list[tuple[np.ndarray, np.ndarray]] = []
        for tree in args.trees:
            try:
                x, y = per_subject(Path(tree), args.a, args.b, metric)
            except ValueError as exc:  # InputError is one: the file and its fault, one line
                raise SystemExit(f"error: {exc}") from None
            print(row(tree, x, y))
            pooled.append((x, y))
        if len(pooled) > 1:
            xs, ys = (np.concatenate(part) for part in zip(*pooled, strict=True))
            print(row("pooled", xs, ys))


if __name__ == "__main__":
    main()
