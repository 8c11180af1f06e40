"""``planted_link_top1`` of an attention ENSEMBLE: several fits' saved attention averaged.

Reads ``<fit>/<split>_attention.npy`` (per head, mean over the split's samples; written by
``benchmarks/regional_workflow_val.py``) of each ``--fits`` directory, averages each fit's
heads, then the fits (each fit weighs the same, whatever its head count: the mean over
training seeds, heads and samples), and scores that map against ``<root>/raw/planted_links.tsv``
with the package's own scorer (:func:`~modalmerge.evaluation.planted.planted_link_attention`:
the same peak rule and seeded permutation null as ``evaluate``). Prints each fit alone
(a check: it reproduces ``regional_workflow_val.py``'s score), with ``--subsets`` every
ensemble of two to n - 1 of the fits, and the ensemble of all fits with each link's hit or
miss, peak and the best region other than the source (the margin; the smallest margin
over the links is printed last). No training; it reads only saved attention and the planted-links table::

    .venv/bin/python benchmarks/regional_attention_ensemble.py results/regional_tune \\
        --fits /tmp/links/C_lr2 /tmp/links/C_lr2_seed1 /tmp/links2/C_lr2_seed2 --subsets
"""

from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.evaluation.planted import planted_link_attention, read_planted_links
from modalmerge.io import InputError


def mean_attention(fit: Path, split: str) -> np.ndarray:
    """One fit's (target ROIs, regions) attention, mean over its heads."""
    path = fit / f"{split}_attention.npy"
    if not path.exists():
        raise InputError(path, "no saved attention (run regional_workflow_val.py first)")
    heads = np.load(path)
    if heads.ndim != 3:
        raise InputError(path, f"expected (heads, target ROIs, regions), got shape {heads.shape}")
    return heads.mean(axis=0)


def score(attention: np.ndarray, links: pd.DataFrame) -> tuple[dict, dict]:
    """The package's ``planted_link_top1`` scores and record (targets are labels 1..n)."""
    labels = np.arange(1, attention.shape[0] + 1)
    return planted_link_attention(attention, labels, links)


def line(name: str, scores: dict, record: dict) -> str:
    n = record["n_links"]
    hits = round(scores["planted_link_top1"] * n)
    return (f"{name}: {hits} of {n} ({scores['planted_link_top1']:.3f}), "
            f"null {scores['planted_link_top1_null']:.3f} "
            f"(p95 {scores['planted_link_top1_null_p95']:.3f}, p {scores['planted_link_top1_p_value']:.3f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path, help="the run whose raw/planted_links.tsv scores")
    parser.add_argument("--fits", type=Path, nargs="+", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--subsets", action="store_true", help="also every 2..n-1 subset")
    args = parser.parse_args()
    table = args.root / "raw" / "planted_links.tsv"
    links = read_planted_links(table)
    if links is None:
        raise InputError(table, "missing: not a planted cohort")
    maps = {fit: mean_attention(fit, args.split) for fit in args.fits}
    shapes = {m.shape for m in maps.values()}
    if len(shapes) != 1:
        raise InputError(args.fits[0], f"fits disagree on the attention shape: {sorted(shapes)}")
    for fit, attention in maps.items():
        print(line(str(fit), *score(attention, links)))
    sizes = range(2, len(maps)) if args.subsets else []
    for k in sizes:
        for subset in combinations(args.fits, k):
            ensemble = np.mean([maps[f] for f in subset], axis=0)
            print(line(" + ".join(f.name for f in subset), *score(ensemble, links)))
    ensemble = np.mean(list(maps.values()), axis=0)
    scores, record = score(ensemble, links)
    print(line(f"ENSEMBLE of {len(maps)}", scores, record))
    for link in record["links"]:
        verdict = "hit" if link["peak_label"] == link["source_label"] else "miss"
        other = link["attention_on_source"] - link["margin"]
        print(f"  {verdict:4s} {link['target_label']} <- {link['source_label']} "
              f"(peak {link['peak_label']}, weight on source {link['attention_on_source']:.3f}, "
              f"best other region {link['runner_up_label']} {other:.3f})")  # fmt: skip
    weakest = min(link["margin"] for link in record["links"])
    print(f"smallest margin (weight on the source minus the best other region): {weakest:+.3f}")
    print(f"distinct peak regions over the {ensemble.shape[0]} ROIs: "
          f"{len(set(ensemble.argmax(axis=1).tolist()))}")  # fmt: skip


if __name__ == "__main__":
    main()
