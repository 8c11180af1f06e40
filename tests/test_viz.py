"""Figures: right panels, right labels, attention drawn at the right place, no leaks."""

from __future__ import annotations

import math
from collections import namedtuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from modalmerge.models import MultiModalModel, Tokenizer, TokenProvenance
from modalmerge.viz import (
    Visualizer,
    attention_on_anatomy,
    connectivity_comparison,
    learning_curves,
    roi_attention_matrix,
    save_figure,
    summary_chart,
)
from modalmerge.viz.attention import attention_peak, project_to_image, query_groups, select_heads

torch.set_num_threads(1)

ModelOutput = namedtuple("ModelOutput", ["prediction", "attention"])


@pytest.fixture(autouse=True)
def no_figure_leaks():
    """Every test leaves pyplot's figure list as it found it."""
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


def titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def all_text(fig: Figure) -> str:
    parts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return "\n".join(p for p in parts if p)


class StandInModel(torch.nn.Module):
    """Follows the model contract (docs/architecture.md §3) with planted attention.

    Query q attends (with head 0) to condition token ``peaks[q]``; head 1 attends
    uniformly. ``attention=False`` mimics film/concat conditioning.
    """

    def __init__(
        self, provenance: TokenProvenance, n_target=4, peaks=None, attention=True, grid_for=None
    ):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.provenance = provenance
        self.n_target = n_target
        self.peaks = list(range(n_target)) if peaks is None else list(peaks)
        self.attention = attention
        self.grid_for = grid_for  # image: function input_shape -> grid_shape
        self.seen_time_offset = None

    def condition_provenance(self, input_shape=None):
        p = self.provenance
        if input_shape is None or p.kind != "image_grid":
            return p
        grid = self.grid_for(tuple(input_shape))
        return TokenProvenance(
            "image_grid", math.prod(grid), grid_shape=grid, input_shape=tuple(input_shape)
        )

    def forward(self, condition, target=None, time_offset=None, return_attention=False):
        self.seen_time_offset = time_offset
        b = condition.shape[0]
        n_cond = self.condition_provenance(tuple(condition.shape[1:])).n_tokens
        pred = torch.zeros(b, self.n_target) * self.scale
        if not (return_attention and self.attention):
            return ModelOutput(pred, None)
        att = torch.full((b, 2, self.n_target, n_cond), 1.0 / n_cond)
        att[:, 0] = 0.0
        for q, k in enumerate(self.peaks):
            att[:, 0, q, k] = 1.0
        return ModelOutput(pred, att)


# a stride-3 encoder: feature grid = image / 3, and a cell's centre is voxel 3 * g + 1
# (planted cells are interior: at the border, interpolation clamps and the peak is a plateau)
GRID, IMAGE = (3, 4, 5), (9, 12, 15)


