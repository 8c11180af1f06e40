"""Synthetic structural connectome and the Ornstein-Uhlenbeck network that makes FC from it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modalmerge.data.synthetic.anatomy import atlas_centroids
from modalmerge.data.synthetic.cohort import write_subject
from modalmerge.data.synthetic.connectome import (
    correlation,
    lyapunov_fc,
    region_distances,
    simulate_ou,
    structural_connectome,
)
from modalmerge.data.synthetic.factors import subject_truth
from modalmerge.data.synthetic.params import SyntheticParams

TINY = {
    "seed": 0,
    "n_subjects": 4,
    "grid_shape": [20, 24, 20],
    "voxel_size_mm": 7.2,
    "n_timepoints": 100,
}


def test_off_by_default_the_cohort_settings_and_truth_are_unchanged():
    p = SyntheticParams.from_dict(TINY)
    assert "connectome" not in p.to_dict() and "connectome_coupling" not in p.to_dict()
    off, on = (
        subject_truth(p, 1),
        subject_truth(SyntheticParams.from_dict({**TINY, "connectome": True}), 1),
    )
    assert off.connectome is None
    # the latents are drawn before the connectome: the same subject, now with an SC
    assert off.age == on.age and np.array_equal(off.structural, on.structural)
    np.testing.assert_allclose(on.coupling, on.connectome_g * on.connectome)
    with pytest.raises(ValueError, match="connectome_coupling"):
        SyntheticParams.from_dict({**TINY, "connectome": True, "connectome_coupling": 1.2})


def test_sc_is_a_symmetric_distance_dependent_network_modulated_by_the_subject():
    p = SyntheticParams.from_dict({**TINY, "connectome": True, "n_subjects": 8})
    truths = [subject_truth(p, i) for i in range(1, 9)]
    sc = truths[0].connectome
    np.testing.assert_allclose(sc, sc.T)
    assert np.all(np.diag(sc) == 0) and np.all(sc >= 0)
    assert np.max(np.abs(np.linalg.eigvalsh(sc))) == pytest.approx(1.0)
    distance = region_distances(atlas_centroids(p))
    i, j = np.triu_indices(len(sc), 1)
    assert np.corrcoef(distance[i, j], np.log(sc[i, j]))[0, 1] < -0.4
    # subjects differ, but share the cohort's wiring more than chance
    edges = np.stack([t.connectome[i, j] for t in truths])
    between = np.corrcoef(edges)[np.triu_indices(8, 1)]
    assert between.max() < 0.999 and between.min() > 0.5
    # atrophy shortens the decay length: fewer long-range edges for the same noise
    integrity = np.ones(len(sc))
    young, _ = structural_connectome(p, atlas_centroids(p), 1, integrity, 0.0)
    old, _ = structural_connectome(p, atlas_centroids(p), 1, integrity, 2.0)
    far = distance[i, j] > np.median(distance[i, j])
    assert old[i, j][far].sum() / old[i, j].sum() < young[i, j][far].sum() / young[i, j].sum()


def test_lyapunov_fc_is_the_simulated_ou_process_correlation():
    p = SyntheticParams.from_dict({**TINY, "connectome": True, "n_regions": 6})
    truth = subject_truth(p, 2)
    series = simulate_ou(truth.connectome, 0.9, 40_000, 0.5, np.random.default_rng(0))
    empirical = correlation(np.cov(series.T))
    expected = lyapunov_fc(truth.connectome, 0.9)
    np.testing.assert_allclose(empirical, expected, atol=0.04)
    assert np.abs(expected - np.eye(6)).max() > 0.2  # the coupling shows in the FC


def test_write_subject_writes_the_sc_tsv_and_keeps_the_truth(tmp_path):
    params = {**TINY, "connectome": True}
    write_subject(params, "sub-002", tmp_path)
    tsv = tmp_path / "raw" / "derivatives" / "connectome" / "sub-002_desc-sc_connectome.tsv"
    table = pd.read_csv(tsv, sep="\t", index_col="region")
    truth = np.load(tmp_path / "truth" / "sub-002.npz")
    assert list(table.columns) == list(table.index) == list(truth["region_names"])
    np.testing.assert_allclose(table.to_numpy(), truth["sc"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        truth["fc_neural"], lyapunov_fc(truth["sc"], float(truth["connectome_g"]))
    )
