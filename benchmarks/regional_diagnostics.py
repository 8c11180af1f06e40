"""Diagnostics of a regional planted cohort run (configs/regional.yaml; docs/benchmarks.md).

Prints, for ``results/<name>``: each experiment's ``planted_link_top1`` and null, the
per-ROI Pearson r of the model, group mean, parcel ridge and oracle on the planted
target ROIs vs the other ROIs (test subjects), the paired method-vs-method differences
(:func:`modalmerge.evaluation.summary.compare_experiments`), and how strongly each
link's latent shows in the shards' parcel features of its source region (r across all
subjects)::

    .venv/bin/python benchmarks/regional_diagnostics.py results/regional
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from modalmerge.data.shards.split_arrays import load_split_arrays
from modalmerge.evaluation.summary import compare_experiments

EXPERIMENTS = ("regions_xattn", "regions_concat", "regions_film")


def main(root: Path) -> None:
    links = pd.read_csv(root / "raw" / "planted_links.tsv", sep="\t")
    targets = links["target_label"].to_numpy() - 1
    done = [e for e in EXPERIMENTS if (root / "eval" / e / "metrics.json").exists()]
    for e in done:
        m = json.loads((root / "eval" / e / "metrics.json").read_text())
        model = m["scores"]["model"]
        planted = {k: round(v, 4) for k, v in model.items() if k.startswith("planted_link")}
        print(f"{e}: n_parameters {m['n_parameters']}, n_test {m['n_test_subjects']}, {planted}")
        for name in ("model", "group_mean", "ridge_parcel", "oracle"):
            r = np.asarray(m["per_roi"][name]["pearson_r"])
            print(f"  r {name:12s} planted targets {r[targets].mean():.3f}  "
                  f"other ROIs {np.delete(r, targets).mean():.3f}")  # fmt: skip
    for a, b in itertools.combinations(done, 2):
        d, verdict = compare_experiments(
            root / "eval" / a / "metrics.json", root / "eval" / b / "metrics.json"
        )
        print(f"{a} - {b}: {d.value:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}] n={d.n} "
              f"p_wilcoxon={d.p_wilcoxon:.3g} ({verdict})")  # fmt: skip
    features, latents = [], []
    for split in ("train", "val", "test"):
        table = load_split_arrays(root / "shards", split, "structural_features")
        for subject, row in zip(table["subject"], table["data"], strict=True):
            s = subject.decode() if isinstance(subject, bytes) else str(subject)
            features.append(row)
            latents.append(np.load(root / "truth" / f"{s}.npz")["planted_latents"])
    features, latents = np.asarray(features), np.asarray(latents)
    sources = links["source_label"].to_numpy() - 1
    names = np.load(next((root / "parcellated").glob("sub-*/*.npz")))["feature_names"]
    for j, name in enumerate(names):
        r = [np.corrcoef(features[:, s, j], latents[:, k])[0, 1] for k, s in enumerate(sources)]
        print(f"latent vs source {name:18s} r {np.round(r, 2).tolist()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