def image_model(peaks, attention=True):
    def grid_for(shape):
        return tuple(s // 3 for s in shape[1:])

    prov = TokenProvenance("image_grid", 60, grid_shape=GRID, input_shape=(1, *IMAGE))
    return StandInModel(
        prov, n_target=len(peaks), peaks=peaks, attention=attention, grid_for=grid_for
    )


# ---------------------------------------------------------------- attention maths


def test_project_to_image_puts_a_grid_cell_at_its_voxel_block():
    weights = np.zeros(60)
    weights[np.ravel_multi_index((1, 2, 3), GRID)] = 1.0
    volume = project_to_image(weights, GRID, IMAGE)
    assert volume.shape == IMAGE
    assert attention_peak(volume) == (4, 7, 10)  # the centre voxel 3 * g + 1 of the cell


def test_project_to_image_2d_uses_bilinear_upsampling():
    weights = np.zeros(12)
    weights[np.ravel_multi_index((1, 2), (3, 4))] = 1.0
    volume = project_to_image(weights, (3, 4), (9, 12))
    assert attention_peak(volume) == (4, 7)


def test_project_to_image_rejects_a_grid_that_does_not_hold_the_tokens():
    with pytest.raises(ValueError, match="do not fill"):
        project_to_image(np.ones(10), GRID, IMAGE)
    with pytest.raises(ValueError, match="both be 2-D or both 3-D"):
        project_to_image(np.ones(6), (2, 3), IMAGE)


def test_select_heads_averages_or_picks_one_head():
    att = np.stack([np.eye(3), np.ones((3, 3)) / 3])[None]  # (1, 2, 3, 3)
    np.testing.assert_allclose(select_heads(att), (np.eye(3) + 1 / 3) / 2)
    np.testing.assert_allclose(select_heads(att, head=0), np.eye(3))
    with pytest.raises(ValueError, match="out of range"):
        select_heads(att, head=2)
    with pytest.raises(ValueError, match="one sample"):
        select_heads(np.concatenate([att, att]))


def test_query_groups_average_windows_and_reject_out_of_range():
    groups = query_groups([2, range(4, 8)], n_target=10)
    assert [g for g, _ in groups] == ["query 2", "queries 4-7"]
    np.testing.assert_array_equal(groups[1][1], [4, 5, 6, 7])
    assert len(query_groups(None, 10, default_count=3)) == 3
    assert len(query_groups(None, 10)) == 10
    with pytest.raises(ValueError, match="out of range"):
        query_groups(12, n_target=10)


# ---------------------------------------------------------------- plot_attention


def test_plot_attention_3d_cuts_through_the_planted_peak():
    cell = np.ravel_multi_index((1, 2, 3), GRID)
    model = image_model(peaks=[0, cell])
    image = np.random.default_rng(0).random(IMAGE).astype(np.float32)
    fig = Visualizer.plot_attention(model, image, target_queries=[1])
    assert isinstance(fig, Figure)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 3  # three orthogonal slices
    assert [ax.get_title() for ax in image_axes] == [
        "query 1: i=4",
        "query 1: j=7",
        "query 1: k=10",
    ]
    # the overlay drawn on the slice i=4 peaks at (j, k) = (7, 10)
    overlay = np.asarray(image_axes[0].images[1].get_array())  # transposed: (k, j)
    assert np.unravel_index(np.argmax(overlay), overlay.shape) == (10, 7)
    # the anatomy under it is the image's slice
    np.testing.assert_allclose(np.asarray(image_axes[0].images[0].get_array()), image[4].T)


def test_plot_attention_image_defaults_to_a_few_queries_one_row_each():
    model = image_model(peaks=[0, 3, 5, 7, 11])
    fig = Visualizer.plot_attention(model, torch.rand(1, 1, *IMAGE))
    rows = [ax for ax in fig.axes if ax.images]
    assert len(rows) == 3 * 3  # three default queries x three slices
    assert "mean of 2 heads" in fig.get_suptitle()


def test_plot_attention_2d_image_draws_one_panel_per_query():
    prov = TokenProvenance("image_grid", 12, grid_shape=(3, 4), input_shape=(1, 9, 12))
    model = StandInModel(
        prov, n_target=2, peaks=[2, 6], grid_for=lambda s: tuple(n // 3 for n in s[1:])
    )
    fig = Visualizer.plot_attention(model, np.zeros((1, 9, 12)), head=0)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 2
    # token 6 is cell (1, 2): voxel (4, 7)
    assert image_axes[1].get_title() == "query 1: peak (4, 7)"
    assert "head 0" in fig.get_suptitle()


def test_plot_attention_time_series_heatmap_labels_time_points_with_offset():
    prov = TokenProvenance("time", 5, input_shape=(5, 3))
    model = StandInModel(prov, n_target=3, peaks=[4, 0, 2])
    fig = Visualizer.plot_attention(model, np.zeros((5, 3)), time_offset=10, head=0)
    (ax,) = [a for a in fig.axes if a.images]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["t=10", "t=11", "t=12", "t=13", "t=14"]
    data = np.asarray(ax.images[0].get_array())
    assert data.shape == (3, 5)
    assert list(data.argmax(axis=1)) == [4, 0, 2]
    assert int(model.seen_time_offset[0]) == 10


def test_plot_attention_roi_heatmap_uses_roi_names_and_averages_a_window():
    names = ("V1", "M1", "PFC", "ACC")
    prov = TokenProvenance("roi", 4, labels=names, input_shape=(8, 4))
    model = StandInModel(prov, n_target=6, peaks=[0, 1, 1, 2, 3, 3])
    fig = Visualizer.plot_attention(
        model, torch.zeros(1, 8, 4), target_queries=[0, range(1, 3)], head=0
    )
    (ax,) = [a for a in fig.axes if a.images]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(names)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["query 0", "queries 1-2"]
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array())[1], [0, 1, 0, 0])


