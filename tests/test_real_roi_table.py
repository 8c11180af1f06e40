"""nitime's real fMRI ROI table (28 ROIs, 250 volumes, TR 1.89 s) through the package.

The table ships inside nitime (``nitime/data/fmri_timeseries.csv``; `make setup`
installs the package without its dependencies, only this file is read): 14
left/right pairs of regions plus white-matter, ventricle and global signals.
Real data checks what generated data cannot: that confound cleaning and the
connectivity code find the known bilateral organisation of resting activity.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modalmerge.data.parcellation.connectivity import connectivity
from modalmerge.evaluation.homologs import homolog_pairs

SPEC = importlib.util.find_spec("nitime")
pytestmark = pytest.mark.skipif(SPEC is None, reason="nitime is not installed (make setup does)")
TR = 1.89
NUISANCE = ["WM", "Vent", "Brain"]


def _names(columns):
    """nitime's ROI names as L_<region>/R_<region> (its left anterior PHG is 'APHG')."""
    renamed = {"APHG": "L_AntPHG"}
    return [renamed.get(c, f"{c[0]}_{c[1:]}") for c in columns]


@pytest.fixture(scope="module")
def table():
    path = Path(SPEC.submodule_search_locations[0]) / "data" / "fmri_timeseries.csv"
    data = pd.read_csv(path)
    assert data.shape == (250, 31)
    rois = [c for c in data.columns if c not in NUISANCE]
    return data[rois].to_numpy(float), _names(rois), data[NUISANCE].to_numpy(float)


def test_homolog_pairing_finds_all_fourteen_bilateral_pairs(table):
    _, names, _ = table
    left = [n for n in names if n.startswith("L_")]
    right = [n for n in names if n.startswith("R_")]
    pairs = homolog_pairs(right, left)
    assert len(pairs) == 14
    assert all(right[i][2:] == left[j][2:] for i, j in pairs.items())


def test_cleaned_real_series_correlate_most_with_their_homologs(table):
    from nilearn.signal import clean

    series, names, nuisance = table
    cleaned = clean(
        series, confounds=nuisance, detrend=True, standardize="zscore_sample",
        low_pass=0.1, high_pass=0.01, t_r=TR,
    )  # fmt: skip
    assert np.isfinite(cleaned).all()
    fc = connectivity(cleaned, "correlation")
    assert np.allclose(fc, fc.T) and np.allclose(np.diag(fc), 1.0, atol=1e-6)
    left = [i for i, n in enumerate(names) if n.startswith("L_")]
    right = [i for i, n in enumerate(names) if n.startswith("R_")]
    homolog = {i: next(j for j in right if names[j][2:] == names[i][2:]) for i in left}
    paired = np.array([fc[i, homolog[i]] for i in left])
    other = np.array([fc[i, j] for i in left for j in right if j != homolog[i]])
    # bilateral homologs are the strongest inter-hemispheric connections at rest
    assert paired.mean() > other.mean() + 0.2
    rank = [np.argmax(fc[i, right]) == right.index(homolog[i]) for i in left]
    assert sum(rank) >= 7  # at least half the left regions peak on their homolog
    partial = connectivity(cleaned, "partial correlation")
    assert partial.shape == fc.shape and np.abs(partial[np.triu_indices(28, 1)]).max() < 1
