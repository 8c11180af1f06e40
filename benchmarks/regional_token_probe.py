"""Is each planted link's latent readable from its source region's token?

5-fold cross-validated ridge (RidgeCV) from one region's values to the link's latent
(``truth/<subject>.npz`` ``planted_latents``), over the train and validation subjects of
a regional run (tuning seed only), at three points of an untrained ``region_cnn`` encoder
(statistics + standardize, train seed 0): the standardised statistics, their linear
projection, and the token after its LayerNorm (what the attention reads)::

    .venv/bin/python benchmarks/regional_token_probe.py results/regional_tune [--truth]

``--truth``: the T1 replaced by each region's true grey-matter intensity (regional_fit.py).
``--all-regions``: also the r of each link's latent from every other region's statistics,
printing the best other region, its rank by centroid distance from the source (1 = the
source's nearest region; centroids of the run's ``atlas/atlas.nii.gz``) and its r beside the source's:
a latent that shows in a neighbour's statistics leaks there through partial volumes or the
bias correction.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_predict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from regional_fit import truth_images  # noqa: E402 - the benchmark's own helper

from modalmerge.data.parcellation.atlases import label_coordinates  # noqa: E402
from modalmerge.data.shards.split_arrays import load_split_arrays  # noqa: E402
from modalmerge.models.encoders.regions import RegionCNNEncoder  # noqa: E402


def cv_r(features: np.ndarray, z: np.ndarray) -> float:
    """Pearson r of 5-fold cross-validated ridge predictions of ``z``."""
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13))
    return float(np.corrcoef(cross_val_predict(ridge, features, z, cv=5), z)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--truth", action="store_true")
    parser.add_argument("--all-regions", action="store_true")
    args = parser.parse_args()
    links = pd.read_csv(args.root / "raw" / "planted_links.tsv", sep="\t")
    images, latents = [], []
    for split in ("train", "val"):
        arrays = load_split_arrays(args.root / "shards", split, "image")
        if args.truth:
            arrays["data"] = truth_images(args.root, arrays)
        images.append(arrays["data"])
        latents += [
            np.load(args.root / "truth" / f"{s}.npz")["planted_latents"] for s in arrays["subject"]
        ]
    x = torch.tensor(np.concatenate(images), dtype=torch.float32)
    z = np.array(latents)
    torch.manual_seed(0)
    encoder = RegionCNNEncoder(
        tuple(x.shape[1:]), 32, 24, channels=0, statistics=True, standardize=True
    ).train()
    with torch.no_grad():
        pooled = encoder.pooled(x)
        standardized = encoder.standardize(pooled.flatten(1)).view(pooled.shape)
        projected = encoder.to_tokens[0](standardized)
        tokens = encoder.to_tokens(standardized)
    print("link: r of the latent from the source region's statistics / projection / token")
    for k, row in links.iterrows():
        s = int(row.source_label) - 1
        values = [cv_r(a[:, s].numpy(), z[:, k]) for a in (standardized, projected, tokens)]
        print(k, " ".join(f"{v:.2f}" for v in values), flush=True)
    if args.all_regions:
        labels = np.arange(1, standardized.shape[1] + 1)
        atlas = nib.load(args.root / "atlas" / "atlas.nii.gz")
        leakage(links, standardized.numpy(), z, label_coordinates(atlas, labels))


def leakage(links: pd.DataFrame, stats: np.ndarray, z: np.ndarray, centre: np.ndarray) -> None:
    """Per link: the latent's CV r from the source's statistics against every other region's."""
    print("link target <- source: r from the source | best other region (rank by distance "
          "from the source), its r | r from the source's nearest region")  # fmt: skip
    for k, row in links.iterrows():
        s = int(row.source_label) - 1
        r = np.array([cv_r(stats[:, j], z[:, k]) for j in range(stats.shape[1])])
        order = np.argsort(np.linalg.norm(centre - centre[s], axis=1))  # order[0] is s
        others = np.delete(np.arange(len(r)), s)
        best = int(others[np.argmax(r[others])])
        rank = int(np.flatnonzero(order == best)[0])
        print(
            f"{k} {int(row.target_label)} <- {s + 1}: {r[s]:.2f} | region {best + 1} "
            f"(rank {rank}) {r[best]:.2f} | region {int(order[1]) + 1} {r[order[1]]:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