def test_plot_attention_text_heatmap_shows_words_and_hides_padding():
    tok = Tokenizer.fit(["the left hippocampus is small"])
    ids = tok.encode("hippocampus is small", max_length=8)  # bos 3 words eos + 3 pad
    prov = TokenProvenance("word", 8, input_shape=(8,))
    model = StandInModel(prov, n_target=2, peaks=[1, 3])
    fig = Visualizer.plot_attention(model, torch.tensor(ids), labels=tok)
    (ax,) = [a for a in fig.axes if a.images]
    words = [t.get_text() for t in ax.get_xticklabels()]
    assert words == ["<bos>", "hippocampus", "is", "small", "<eos>"]
    assert np.asarray(ax.images[0].get_array()).shape == (2, 5)


def test_plot_attention_tabular_heatmap_shows_column_names():
    prov = TokenProvenance("column", 3, input_shape=(3,))
    model = StandInModel(prov, n_target=2, peaks=[2, 0])
    fig = Visualizer.plot_attention(
        model, np.array([60.0, 1.0, 0.0]), labels=["age", "sex", "group"], target_labels=["a", "b"]
    )
    (ax,) = [a for a in fig.axes if a.images]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["age", "sex", "group"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]


def test_plot_attention_rejects_a_model_without_attention():
    model = image_model(peaks=[0], attention=False)
    with pytest.raises(ValueError, match="no attention"):
        Visualizer.plot_attention(model, np.zeros(IMAGE))


def test_plot_attention_rejects_x_of_the_wrong_shape():
    model = image_model(peaks=[0])
    with pytest.raises(ValueError, match="one sample"):
        Visualizer.plot_attention(model, np.zeros((2, 1, *IMAGE)))
    with pytest.raises(ValueError, match="one sample"):
        Visualizer.plot_attention(model, np.zeros((9, 12)))
    with pytest.raises(ValueError, match="image channels"):
        Visualizer.plot_attention(model, np.zeros((2, *IMAGE)))
    ts = StandInModel(TokenProvenance("time", 5, input_shape=(5, 3)), n_target=1)
    with pytest.raises(ValueError, match="channels"):
        Visualizer.plot_attention(ts, np.zeros((5, 4)))
    text = StandInModel(TokenProvenance("word", 4, input_shape=(4,)), n_target=1)
    with pytest.raises(ValueError, match="integer token ids"):
        Visualizer.plot_attention(text, np.zeros(4))


def test_plot_attention_rejects_wrong_label_count_and_objects_without_provenance():
    prov = TokenProvenance("column", 3, input_shape=(3,))
    model = StandInModel(prov, n_target=1, peaks=[0])
    with pytest.raises(ValueError, match="2 labels for 3"):
        Visualizer.plot_attention(model, np.zeros(3), labels=["age", "sex"])
    with pytest.raises(ValueError, match="condition_provenance"):
        Visualizer.plot_attention(torch.nn.Linear(3, 1), np.zeros(3))


# ---------------------------------------------------------------- plot_attention, real model


def tiny_model(condition_type, target_type, **kwargs):
    torch.manual_seed(0)
    options = {"embedding_dim": 8, "num_attention_heads": 2, "dropout": 0.0}
    if condition_type == "image":
        options["condition_encoder"] = "cnn"
        options["encoder_options"] = {"channels": 4, "n_blocks": 2}
    return MultiModalModel(condition_type, target_type, **{**options, **kwargs})


def test_plot_attention_on_a_real_image_model_cuts_through_its_own_attention_peak():
    model = tiny_model("image", "time_series", condition_shape=(1, 12, 12, 12), target_shape=(6, 4))
    model.train()
    image = torch.rand(1, 12, 12, 12, generator=torch.Generator().manual_seed(1))
    fig = Visualizer.plot_attention(model, image, target_queries=[2], time_offset=3)
    assert model.training  # the figure does not leave the model in eval mode
    # the same attention, computed by hand from the model's output and provenance
    model.eval()
    with torch.no_grad():
        out = model(image[None], time_offset=torch.tensor([3]), return_attention=True)
    prov = model.condition_provenance()
    weights = out.attention[0].mean(0)[2].numpy()
    peak = attention_peak(project_to_image(weights, prov.grid_shape, (12, 12, 12)))
    image_axes = [ax for ax in fig.axes if ax.images]
    expected = [f"t=5: {axis}={index}" for axis, index in zip("ijk", peak, strict=True)]
    assert [ax.get_title() for ax in image_axes] == expected


