"""Options against hub collapse (issue 18): ROI queries read out without mixing, and a sink.

``decoder_options: {n_layers: 0}`` must stop information passing between target
queries after the cross-attention (so a query's attention weights are the only
route from the condition to its output); ``method_options: {sink: true}`` must let a
head attend to nothing, and leave the model without a sink as it was.
"""

from __future__ import annotations

import pytest
import torch

from modalmerge.models import MultiModalModel
from modalmerge.models.conditioning import CrossAttentionLayer

torch.set_num_threads(1)
T, ROIS, DIM, HEADS = 6, 5, 8, 2


def _model(decoder_options: dict, method_options: dict | None = None) -> MultiModalModel:
    torch.manual_seed(0)
    return MultiModalModel(
        condition_type="time_series",
        target_type="time_series",
        embedding_dim=DIM,
        num_attention_heads=HEADS,
        condition_shape=(T, 3),
        target_shape=(T, ROIS),
        decoder_options=decoder_options,
        conditioning_options=method_options,
        dropout=0.0,
    ).eval()


@pytest.mark.parametrize("n_layers, mixes", [(0, False), (2, True)])
def test_roi_queries_without_a_mixer_do_not_mix(n_layers, mixes):
    """Changing ROI 0's query changes only ROI 0's prediction when n_layers is 0; with the
    transformer mixer (the default, 2 layers) it reaches the other ROIs too."""
    model = _model({"query": "roi", "n_layers": n_layers})
    x = torch.randn(3, T, 3)
    with torch.no_grad():
        before = model(x).prediction
        model.decoder.query[0] += 1.0
        after = model(x).prediction
    changed = (after - before).abs().amax(dim=(0, 1)) > 1e-6  # per ROI
    assert bool(changed[0])
    assert bool(changed[1:].any()) == mixes


def test_negative_decoder_layers_are_refused():
    with pytest.raises(ValueError, match="n_layers"):
        _model({"query": "roi", "n_layers": -1})


def test_sink_leaves_the_other_weights_as_without_it():
    """Same seed, same initial weights (the sink is created last), and the sink starts as a
    zero key, so only its own parameter is new."""
    plain, sunk = _model({"query": "roi"}), _model({"query": "roi"}, {"sink": True})
    a, b = plain.state_dict(), sunk.state_dict()
    assert set(b) - set(a) == {"conditioner.layers.0.sink_key"}
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=0, atol=0)


def test_sink_weights_and_fast_path_agree():
    """Weights returned (real tokens only) sum to below 1, and the explicit path gives the
    same output as the fused one."""
    torch.manual_seed(1)
    layer = CrossAttentionLayer(DIM, HEADS, sink=True).eval()
    with torch.no_grad():
        layer.sink_key.normal_()
    q, c = torch.randn(2, 4, DIM), torch.randn(2, 7, DIM)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        fast, none = layer(q, c, mask)
        slow, weights = layer(q, c, mask, return_attention=True)
    assert none is None and weights.shape == (2, HEADS, 4, 7)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    total = weights.sum(-1)
    assert bool((total < 1).all()) and bool((total > 0).all())
    assert float(weights[1, ..., 5:].abs().max()) == 0.0  # masked tokens stay at 0


def test_a_head_can_attend_to_nothing():
    """A sink key aligned with every query takes all the mass: the output no longer depends
    on the condition (without a sink, softmax must put the mass on some token)."""
    torch.manual_seed(2)
    layer = CrossAttentionLayer(DIM, HEADS, sink=True).eval()
    direction = torch.randn(DIM)
    with torch.no_grad():
        layer.to_q.weight.zero_()
        layer.to_q.bias.copy_(direction)
        layer.sink_key.copy_(50.0 * direction)
    q = torch.randn(2, 3, DIM)
    with torch.no_grad():
        one, w = layer(q, torch.randn(2, 4, DIM), return_attention=True)
        two, _ = layer(q, torch.randn(2, 4, DIM))
    assert float(w.sum(-1).max()) < 1e-6
    torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-5)


def test_sink_must_be_boolean():
    with pytest.raises(ValueError, match="sink"):
        CrossAttentionLayer(DIM, HEADS, sink="yes")
