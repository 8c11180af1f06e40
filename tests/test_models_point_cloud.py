"""The point_cloud modality: centroid tokens, values at given points, point sets (Chamfer)."""

from __future__ import annotations

import pytest
import torch

from modalmerge.models import MultiModalModel
from modalmerge.models.encoders.point_cloud import farthest_point_sample
from modalmerge.training.losses import PointCloudLoss, chamfer_distance, make_loss
from modalmerge.training.schedule import make_optimizer
from tests._model_fixtures import (
    CLOUD,
    DIM,
    HEADS,
    MODALITIES,
    TINY_OPTIONS,
    B,
    batch,
    check_prediction,
    tiny_model,
)

torch.set_num_threads(1)
METHODS = ["cross_attention", "spatial_mix", "film", "adaln", "concat"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("condition", MODALITIES)
def test_point_set_generation_builds_and_trains_a_step_from_every_condition(condition, method):
    torch.manual_seed(0)
    model = tiny_model(condition, "point_cloud", method, target_decoder="set")
    x, y = batch(condition), batch("point_cloud", seed=1)
    out = model(x, target=y, return_attention=True)
    check_prediction(out.prediction, "point_cloud")
    loss = make_loss("point_cloud")(out.prediction, y)
    loss.backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.0)
    optimizer.step()
    # a generated set needs no target: it is a function of the condition only
    with torch.no_grad():
        free = model(x).prediction
    assert free.shape == (B, *CLOUD) and torch.isfinite(free).all()


def test_the_values_decoder_predicts_features_at_the_given_coordinates():
    torch.manual_seed(0)
    model = tiny_model("tabular", "point_cloud")
    y = batch("point_cloud", seed=3)
    out = model(batch("tabular"), target=y).prediction
    torch.testing.assert_close(out[..., :3], y[..., :3])  # coordinates are copied
    moved = y.clone()
    moved[..., :3] = moved[..., :3].flip(1)  # other coordinates, same features
    assert not torch.allclose(
        model(batch("tabular"), target=moved).prediction[..., 3:], out[..., 3:]
    )
    with pytest.raises(ValueError, match="needs the target's coordinates"):
        model(batch("tabular"))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision keeps the points exact
        half = model(batch("tabular"), target=y).prediction
    assert torch.equal(half[..., :3], y[..., :3])


def test_tokens_are_farthest_point_centroids_and_ignore_the_order_of_the_points():
    torch.manual_seed(0)
    model = tiny_model("point_cloud", "tabular").eval()
    x = batch("point_cloud")
    perm = torch.randperm(CLOUD[0])
    with torch.no_grad():
        tokens, _ = model.encode(x)
        shuffled, _ = model.encode(x[:, perm])
    torch.testing.assert_close(tokens, shuffled, rtol=1e-4, atol=1e-5)
    centroids = model.encoder.token_coordinates(x)
    assert centroids.shape == (B, TINY_OPTIONS["point_cloud"]["n_tokens"], 3)
    # every centroid is one of the cloud's points
    d = torch.cdist(centroids, x[..., :3]).min(-1).values
    assert float(d.max()) < 1e-4
    prov = model.condition_provenance()
    assert prov.kind == "point" and prov.n_tokens == tokens.shape[1] and prov.input_shape == CLOUD