def test_plot_attention_on_a_real_2d_image_model_draws_one_panel_per_query():
    model = tiny_model("image", "tabular", condition_shape=(1, 12, 12), n_numeric=2)
    fig = Visualizer.plot_attention(model, np.random.default_rng(5).random((12, 12)))
    image_axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title().split(":")[0] for ax in image_axes] == ["column 0", "column 1"]


def test_plot_attention_on_a_real_roi_model_labels_regions():
    model = tiny_model(
        "time_series",
        "time_series",
        condition_shape=(6, 3),
        target_shape=(6, 3),
        encoder_options={"tokenize": "roi", "labels": ["V1", "M1", "PFC"]},
    )
    fig = Visualizer.plot_attention(model, np.zeros((6, 3)), time_offset=7)
    (ax,) = [a for a in fig.axes if a.images]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["V1", "M1", "PFC"]
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["t=7", "t=8"]
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()).sum(axis=1), 1.0, rtol=1e-5)


def test_plot_attention_on_a_real_text_model_encodes_a_string_and_shows_words():
    tok = Tokenizer.fit(["mild atrophy of the left hippocampus"])
    model = tiny_model("text", "tabular", tokenizer=tok, max_length=8, n_numeric=1)
    fig = Visualizer.plot_attention(model, "left hippocampus atrophy")
    (ax,) = [a for a in fig.axes if a.images]
    words = [t.get_text() for t in ax.get_xticklabels()]
    assert words == ["<bos>", "left", "hippocampus", "atrophy", "<eos>"]


@pytest.mark.parametrize("method", ["film", "concat"])
def test_plot_attention_rejects_real_models_without_attention(method):
    model = tiny_model(
        "tabular", "time_series", n_numeric=3, target_shape=(4, 2), conditioning=method
    )
    with pytest.raises(ValueError, match=f"no attention weights.*{method}"):
        Visualizer.plot_attention(model, np.array([0.1, 0.2, 0.3]))


def test_plot_attention_rejects_x_that_does_not_fit_a_real_model():
    model = tiny_model("image", "time_series", condition_shape=(1, 12, 12, 12), target_shape=(6, 4))
    with pytest.raises(ValueError, match="image channels"):
        Visualizer.plot_attention(model, np.zeros((3, 12, 12, 12)))
    ts = tiny_model("time_series", "time_series", condition_shape=(6, 3), target_shape=(6, 3))
    with pytest.raises(ValueError, match="channels"):
        Visualizer.plot_attention(ts, np.zeros((6, 5)))
    with pytest.raises(ValueError, match="string"):
        Visualizer.plot_attention(ts, "not a time series")


# ---------------------------------------------------------------- predictions


def test_timeseries_prediction_draws_chosen_rois_with_names_and_r():
    rng = np.random.default_rng(1)
    true = rng.standard_normal((20, 5))
    fig = Visualizer.plot_timeseries_prediction(
        true, true, roi_labels=list("ABCDE"), rois=[1, 3], tr=2.0, baseline=np.zeros((20, 5))
    )
    assert titles(fig) == ["B: r = 1.00 (baseline r = n/a)", "D: r = 1.00 (baseline r = n/a)"]
    assert fig.axes[-1].get_xlabel() == "time (s)"
    assert fig.axes[0].lines[0].get_xdata()[-1] == pytest.approx(38.0)


def test_timeseries_prediction_rejects_mismatched_shapes_and_rois():
    with pytest.raises(ValueError, match=r"\(T, R\)"):
        Visualizer.plot_timeseries_prediction(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="rois"):
        Visualizer.plot_timeseries_prediction(np.zeros((10, 3)), np.zeros((10, 3)), rois=[3])
    with pytest.raises(ValueError, match="roi_labels"):
        Visualizer.plot_timeseries_prediction(
            np.zeros((10, 3)), np.zeros((10, 3)), roi_labels=["a"]
        )


def test_image_prediction_shows_true_predicted_difference_for_three_slices():
    rng = np.random.default_rng(2)
    true = rng.random((6, 7, 8))
    fig = Visualizer.plot_image_prediction(true[None] + 0.1, true)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 9
    assert image_axes[2].get_title() == "difference i=3"
    np.testing.assert_allclose(np.asarray(image_axes[2].images[0].get_array()), 0.1)
    assert "r = 1.00" in fig.get_suptitle()
    fig2 = Visualizer.plot_image_prediction(true[0], true[0])
    assert len([ax for ax in fig2.axes if ax.images]) == 3
    with pytest.raises(ValueError, match="differ in shape"):
        Visualizer.plot_image_prediction(true, true[:5])


