"""Scores and baselines for graph targets (SC -> FC)."""

from __future__ import annotations

import numpy as np
import pytest

from modalmerge.data.synthetic.connectome import lyapunov_fc
from modalmerge.evaluation.graph_targets import (
    baseline_predictions,
    edges_to_matrices,
    fit_physics_g,
    graph_scores,
    triangles,
)


def _cohort(n: int, r: int = 6, seed: int = 0, g: float = 0.6):
    rng = np.random.default_rng(seed)
    sc = []
    for _ in range(n):
        w = rng.gamma(2.0, 1.0, (r, r))
        w = np.triu(w, 1) + np.triu(w, 1).T
        sc.append(w / np.max(np.abs(np.linalg.eigvalsh(w))))
    sc = np.stack(sc)
    return sc, np.stack([lyapunov_fc(s, g) for s in sc])


def test_triangles_round_trip_and_refuse_non_square_input():
    _, fc = _cohort(3)
    np.testing.assert_allclose(edges_to_matrices(triangles(fc), 6), fc)
    with pytest.raises(ValueError, match="square matrices"):
        triangles(np.zeros((2, 3, 4)))


def test_the_physics_baseline_recovers_the_generating_coupling():
    sc, fc = _cohort(6, g=0.6)
    assert fit_physics_g(sc, fc) == pytest.approx(0.6)


def test_scores_are_per_subject_and_separate_exact_from_group_predictions():
    sc, fc = _cohort(12, seed=1)
    train, test = slice(0, 8), slice(8, 12)
    mean = fc[train].mean(0)
    exact = graph_scores(fc[test], fc[test], mean)
    assert set(exact) == {"edge_r", "edge_mse", "fc_top1", "fc_mean_rank", "fc_demeaned_r"}
    np.testing.assert_allclose(exact["edge_r"], 1.0)
    np.testing.assert_allclose(exact["fc_top1"], 1.0)
    predictions, g = baseline_predictions(sc[train], fc[train], sc[test])
    assert g == pytest.approx(0.6) and set(predictions) == {"group_average", "physics", "ridge_pca"}
    group = graph_scores(predictions["group_average"], fc[test], mean)
    np.testing.assert_allclose(group["fc_top1"], 1 / 4)  # identical predictions: chance
    np.testing.assert_allclose(group["fc_demeaned_r"], 0.0, atol=1e-9)
    physics = graph_scores(predictions["physics"], fc[test], mean)
    np.testing.assert_allclose(physics["edge_r"], 1.0)
    ridge = graph_scores(predictions["ridge_pca"], fc[test], mean)
    assert ridge["edge_mse"].shape == (4,) and np.all(ridge["edge_mse"] < group["edge_mse"] * 2)


def test_score_graph_averages_windows_per_subject_and_adds_the_physics_baseline():
    from types import SimpleNamespace

    from modalmerge.evaluation.graph_targets import score_graph
    from modalmerge.evaluation.scoring import BaselineSettings, ScoringInput

    sc, fc = _cohort(12, seed=2)
    subjects = [f"sub-{i:02d}" for i in range(12)]

    def split(index, prediction=None):
        rows = np.repeat(index, 2)  # two windows per subject
        return SimpleNamespace(
            subjects=[subjects[i] for i in rows], condition=sc[rows], target=fc[rows],
            prediction=None if prediction is None else prediction[rows],
        )  # fmt: skip

    train, test = split(np.arange(8)), split(np.arange(8, 12), prediction=fc)
    data = ScoringInput(
        condition="graph", train=train, test=test,
        x_train=train.condition.reshape(16, -1), x_test=test.condition.reshape(8, -1),
        baselines=BaselineSettings(alphas=np.array([0.1, 1.0]), n_components=3),
    )  # fmt: skip
    scored = score_graph(data, physics=True)
    assert scored.per_unit["units"] == subjects[8:]
    assert set(scored.scores) == {"model", "group_mean", "ridge", "physics"}
    assert scored.scores["model"]["edge_r"] == pytest.approx(1.0)
    assert scored.scores["physics"]["edge_r"] == pytest.approx(1.0)
    assert scored.extra["physics_g"] == pytest.approx(0.6)
    assert scored.scores["group_mean"]["fc_top1"] == pytest.approx(0.25)
    assert scored.arrays["condition"].shape == (4, 6, 6)
    assert len(scored.per_unit["ridge"]["edge_r"]) == 4
