"""How much of each planted link reaches the data a model sees (tuning cohort, seed 11).

For ``results/<name>`` built with ``--until shard`` (configs/regional_tune.yaml), prints:

1. anatomy: r between each link's latent and its source region's preprocessed T1
   statistics (mean, quantiles), raw and minus the subject's average region, and the
   5-fold cross-validated r of a ridge from the source region's statistics (and from
   every region's) to the latent; the true generating grey-matter intensity for reference;
2. function: validation MSE of each planted target ROI under the training group mean
   (per window start) and under an oracle that knows the latent (quadratic fit on the
   training subjects), and the same over all ROIs;
3. read-out: validation MSE over all ROIs of a ridge (alpha by RidgeCV on the training
   subjects, per window start) from every region's true grey-matter intensity, and from
   every region's preprocessed T1 statistics (raw and centred) — what a linear model of
   the same region features reaches.

Every subject's anatomy (part 1) and the train and validation splits (part 2); never
the test split::

    .venv/bin/python benchmarks/regional_signal.py results/regional_tune
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_predict

from modalmerge.data.shards.split_arrays import load_split_arrays

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
ALPHAS = np.logspace(-2, 4, 13)


def cv_r(x: np.ndarray, z: np.ndarray) -> float:
    x = (x - x.mean(0)) / x.std(0).clip(1e-12)
    pred = cross_val_predict(RidgeCV(alphas=ALPHAS), x, z, cv=5)
    return float(np.corrcoef(pred, z)[0, 1])


def anatomy(root: Path, sources: np.ndarray) -> None:
    features, latents, truth = [], [], []
    subjects = sorted(p.name for p in (root / "preproc").glob("sub-*"))
    for s in subjects:
        anat = root / "preproc" / s / "anat"
        t1 = nib.load(anat / f"{s}_space-synthetic_desc-preproc_T1w.nii.gz").get_fdata()
        labels = nib.load(anat / f"{s}_space-synthetic_desc-preproc_dseg.nii.gz").get_fdata()
        labels = labels.round().astype(int)
        features.append(
            [[t1[labels == r].mean(), *np.quantile(t1[labels == r], QUANTILES)]
             for r in range(1, labels.max() + 1)]
        )  # fmt: skip
        npz = np.load(root / "truth" / f"{s}.npz")
        latents.append(npz["planted_latents"])
        truth.append(npz["structural"][:, 1])
    f, z, gm = np.asarray(features), np.asarray(latents), np.asarray(truth)
    centred = f - f.mean(axis=1, keepdims=True)
    links = range(len(sources))
    print(f"{len(subjects)} subjects")
    print("true gm intensity r", np.round([np.corrcoef(gm[:, s], z[:, k])[0, 1] for k, s in enumerate(sources)], 2))  # fmt: skip
    for name, x in (("raw", f), ("minus subject's region average", centred)):
        print(f"T1 {name}:")
        for j, stat in enumerate(("mean", *(f"q{q}" for q in QUANTILES))):
            print(f"  {stat:5s} r", np.round([np.corrcoef(x[:, s, j], z[:, k])[0, 1] for k, s in enumerate(sources)], 2))  # fmt: skip
        print("  cv ridge, source stats r", np.round([cv_r(x[:, s], z[:, k]) for k, s in enumerate(sources)], 2))  # fmt: skip
    flat = np.concatenate([f.reshape(len(f), -1), centred.reshape(len(f), -1)], axis=1)
    print("cv ridge, every region's stats r", np.round([cv_r(flat, z[:, k]) for k in links], 2))


def function(root: Path, targets: np.ndarray) -> None:
    def split(name):
        ts = load_split_arrays(root / "shards", name, "time_series")
        z = np.array(
            [np.load(root / "truth" / f"{s}.npz")["planted_latents"] for s in ts["subject"]]
        )
        return ts["data"], ts["window_start"], z

    (yt, ot, zt), (yv, ov, zv) = split("train"), split("val")
    group, oracle = np.zeros(len(targets)), np.zeros(len(targets))
    all_group, all_oracle = [], []
    for o in np.unique(ot):
        a, b = yt[ot == o], yv[ov == o]
        pred = np.broadcast_to(a.mean(0), b.shape).copy()
        for k, t in enumerate(targets):
            design = np.c_[np.ones(len(a)), zt[ot == o, k], zt[ot == o, k] ** 2]
            coef = np.linalg.lstsq(design, a[:, :, t], rcond=None)[0]
            pred[:, :, t] = np.c_[np.ones(len(b)), zv[ov == o, k], zv[ov == o, k] ** 2] @ coef
            group[k] += ((b[:, :, t] - a[:, :, t].mean(0)) ** 2).mean()
            oracle[k] += ((b[:, :, t] - pred[:, :, t]) ** 2).mean()
        all_group.append(((b - a.mean(0)) ** 2).mean())
        all_oracle.append(((b - pred) ** 2).mean())
    n = len(np.unique(ot))
    print("val MSE per planted target, group mean ", np.round(group / n, 3))
    print("val MSE per planted target, oracle-latent", np.round(oracle / n, 3))
    print(f"val MSE all ROIs: group mean {np.mean(all_group):.4f}, "
          f"oracle-latent on the planted targets {np.mean(all_oracle):.4f}")  # fmt: skip


def region_statistics(root: Path, subject: str) -> np.ndarray:
    """Every region's preprocessed T1 mean and quantiles, raw and minus the region average."""
    anat = root / "preproc" / subject / "anat" / f"{subject}_space-synthetic_desc-preproc_"
    t1 = nib.load(f"{anat}T1w.nii.gz").get_fdata()
    labels = nib.load(f"{anat}dseg.nii.gz").get_fdata().round().astype(int)
    f = np.array(
        [[t1[labels == r].mean(), *np.quantile(t1[labels == r], QUANTILES)]
         for r in range(1, labels.max() + 1)]
    )  # fmt: skip
    return np.concatenate([f.ravel(), (f - f.mean(0)).ravel()])