def test_tabular_prediction_scatters_numeric_and_confuses_categorical():
    true = np.array([[60.0, 0], [70.0, 1], [65.0, 1], [50.0, 0]])
    pred = {
        "numeric": true[:, :1] + 1.0,
        "categorical": [np.array([[2, 0], [0, 3], [1, 0], [4, 1]])],
    }
    fig = Visualizer.plot_tabular_prediction(pred, true, ["age", "group"], categorical=["group"])
    assert titles(fig) == ["age: r = 1.00", "group: accuracy 0.75"]
    confusion = np.asarray(fig.axes[1].images[0].get_array())
    np.testing.assert_array_equal(confusion, [[2, 0], [1, 1]])
    with pytest.raises(ValueError, match="not among columns"):
        Visualizer.plot_tabular_prediction(true, true, ["age", "group"], categorical=["sex"])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        Visualizer.plot_tabular_prediction(true, true, ["age", "group", "sex"])


def test_text_prediction_lists_pairs_with_word_f1():
    fig = Visualizer.plot_text_prediction(
        ["small left hippocampus", "x"], ["left hippocampus small", "y"]
    )
    assert "mean word F1 = 0.50" in fig.axes[0].get_title()
    assert "true: left hippocampus small" in all_text(fig)
    with pytest.raises(ValueError, match="1 predicted texts for 2"):
        Visualizer.plot_text_prediction(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="not one string"):
        Visualizer.plot_text_prediction("a", "a")


# ---------------------------------------------------------------- workflow figures


def test_attention_on_anatomy_cuts_through_the_attention_peak():
    anatomy = np.random.default_rng(3).random((10, 12, 9))
    attention = np.zeros_like(anatomy)
    attention[3, 5, 7] = 1.0
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10.0, -12.0, -8.0]
    fig = attention_on_anatomy(attention, anatomy, affine, title="exp1 attention")
    assert isinstance(fig, Figure)
    text = all_text(fig)
    assert "exp1 attention" in text
    # world coordinates of voxel (3, 5, 7): (-4, -2, 6); nilearn annotates the cuts
    for label in ("x=-4", "y=-2", "z=6"):
        assert label in text


def test_attention_on_anatomy_rejects_mismatched_grids():
    with pytest.raises(ValueError, match="one voxel grid"):
        attention_on_anatomy(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), np.eye(4))
    with pytest.raises(ValueError, match="3-D"):
        attention_on_anatomy(np.zeros((4, 4)), np.zeros((4, 4)), np.eye(4))
    with pytest.raises(ValueError, match="4 x 4"):
        attention_on_anatomy(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), np.eye(3))


def test_connectivity_comparison_shares_one_scale_and_reports_similarity():
    rng = np.random.default_rng(4)
    true_fc = np.corrcoef(rng.standard_normal((4, 50)))
    fig = connectivity_comparison(true_fc, true_fc * 0.5, labels=["A", "B", "C", "D"])
    matrices = [ax for ax in fig.axes if ax.images]
    assert len(matrices) == 2
    assert fig.get_suptitle() == "FC similarity r = 1.00"
    assert matrices[0].images[0].get_clim() == matrices[1].images[0].get_clim()
    assert [t.get_text() for t in matrices[0].get_xticklabels()] == ["A", "B", "C", "D"]
    with pytest.raises(ValueError, match="differ in shape"):
        connectivity_comparison(true_fc, true_fc[:3, :3])
    with pytest.raises(ValueError, match="square"):
        connectivity_comparison(true_fc[:3], true_fc[:3])


def test_learning_curves_draw_train_and_validation_loss():
    history = pd.DataFrame(
        {"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.0], "val_loss": [3.5, 2.5, 2.8]}
    )
    fig = learning_curves(history)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.lines]
    assert labels[:2] == ["train", "validation"]
    assert "best epoch 2" in labels
    with pytest.raises(ValueError, match="val_loss"):
        learning_curves(history.drop(columns="val_loss"))
    with pytest.raises(ValueError, match="empty"):
        learning_curves(history.iloc[:0])


