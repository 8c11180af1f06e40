"""Does the real_demo training block itself point at homologs?

For each right-hemisphere ROI: is its most correlated left ROI its homolog, and is the
largest |coefficient| of a same-volume ridge (left -> right) on its homolog? Reads the
cleaned, parcellated run of a finished real_demo workflow, training block only (the
blocks from the preprocessed sidecar's ``TimeBlocks``)::

    .venv/bin/python benchmarks/real_demo_homolog_data.py results/real_demo
"""

from __future__ import annotations

import glob
import json
import sys

import numpy as np
from sklearn.linear_model import RidgeCV

from modalmerge.evaluation.homologs import homolog_pairs


def main(root: str) -> None:
    npz = np.load(glob.glob(f"{root}/parcellated/sub-*/*_parcellated.npz")[0])
    sidecar = glob.glob(f"{root}/preproc/sub-*/func/*_bold.json")[0]
    start, stop = json.loads(open(sidecar).read())["TimeBlocks"]["train"]
    names = [str(n) for n in npz["roi_names"]]
    series, index = npz["roi_timeseries"], npz["volume_index"]
    rows = (index >= start) & (index < stop)
    left = [i for i, n in enumerate(names) if n.startswith("L_")]
    right = [i for i, n in enumerate(names) if n.startswith("R_")]
    pairs = homolog_pairs([names[i] for i in right], [names[i] for i in left])
    x, y = series[rows][:, left], series[rows][:, right]
    corr = np.corrcoef(y.T, x.T)[: len(right), len(right) :]
    by_corr = sum(corr[i].argmax() == j for i, j in pairs.items())
    ridge = RidgeCV(alphas=[0.1, 1, 10, 100, 1000]).fit(x, y)
    by_ridge = sum(np.abs(ridge.coef_[i]).argmax() == j for i, j in pairs.items())
    print(
        f"train block ({rows.sum()} volumes): most correlated left ROI is the homolog for "
        f"{by_corr}/{len(pairs)} right ROIs; largest ridge |coef| on the homolog for "
        f"{by_ridge}/{len(pairs)} (alpha {ridge.alpha_})"
    )


if __name__ == "__main__":
    main(sys.argv[1])
