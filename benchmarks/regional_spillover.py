"""How much of each ROI's observed series a planted latent explains, on the TRAINING subjects.

A planted link ``target <- source`` sets the target's response shape from a subject latent
``z_k``. Partial volumes (and the homologue across the midline) can carry part of the
target's signal into neighbouring ROIs, so a latent may also explain a little of another
ROI's observed series, and attention from that ROI to the link's source would then help
prediction without being the planted link. This script measures that, per ROI and latent:
the across-subject R² of the observed (preprocessed, parcellated) ROI value at each time
point on ``z_k``, averaged over time points. With n training subjects, a latent that
explains nothing gives about 1 / n.

It reads only the training split (``<root>/shards/manifest.json``), the truth files
(``truth/<subject>.npz``: ``planted_latents``) and the parcellated series; no model::

    .venv/bin/python benchmarks/regional_spillover.py results/regional_abs17
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from modalmerge.evaluation.planted import read_planted_links


def explained(series: np.ndarray, latents: np.ndarray) -> np.ndarray:
    """Series (S, T, R) and latents (S, K) -> mean over T of the across-subject R² (R, K)."""
    y = series - series.mean(axis=0)
    z = (latents - latents.mean(axis=0)) / latents.std(axis=0)
    sd = y.std(axis=0)  # (T, R)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("str,sk->trk", y, z) / len(z) / sd[..., None]
    return np.nan_to_num(r**2).mean(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    args = parser.parse_args()
    links = read_planted_links(args.root / "raw" / "planted_links.tsv")
    if links is None:
        sys.exit(f"{args.root}/raw/planted_links.tsv: no planted links in this cohort")
    subjects = json.loads((args.root / "shards" / "manifest.json").read_text())["splits"]["train"]
    latents, series = [], []
    for s in subjects:
        latents.append(np.load(args.root / "truth" / f"{s}.npz")["planted_latents"])
        found = sorted((args.root / "parcellated" / s).glob(f"{s}_*_parcellated.npz"))
        if len(found) != 1:
            sys.exit(f"{args.root}/parcellated/{s}: expected one *_parcellated.npz, found {found}")
        series.append(np.load(found[0])["roi_timeseries"])
    r2 = explained(np.array(series), np.array(latents))
    print(
        f"{len(subjects)} training subjects; a latent explaining nothing gives about "
        f"{1 / len(subjects):.3f}"
    )
    pairs = [
        (int(t), int(s)) for t, s in zip(links["target_label"], links["source_label"], strict=True)
    ]
    print("link target <- source: R² on the target; the three ROIs it explains most")
    for k, (target, source) in enumerate(pairs):
        top = np.argsort(-r2[:, k])[:3]
        print(
            f"  {k}: {target} <- {source}: {r2[target - 1, k]:.3f}; "
            + ", ".join(f"ROI {i + 1} {r2[i, k]:.3f}" for i in top)
        )
    print("per target ROI, the links explaining it most (link: target <- source, R²)")
    for target, _ in pairs:
        top = np.argsort(-r2[target - 1])[:3]
        described = ", ".join(
            f"{j}: {pairs[j][0]} <- {pairs[j][1]} {r2[target - 1, j]:.3f}" for j in top
        )
        print(f"  ROI {target}: {described}")


if __name__ == "__main__":
    main()
