"""Two checks on a finished configs/real_group_graph.yaml run (issue 13), from its outputs only:

1. **Spatial blocks as units.** The test sub-graphs overlap (each holds 16 of the ~44 test
   regions), so intervals over sub-graphs are optimistic. Here each test sub-graph's edge r
   is averaged within the spatial block of its centre region, and intervals and paired
   differences are taken over those blocks (few units: read n).
2. **The held-out group.** brainspace also ships the FC of a second, held-out group of
   subjects. Every predictor's edge r against the held-out group's FC sub-matrix, and the
   discovery group's own FC against it (the noise ceiling of a discovery-group target).

    .venv/bin/python benchmarks/real_group_graph_checks.py --root results/real_group_graph
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.evaluation.graph_targets import triangles
from modalmerge.evaluation.intervals import bootstrap_ci, paired_difference, verdict

PREDICTORS = ("model", "group_mean", "ridge", "distance_decay", "ridge_edges")


def _r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="results/real_group_graph")
    args = parser.parse_args()
    root = Path(args.root)
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    table = pd.read_csv(root / "raw" / "regions.tsv", sep="\t").set_index("region")
    nodes = manifest["subgraphs"]["nodes"]
    for experiment in sorted(p.name for p in (root / "eval").iterdir() if p.is_dir()):
        metrics = json.loads((root / "eval" / experiment / "metrics.json").read_text())
        arrays = np.load(root / "eval" / experiment / "predictions.npz")
        units = [str(s) for s in arrays["subjects"]]
        print(f"\n## {experiment} ({len(units)} test sub-graphs)")
        # 1. spatial blocks as units
        block = np.array([manifest["regions"][u]["block"] for u in units])
        blocks = sorted(set(block.tolist()))
        per_block = {
            name: np.array(
                [np.mean(np.array(metrics["per_unit"][name]["edge_r"])[block == b]) for b in blocks]
            )
            for name in PREDICTORS
        }
        print(f"blocks as units (n = {len(blocks)} test blocks): edge r [95% CI]")
        for name in PREDICTORS:
            low, high = bootstrap_ci(per_block[name])
            print(f"  {name:15s} {per_block[name].mean():+.3f} [{low:+.3f}, {high:+.3f}]")
        for name in PREDICTORS[1:]:
            d = paired_difference(per_block["model"], per_block[name])
            print(
                f"  model - {name:15s} {d.value:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"
                f" p={d.p_wilcoxon:.3g} {verdict(d)}"
            )
        # 2. the held-out group's FC
        holdout = np.stack(
            [table.loc[nodes[u], [f"holdout_fc_{r}" for r in nodes[u]]].to_numpy() for u in units]
        )
        truth = triangles(holdout)
        print("edge r against the HELD-OUT group's FC (mean over sub-graphs [95% CI]):")
        scores = {"discovery FC (ceiling)": _r(triangles(arrays["target"]), truth)}
        scores |= {
            name: _r(triangles(arrays["prediction" if name == "model" else name]), truth)
            for name in PREDICTORS
        }
        for name, values in scores.items():
            low, high = bootstrap_ci(values)
            print(f"  {name:22s} {values.mean():+.3f} [{low:+.3f}, {high:+.3f}]")


if __name__ == "__main__":
    main()