def test_an_ensembles_learning_curves_keep_each_member_apart():
    """One line per member and kind (not one line zig-zagging across members' epochs),
    each member's best validation epoch starred at its own minimum."""
    one = {"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.0], "val_loss": [3.5, 2.5, 2.8]}
    two = {"epoch": [1, 2], "train_loss": [2.0, 1.5], "val_loss": [2.2, 2.1]}
    history = pd.concat([pd.DataFrame(one).assign(member=0), pd.DataFrame(two).assign(member=1)])[
        ["member", "epoch", "train_loss", "val_loss"]
    ]
    (ax,) = learning_curves(history).axes
    curves = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
    assert set(curves) == {
        "train, member 0", "validation, member 0", "train, member 1", "validation, member 1"
    }  # fmt: skip
    assert list(curves["validation, member 1"].get_xdata()) == [1, 2]
    stars = [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines
             if line.get_marker() == "*"]  # fmt: skip
    assert stars == [(2, 2.5), (2, 2.1)]


def test_summary_chart_groups_experiments_against_baselines_per_metric():
    rows = [
        (exp, model, metric, value)
        for exp in ("img2ts", "tab2ts")
        for model, value in (("group_mean", 0.2), ("model", 0.5), ("noise_ceiling", 0.9))
        for metric in ("pearson_r", "fc_similarity")
    ]
    summary = pd.DataFrame(rows, columns=["experiment", "model", "metric", "value"])
    fig = summary_chart(summary)
    assert titles(fig) == ["pearson_r", "fc_similarity"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["img2ts", "tab2ts"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "model",
        "group_mean",
        "noise_ceiling",
    ]
    assert len(ax.patches) == 6
    with pytest.raises(ValueError, match="repeats"):
        summary_chart(pd.concat([summary, summary.iloc[:1]]))
    with pytest.raises(ValueError, match="value"):
        summary_chart(summary.drop(columns="value"))


def test_summary_chart_draws_intervals_and_marks_the_verdicts():
    columns = ["experiment", "model", "metric", "value", "ci_low", "ci_high", "verdict"]
    rows = [
        ("good", "model", "pearson_r", 0.5, 0.45, 0.55, ""),
        ("good", "ridge", "pearson_r", 0.3, 0.25, 0.35, ""),
        ("good", "model-ridge", "pearson_r", 0.2, 0.15, 0.25, "beats"),
        ("weak", "model", "pearson_r", 0.31, 0.2, 0.4, ""),
        ("weak", "ridge", "pearson_r", 0.3, float("nan"), float("nan"), ""),
        ("weak", "model-ridge", "pearson_r", 0.01, -0.05, 0.07, "does not beat"),
    ]
    fig = summary_chart(pd.DataFrame(rows, columns=columns))
    ax = fig.axes[0]
    assert len(ax.patches) == 4  # difference rows are not bars
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["model", "ridge"]
    notes = [t.get_text() for t in ax.texts]
    assert notes == ["beats ridge", "not > ridge"]
    # error bars: one vertical segment per bar, spanning its interval (zero without one)
    from matplotlib.container import BarContainer

    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    segments = [seg for c in bars for seg in c.errorbar.lines[2][0].get_segments()]
    spans = sorted(round(float(s[1, 1] - s[0, 1]), 6) for s in segments)
    assert spans == [0.0, 0.1, 0.1, 0.2]
    # the model that beats every baseline gets a thick edge; the one that does not, none
    widths = [p.get_linewidth() for p in bars[0].patches]
    assert widths[0] == 2.0 and widths[1] < 2.0


def test_roi_attention_matrix_labels_rows_and_columns():
    fig = roi_attention_matrix(np.eye(3)[:2], ["t1", "t2"], ["age", "sex", "group"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["age", "sex", "group"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["t1", "t2"]
    with pytest.raises(ValueError, match="condition_labels"):
        roi_attention_matrix(np.eye(3), ["a", "b", "c"], ["x"])


def test_save_figure_writes_a_valid_png_atomically(tmp_path):
    fig = roi_attention_matrix(np.eye(2), ["a", "b"], ["c", "d"])
    path = save_figure(fig, tmp_path / "figs" / "attention.png", dpi=50)
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size[0] > 10
    assert sorted(p.name for p in path.parent.iterdir()) == ["attention.png"]


def test_save_figure_closes_pyplot_figures_and_rejects_missing_suffix(tmp_path):
    fig = plt.figure()
    save_figure(fig, tmp_path / "x.png", dpi=20)
    assert fig.number not in plt.get_fignums()
    with pytest.raises(ValueError, match="suffix"):
        save_figure(roi_attention_matrix(np.eye(2), ["a", "b"], ["c", "d"]), tmp_path / "noext")
    assert not (tmp_path / "noext").exists()