def readout(root: Path) -> None:
    def split(name):
        ts = load_split_arrays(root / "shards", name, "time_series")
        cache = {
            s: (
                np.load(root / "truth" / f"{s}.npz")["structural"][:, 1],
                region_statistics(root, s),
            )
            for s in sorted(set(ts["subject"]))
        }
        truth = np.array([cache[s][0] for s in ts["subject"]])
        stats = np.array([cache[s][1] for s in ts["subject"]])
        return ts["data"], ts["window_start"], truth, stats

    (yt, ot, gt, ft), (yv, ov, gv, fv) = split("train"), split("val")
    for name, xt, xv in (("true gm intensity", gt, gv), ("preprocessed T1 stats", ft, fv)):
        mse, mse0 = [], []
        for o in np.unique(ot):
            a, b = (
                yt[ot == o].reshape((ot == o).sum(), -1),
                yv[ov == o].reshape((ov == o).sum(), -1),
            )
            mean, mu, sd = a.mean(0), xt[ot == o].mean(0), xt[ot == o].std(0) + 1e-9
            ridge = RidgeCV(alphas=np.logspace(-1, 5, 13)).fit((xt[ot == o] - mu) / sd, a - mean)
            mse.append(((b - mean - ridge.predict((xv[ov == o] - mu) / sd)) ** 2).mean())
            mse0.append(((b - mean) ** 2).mean())
        print(f"val MSE all ROIs, ridge from every region's {name}: {np.mean(mse):.4f} "
              f"(group mean {np.mean(mse0):.4f})")  # fmt: skip


def main(root: Path) -> None:
    links = pd.read_csv(root / "raw" / "planted_links.tsv", sep="\t")
    anatomy(root, links["source_label"].to_numpy() - 1)
    function(root, links["target_label"].to_numpy() - 1)
    readout(root)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