def test_farthest_point_sampling_spreads_the_centroids():
    # two tight clusters far apart: two samples take one point of each
    a = torch.randn(1, 10, 3) * 0.01
    xyz = torch.cat([a, a + 100.0], dim=1)
    index = farthest_point_sample(xyz, 2)[0]
    assert {int(i) // 10 for i in index} == {0, 1}
    with pytest.raises(ValueError, match="cannot sample 21 centroids from 20 points"):
        farthest_point_sample(xyz, 21)


def test_attention_reaches_a_local_feature_planted_on_the_surface():
    # the target is a feature carried by the points near one fixed spot: the cloud encoder
    # with cross-attention learns it within a few steps (pooling would blur it)
    torch.manual_seed(0)
    model = tiny_model("point_cloud", "tabular", categorical_cardinalities=[], n_numeric=1)
    optimizer = make_optimizer(model, lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)

    def draw(n):
        xyz = torch.randn(n, CLOUD[0], 3, generator=g)
        xyz = 60 * xyz / xyz.norm(dim=-1, keepdim=True)
        signal = torch.randn(n, 1, generator=g)
        near = (torch.cdist(xyz, torch.tensor([[[60.0, 0, 0]]])) < 40).float()  # (n, N, 1)
        features = torch.cat([near * signal[:, None], torch.randn(n, CLOUD[0], 1, generator=g)], -1)
        return torch.cat([xyz, features], -1), signal

    x, y = draw(64)
    first = None
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x).prediction["numeric"], y)
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.3 * first


def test_chamfer_is_zero_for_the_same_set_in_any_order_and_grows_with_displacement():
    y = batch("point_cloud", seed=2)
    shuffled = y[:, torch.randperm(CLOUD[0])]
    coordinates, ahead, back = chamfer_distance(shuffled, y)
    assert float(coordinates) == 0 and float(ahead) == 0 and float(back) == 0
    shifted = y.clone()
    shifted[..., 0] += 5.0
    assert float(chamfer_distance(shifted, y)[0]) > 0
    loss = PointCloudLoss(coordinate_scale=1.0)
    # on the target's own points the loss is the per-point feature MSE
    noisy = y.clone()
    noisy[..., 3:] += 0.5
    assert float(loss(noisy, y)) == pytest.approx(0.25, rel=1e-5)
    assert float(loss(shuffled, y)) == 0.0


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda y: y[:, :10], "10 points where the model takes 24 \\(too few\\)"),
        (lambda y: y[..., :4], "1 features per point where the model takes 2"),
        (
            lambda y: y.masked_fill(
                torch.zeros_like(y, dtype=torch.bool).index_fill_(1, torch.tensor([3]), True),
                float("nan"),
            ),
            "NaN",
        ),
        (lambda y: y[0], "must have shape"),
    ],
)
def test_bad_clouds_are_refused_with_what_was_expected(bad, message):
    model = tiny_model("point_cloud", "time_series")
    with pytest.raises(ValueError, match=message):
        model(bad(batch("point_cloud")))


def test_an_encoder_asked_for_more_centroids_or_neighbours_than_points_is_refused():
    with pytest.raises(ValueError, match="too small for 30 centroids"):
        tiny_model("point_cloud", "time_series", encoder_options={"n_tokens": 30})
    with pytest.raises(ValueError, match=r"\(N, 3 \+ F\)"):
        tiny_model("point_cloud", "time_series", condition_shape=(24, 2))


def test_point_cloud_models_round_trip_through_their_config(tmp_path):
    torch.manual_seed(0)
    model = tiny_model("point_cloud", "point_cloud", target_decoder="set").eval()
    path = model.save(tmp_path / "model.pt")
    clone = MultiModalModel.load(path).eval()
    x = batch("point_cloud")
    with torch.no_grad():
        torch.testing.assert_close(model(x).prediction, clone(x).prediction)
    assert clone.config["condition_shape"] == list(CLOUD)
    assert DIM % HEADS == 0


def test_attention_of_a_point_cloud_target_is_drawn_with_its_points_given():
    from modalmerge.viz import Visualizer

    model = tiny_model("image", "point_cloud").eval()
    cloud = batch("point_cloud")[0]
    fig = Visualizer.plot_attention(model, batch("image")[0], target=cloud)
    assert fig.axes  # the values decoder needs the target's points: drawn, not refused
    with pytest.raises(ValueError, match="needs the target's coordinates"):
        Visualizer.plot_attention(model, batch("image")[0])
