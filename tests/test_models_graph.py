"""The graph modality: packing, checks, edge-biased encoder, symmetric decoder, tangent space, loss."""

from __future__ import annotations

import pytest
import torch

from modalmerge.models import MultiModalModel
from modalmerge.models.encoders.graph import GraphTransformerEncoder
from modalmerge.models.graph import (
    exp_map,
    graph_sizes,
    log_euclidean_mean,
    log_map,
    matrix_sqrt,
    pack_graph,
    split_graph,
)
from modalmerge.training.losses import make_loss
from tests._model_fixtures import GRAPH, B, batch, tiny_model

torch.set_num_threads(1)


def _spd(n: int, batch_size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, n, 3 * n, generator=g, dtype=torch.float64)
    cov = x @ x.transpose(1, 2) / (3 * n)
    sd = cov.diagonal(dim1=1, dim2=2).sqrt()
    return cov / (sd[:, :, None] * sd[:, None, :])


def test_packing_splits_back_into_features_and_adjacency():
    x = batch("graph")
    features, adjacency = split_graph(x)
    assert features.shape == (B, 5, 2) and adjacency.shape == (B, 5, 5)
    torch.testing.assert_close(pack_graph(features, adjacency), x)
    assert graph_sizes((5, 5)) == (5, 0)
    with pytest.raises(ValueError, match=r"shape \(N, F \+ N\)"):
        graph_sizes((5, 4))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda x: x.__setitem__((0, 1, 4), x[0, 1, 4] + 1.0), "is not symmetric: sample 0"),
        (lambda x: x.__setitem__((1, 0, 0), float("nan")), "1 NaN or infinite"),
    ],
)
def test_bad_graphs_are_refused_with_the_problem_named(corrupt, message):
    model = tiny_model("graph", "time_series")
    x = batch("graph")
    corrupt(x)
    with pytest.raises(ValueError, match=rf"condition \(graph\).*{message}"):
        model(x)


def test_wrong_sized_graphs_are_refused():
    model = tiny_model("graph", "graph")
    with pytest.raises(ValueError, match=r"condition \(graph\) must have shape \(B, 5, 7\)"):
        model(batch("graph", shape=(6, 8)))
    with pytest.raises(ValueError, match=r"target_shape for graph must be \(N, F \+ N\)"):
        tiny_model("time_series", "graph", target_shape=(5, 3))


def test_node_tokens_carry_region_labels_and_the_edge_bias_reads_the_adjacency():
    labels = [f"r{i}" for i in range(5)]
    torch.manual_seed(0)
    biased = GraphTransformerEncoder(GRAPH, 8, n_heads=2, n_layers=1, profile=False, labels=labels)
    torch.manual_seed(0)
    plain = GraphTransformerEncoder(GRAPH, 8, n_heads=2, n_layers=1, profile=False, edge_bias=False)
    provenance = biased.token_provenance(GRAPH)
    assert (provenance.kind, provenance.n_tokens, provenance.labels) == ("roi", 5, tuple(labels))
    x = batch("graph")
    rewired = x.clone()
    rewired[..., 2:] = rewired[..., 2:].flip(-1).flip(-2)  # another symmetric adjacency
    assert not torch.allclose(biased(x), biased(rewired))
    # without the bias (and without the profile) the adjacency cannot reach the tokens
    torch.testing.assert_close(plain(x), plain(rewired))


def test_decoder_gives_symmetric_matrices_and_ignores_the_diagonal_in_the_loss():
    torch.manual_seed(0)
    model = tiny_model("time_series", "graph")
    out = model(batch("time_series")).prediction.detach()
    adjacency = split_graph(out)[1]
    torch.testing.assert_close(adjacency, adjacency.transpose(1, 2))
    loss = make_loss("graph")
    target = batch("graph", seed=3)
    moved = target.clone()
    moved[:, torch.arange(5), 2 + torch.arange(5)] += 5.0  # the diagonal only
    assert float(loss(out, target)) == pytest.approx(float(loss(out, moved)))
    assert float(loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(out, target)) > 0.1


def test_tangent_maps_round_trip_and_the_tangent_decoder_outputs_spd_matrices():
    fc = _spd(5, 4, seed=0)
    reference = log_euclidean_mean(fc)
    back = exp_map(log_map(fc, reference), matrix_sqrt(reference))
    torch.testing.assert_close(back, fc, atol=1e-8, rtol=1e-6)
    torch.manual_seed(0)
    model = tiny_model(
        "time_series", "graph", target_shape=(5, 5), decoder_options={"tangent": True}
    )
    model.decoder.set_tangent_reference(fc.float())
    torch.testing.assert_close(model.decoder.reference, reference.float())
    out = model(batch("time_series")).prediction
    assert out.shape == (B, 5, 5)
    assert bool((torch.linalg.eigvalsh(out.double()) > 0).all())
    # the reference travels with the weights
    clone = MultiModalModel.from_config(model.config)
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone.decoder.reference, model.decoder.reference)


def test_a_graph_to_graph_model_learns_a_planted_edge_map():
    # target edges = 2 x condition edges: a few hundred steps fit it well beyond the mean
    torch.manual_seed(0)
    model = tiny_model("graph", "graph", target_shape=(5, 5), dropout=0.0)
    g = torch.Generator().manual_seed(1)
    a = torch.rand(32, 5, 5, generator=g)
    x = torch.cat([torch.randn(32, 5, 2, generator=g), (a + a.transpose(1, 2)) / 2], -1)
    y = 2.0 * x[..., 2:]
    loss_fn = make_loss("graph")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(loss_fn(model(x).prediction, y).detach())
    for _ in range(150):
        optimizer.zero_grad()
        loss = loss_fn(model(x).prediction, y)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3 * first
