"""ComBat harmonisation (modalmerge.data.harmonize): the published model, fitted on training
subjects only, removes site effects and keeps covariate effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modalmerge.data.harmonize import ComBat, harmonize_features, zscore_series

# Worked example: 12 subjects at 3 sites (4 each), 6 features, age as covariate. The
# expected output was produced by the reference implementation neuroCombat 0.2.12
# (``neuroCombat(dat=X.T, covars=DataFrame(site, age), batch_col="site",
# continuous_cols=["age"])["data"].T``; parametric empirical Bayes), rounded to 1e-6.
AGE = np.array([57.5, 73.8, 66.5, 33.5, 38.0, 72.4, 20.3, 69.3, 67.8, 48.1, 38.2, 36.7])
SITE = np.repeat(["a", "b", "c"], 4)
X = np.array([
    [1.255, 0.22, 1.121, 1.845, -0.194, 0.692],
    [-0.425, 0.186, -0.366, 1.241, 0.209, 1.747],
    [1.487, 1.143, -1.187, 0.791, 1.281, 1.443],
    [-0.86, 0.192, -0.309, -0.139, 1.731, -0.138],
    [2.195, 4.029, 1.093, 2.037, 2.481, 2.388],
    [0.498, 3.1, 5.666, -0.146, 4.667, 3.187],
    [0.623, 5.907, 3.431, -0.493, 2.055, 3.059],
    [2.508, 4.252, 2.753, 4.22, 5.763, 1.535],
    [0.498, 0.032, 0.445, -0.475, -0.05, 0.219],
    [0.591, 0.764, -0.964, -0.594, 0.415, -1.433],
    [-0.56, -0.304, 0.644, 0.247, -0.465, -0.494],
    [-0.441, 0.8, -0.566, -0.479, -0.019, -0.351],
])  # fmt: skip
NEUROCOMBAT = np.array([
    [1.579745, 1.160328, 2.187846, 2.044044, 0.775364, 0.946341],
    [0.155386, 1.09746, 0.798692, 1.4371, 1.189403, 1.943565],
    [1.80263, 1.974793, 0.01498, 0.98637, 2.07594, 1.654347],
    [-0.31705, 1.182508, 0.811208, 0.056208, 2.32114, 0.153779],
    [0.883236, 1.812527, -0.613613, 0.657346, 0.504322, 0.846653],
    [-0.10895, 0.957047, 2.719558, -0.498916, 2.339143, 1.516119],
    [-0.306943, 3.219495, 0.880741, -1.188362, 0.049965, 1.253958],
    [1.272118, 1.771862, 0.708163, 2.390686, 3.079968, 0.358131],
    [1.218886, 1.367073, 1.668913, 0.257416, 1.016131, 1.672571],
    [1.528482, 2.195932, -0.178802, 0.328656, 1.997396, -0.35725],
    [-0.094218, 0.762754, 2.187427, 1.691212, 0.826449, 0.856905],
    [0.095522, 2.176268, 0.478049, 0.640685, 1.514677, 1.041786],
])  # fmt: skip


def test_combat_reproduces_the_reference_implementation_on_a_worked_example():
    out = ComBat().fit(X, SITE, AGE[:, None]).transform(X, SITE, AGE[:, None])
    np.testing.assert_allclose(out, NEUROCOMBAT, atol=1e-5)


def planted(seed: int = 0, n_per_site: int = 30, p: int = 20):
    """Three sites with additive and multiplicative shifts, an age effect on every feature."""
    rng = np.random.default_rng(seed)
    site = np.repeat(["s0", "s1", "s2"], n_per_site)
    age = rng.uniform(20, 80, len(site))
    shift = {"s0": 0.0, "s1": 3.0, "s2": -2.0}
    scale = {"s0": 1.0, "s1": 2.5, "s2": 0.5}
    effect = rng.uniform(0.02, 0.05, p)  # per year
    noise = rng.standard_normal((len(site), p))
    x = np.stack([
        age[i] * effect + shift[site[i]] + scale[site[i]] * noise[i] for i in range(len(site))
    ])  # fmt: skip
    return x, site, age, effect


def test_combat_removes_a_planted_site_shift_and_keeps_the_age_effect():
    x, site, age, effect = planted()
    out = ComBat().fit(x, site, age[:, None]).transform(x, site, age[:, None])
    residual = out - age[:, None] * effect  # the site effect left
    means = np.array([residual[site == s].mean() for s in ("s0", "s1", "s2")])
    sds = np.array([residual[site == s].std() for s in ("s0", "s1", "s2")])
    before = np.array([(x - age[:, None] * effect)[site == s].mean() for s in ("s0", "s1", "s2")])
    assert np.ptp(before) > 4.5 and np.ptp(means) < 0.2
    assert sds.max() / sds.min() < 1.3  # was 5 (0.5 vs 2.5)
    slopes = [np.polyfit(age, out[:, j], 1)[0] for j in range(x.shape[1])]
    np.testing.assert_allclose(slopes, effect, atol=0.012)


def test_combat_fit_uses_training_subjects_only_and_harmonises_an_unseen_site():
    x, site, age, _ = planted(seed=1)
    train = site != "s2"
    fitted = ComBat().fit(x[train], site[train], age[train, None])
    reference = fitted.transform(x[train], site[train], age[train, None])
    perturbed = x.copy()
    perturbed[~train] += np.random.default_rng(5).normal(0, 10, perturbed[~train].shape)
    refit = ComBat().fit(perturbed[train], site[train], age[train, None])
    np.testing.assert_array_equal(
        refit.transform(x[train], site[train], age[train, None]), reference
    )
    # the held-out site: its own location and scale, the training fit held fixed
    held = fitted.transform(x[~train], site[~train], age[~train, None])
    trained = fitted.transform(x[train], site[train], age[train, None])
    assert abs(held.mean() - trained.mean()) < 0.25
    assert abs(x[~train].mean() - trained.mean()) > 1.5


def test_combat_refuses_nan_and_a_single_subject_site():
    x, site, age, _ = planted()
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ComBat().fit(bad, site, age[:, None])
    with pytest.raises(ValueError, match="at least 2"):
        ComBat().fit(x[:31], site[:31], age[:31, None])


def test_harmonize_features_keeps_connectivity_symmetric_and_its_diagonal():
    x, site, age, _ = planted(p=6)
    subjects = [f"sub-{i:03d}" for i in range(len(site))]
    rng = np.random.default_rng(3)
    structural = {s: x[k].reshape(3, 2) for k, s in enumerate(subjects)}
    connectivity = {}
    for k, s in enumerate(subjects):
        m = np.tanh(rng.normal(0.3 if site[k] == "s1" else 0.0, 0.2, (4, 4)))
        connectivity[s] = ((m + m.T) / 2 + np.eye(4) * (1 - np.diag((m + m.T) / 2))).astype(
            np.float32
        )
    table = pd.DataFrame({"age": age}, index=subjects)
    train = subjects[::2]
    feats, conn = harmonize_features(
        structural, connectivity, train, dict(zip(subjects, site, strict=True)), table, []
    )
    for s in subjects:
        assert feats[s].shape == (3, 2) and conn[s].shape == (4, 4)
        np.testing.assert_array_equal(conn[s], conn[s].T)
        np.testing.assert_array_equal(np.diag(conn[s]), np.diag(connectivity[s]))
    offdiag = np.triu_indices(4, 1)
    before = [np.mean([connectivity[s][offdiag].mean() for k, s in enumerate(subjects) if site[k] == g]) for g in ("s0", "s1")]  # fmt: skip
    after = [np.mean([conn[s][offdiag].mean() for k, s in enumerate(subjects) if site[k] == g]) for g in ("s0", "s1")]  # fmt: skip
    assert before[1] - before[0] > 0.2 and abs(after[1] - after[0]) < 0.05


def test_zscore_series_removes_a_site_scale():
    rng = np.random.default_rng(0)
    series = rng.standard_normal((50, 3))
    np.testing.assert_allclose(zscore_series(5.0 * series + 2.0), zscore_series(series), atol=1e-5)
    assert np.all(zscore_series(np.ones((10, 2))) == 0)


def test_perturbing_held_out_subjects_leaves_every_training_subject_unchanged():
    x, site, age, _ = planted(seed=2, p=6)
    subjects = [f"sub-{i:03d}" for i in range(len(site))]
    sites = dict(zip(subjects, site, strict=True))
    table = pd.DataFrame({"age": age}, index=subjects)
    train = [s for s in subjects if sites[s] != "s2"]
    features = {s: x[k].reshape(3, 2) for k, s in enumerate(subjects)}
    perturbed = {s: v + (50.0 if sites[s] == "s2" else 0.0) for s, v in features.items()}
    a, _ = harmonize_features(features, None, train, sites, table, [])
    b, _ = harmonize_features(perturbed, None, train, sites, table, [])
    for s in train:
        np.testing.assert_array_equal(a[s], b[s])
    held = [s for s in subjects if s not in train]
    # the held-out rows are harmonised with their own (perturbed) site estimates
    assert not np.allclose([a[s] for s in held], [b[s] for s in held])
