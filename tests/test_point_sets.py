"""Generated point sets (the ``set`` decoder) scored per held-out subject as sets:
F-score at the training clouds' spacing, Chamfer distance, and three template baselines."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from modalmerge.evaluation.point_sets import (
    farthest_point_sample,
    medoid,
    sampling_spacing,
    score_point_set,
    set_scores,
)
from modalmerge.evaluation.scoring import BaselineSettings, ScoringInput


def _sphere(radius, n, rng):
    direction = rng.normal(size=(n, 3))
    return radius * direction / np.linalg.norm(direction, axis=1, keepdims=True)


def test_set_scores_are_perfect_for_the_same_set_and_worsen_with_distance():
    rng = np.random.default_rng(0)
    points = _sphere(50.0, 200, rng)
    same = set_scores(points[::-1], points, tau=1.0)  # order does not matter
    assert same["fscore"] == 1.0 and same["chamfer_mm"] == 0.0
    shifted = set_scores(points + [3.0, 0, 0], points, tau=1.0)
    assert shifted["fscore"] < 0.5
    assert shifted["accuracy_mm"] == pytest.approx(3.0, abs=0.5)
    half = set_scores(points[:100], points, tau=1.0)  # covers half the truth
    assert half["precision"] == 1.0 and half["recall"] == pytest.approx(0.5, abs=0.1)


def test_farthest_point_sample_covers_the_pool_and_the_medoid_is_the_central_cloud():
    rng = np.random.default_rng(1)
    pool = np.concatenate([rng.normal(0, 0.1, (500, 3)), [[10.0, 0, 0], [-10.0, 0, 0]]])
    picked = farthest_point_sample(pool, 3)
    assert {tuple(p) for p in picked[:2]} == {(10.0, 0, 0), (-10.0, 0, 0)}
    base = _sphere(50.0, 100, rng)
    clouds = np.stack([base * s for s in (0.8, 1.0, 1.2, 1.4)])
    assert medoid(clouds) in (1, 2)  # the middle radii, never the extremes
    assert sampling_spacing(clouds) > 0


def test_score_point_set_beats_templates_when_the_model_generates_each_subject_s_own_set():
    rng = np.random.default_rng(2)
    base = _sphere(1.0, 128, rng)

    def cloud(radius):  # xyz of a sphere of the subject's radius, then one feature
        return np.concatenate([base * radius, np.zeros((128, 1))], axis=1)

    train_radius = np.array([40.0, 45.0, 50.0, 55.0, 60.0])
    test_radius = np.array([42.0, 58.0, 50.0])
    train = np.stack([cloud(r) for r in train_radius])
    test = np.stack([cloud(r) for r in test_radius])
    generated = test[:, rng.permutation(128)]  # the true set, in another order

    def split(clouds, prediction=None):
        return SimpleNamespace(
            subjects=[f"sub-{i}" for i in range(len(clouds))], target=clouds, prediction=prediction
        )

    data = ScoringInput(
        "tabular",
        split(train),
        split(test, generated),
        train_radius[:, None],  # the condition's features: the radius itself
        test_radius[:, None],
        BaselineSettings(np.array([1.0])),
    )
    scored = score_point_set(data)
    assert scored.extra["primary_metric"] == "fscore"
    assert scored.scores["model"]["fscore"] == 1.0
    assert scored.scores["model"]["chamfer_mm"] == pytest.approx(0.0, abs=1e-9)
    for baseline in ("medoid_template", "fps_template", "nearest_anatomy"):
        assert scored.scores[baseline]["chamfer_mm"] > 0.5
        assert len(scored.per_unit[baseline]["fscore"]) == 3
    # nearest anatomy finds the training sphere of the closest radius (2 mm off each)
    near = scored.per_unit["nearest_anatomy"]["accuracy_mm"]
    assert near == pytest.approx([2.0, 2.0, 0.0], abs=1e-6)
    assert scored.arrays["medoid_template"].shape == (3, 128, 3)


def test_the_prediction_figure_draws_true_above_generated_points_on_one_colour_scale():
    from modalmerge.viz.point_cloud import cloud_prediction

    rng = np.random.default_rng(4)
    true = np.concatenate([_sphere(50.0, 80, rng), rng.normal(size=(80, 2))], axis=1)
    generated = np.concatenate([_sphere(45.0, 60, rng), rng.normal(size=(60, 2))], axis=1)
    fig = cloud_prediction(true, generated, feature="t1_intensity")
    axes = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(axes) == 6
    assert len(axes[0].collections[0].get_offsets()) == 80  # top row: the true cloud
    assert len(axes[3].collections[0].get_offsets()) == 60  # bottom row: the generated set
    limits = {ax.collections[0].get_clim() for ax in axes}
    assert len(limits) == 1  # one colour scale for both rows
    np.testing.assert_allclose(axes[3].collections[0].get_array(), generated[:, 3])
    with pytest.raises(ValueError, match=r"need clouds \(N, 3 \+ F\)"):
        cloud_prediction(true[:, :2], generated)
