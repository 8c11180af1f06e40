"""``spatial_mix``: spatial access to the condition tokens without content-based weights.

The control for cross-attention (issue 18, item 8): it must build wherever the
other methods do, its weights must not depend on the input, it must solve a task
that pooling cannot, and it must match cross-attention's parameter count.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from modalmerge.data.synthetic.params import SyntheticParams
from modalmerge.models import MultiModalModel
from modalmerge.models.conditioning import (
    Conditioning,
    SpatialMixLayer,
    needs_token_counts,
    returns_attention,
)
from modalmerge.settings import from_config
from modalmerge.training.schedule import make_optimizer
from tests._model_fixtures import (
    HEADS,
    MODALITIES,
    B,
    batch,
    check_prediction,
    scalar_loss,
    tiny_model,
)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def test_only_the_table_methods_need_token_counts_and_only_weighted_ones_return_weights():
    assert needs_token_counts("spatial_mix")
    assert not any(needs_token_counts(m) for m in ("cross_attention", "film", "adaln", "concat"))
    assert returns_attention("spatial_mix") and returns_attention("cross_attention")
    assert not any(returns_attention(m) for m in ("film", "adaln", "adain", "concat"))
    with pytest.raises(ValueError, match="needs n_queries and n_condition"):
        Conditioning("spatial_mix", dim=8, n_heads=2)


@pytest.mark.parametrize("target", MODALITIES)
@pytest.mark.parametrize("condition", MODALITIES)
def test_builds_from_its_name_and_takes_an_optimiser_step_for_every_pair(condition, target):
    torch.manual_seed(0)
    model = tiny_model(condition, target, "spatial_mix")
    x, y = batch(condition), batch(target, seed=1)
    n_condition = model.condition_provenance().n_tokens
    n_target = model.target_provenance().n_tokens
    layer = model.conditioner.layers[0]
    assert (layer.n_queries, layer.n_condition) == (n_target, n_condition)
    out = model(x, target=y, return_attention=True)
    check_prediction(out.prediction, target)
    assert out.attention.shape == (B, HEADS, n_target, n_condition)
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(B, HEADS, n_target))
    loss = scalar_loss(out.prediction)
    assert torch.isfinite(loss)
    loss.backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    assert layer.mix_logits.grad.abs().sum() > 0  # the table learns from the start (uniform)
    before = layer.mix_logits.detach().clone()
    optimizer = make_optimizer(model, lr=1e-2, weight_decay=0.01)
    optimizer.step()
    assert not torch.equal(before, layer.mix_logits.detach())
    assert torch.isfinite(scalar_loss(model(x, target=y).prediction))
    # it round-trips through the plain JSON config like every method
    clone = MultiModalModel.from_config(model.config)
    clone.load_state_dict(model.state_dict())


def _trained_table_model() -> MultiModalModel:
    torch.manual_seed(0)
    model = tiny_model("time_series", "tabular", "spatial_mix").eval()
    with torch.no_grad():  # a non-uniform table, as after training
        model.conditioner.layers[0].mix_logits.normal_(0, 2.0)
    return model


def test_weights_do_not_depend_on_the_condition_content():
    model = _trained_table_model()
    x = batch("time_series", seed=0)
    other = batch("time_series", seed=5) * 3 + 1
    with torch.no_grad():
        a = model(x, return_attention=True)
        b = model(other, return_attention=True)
    torch.testing.assert_close(a.attention, b.attention, rtol=0, atol=0)
    torch.testing.assert_close(a.attention[0], a.attention[1], rtol=0, atol=0)  # across samples
    assert not torch.allclose(a.prediction["numeric"], b.prediction["numeric"])
    # the same check fails for content-based attention: this is what it is a control for
    torch.manual_seed(0)
    xattn = tiny_model("time_series", "tabular", "cross_attention").eval()
    with torch.no_grad():
        assert not torch.allclose(
            xattn(x, return_attention=True).attention,
            xattn(other, return_attention=True).attention,
        )


def test_permuting_token_contents_acts_only_through_the_values():
    """Permuting the tokens' contents == permuting the table's columns, nothing else."""
    torch.manual_seed(0)
    dim, heads, n_q, n_c = 8, 2, 3, 5
    layer = SpatialMixLayer(dim, n_q, n_c, n_heads=heads).eval()
    with torch.no_grad():
        layer.mix_logits.normal_(0, 2.0)
    queries = torch.randn(B, n_q, dim)
    tokens = torch.randn(B, n_c, dim)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        out, w = layer(queries, tokens, return_attention=True)
        out_perm, w_perm = layer(queries, tokens[:, perm], return_attention=True)
        torch.testing.assert_close(w, w_perm, rtol=0, atol=0)  # weights: untouched
        assert not torch.allclose(out, out_perm)  # output: changed, through the values
        # permute the table's columns the same way: the output is restored exactly
        layer.mix_logits.copy_(layer.mix_logits[..., perm])
        restored, _ = layer(queries, tokens[:, perm])
    torch.testing.assert_close(restored, out)


def test_padding_tokens_get_no_weight_and_shorter_inputs_use_the_leading_columns():
    model = _trained_table_model()
    torch.manual_seed(0)
    text = tiny_model("text", "time_series", "spatial_mix").eval()
    with torch.no_grad():
        text.conditioner.layers[0].mix_logits.normal_(0, 2.0)
        ids = batch("text")  # bos w w eos pad pad
        att = text(ids, return_attention=True).attention
        assert torch.all(att[..., 4:] == 0)
        torch.testing.assert_close(att.sum(-1), torch.ones_like(att.sum(-1)))
        torch.testing.assert_close(text(ids[:, :4]).prediction, text(ids).prediction)
        layer = model.conditioner.layers[0]
        too_many = torch.randn(B, layer.n_condition + 1, 16)
        with pytest.raises(ValueError, match="built for .* condition tokens"):
            layer(torch.randn(B, layer.n_queries, 16), too_many)


class _Planted(nn.Module):
    """Learned queries -> one conditioning layer -> a scalar per query."""

    def __init__(self, method: str, n_queries: int, n_tokens: int, dim: int = 16):
        super().__init__()
        self.embed = nn.Linear(1, dim)  # token-wise: no information passes between tokens
        self.query = nn.Parameter(torch.randn(n_queries, dim) * 0.1)
        self.conditioning = Conditioning(
            method, dim, n_heads=2, n_queries=n_queries, n_condition=n_tokens
        )
        self.head = nn.Linear(dim, 1)

    def forward(self, x):  # x (B, N) -> (B, Q)
        queries = self.query.expand(x.shape[0], -1, -1)
        out, _ = self.conditioning(queries, self.embed(x.unsqueeze(-1)))
        return self.head(out).squeeze(-1)


def _fit(method: str, source: torch.Tensor, steps: int = 300) -> float:
    torch.manual_seed(0)
    n_tokens, n_queries = 8, len(source)
    model = _Planted(method, n_queries, n_tokens)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(64, n_tokens, generator=g)
        loss = ((model(x) - x[:, source]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x = torch.randn(512, n_tokens, generator=g)
    with torch.no_grad():
        return float(((model(x) - x[:, source]) ** 2).mean())


def test_a_planted_source_token_per_query_is_learned_where_pooling_cannot():
    """Query i's target is token source[i]'s value: the pooled mean carries 1/8 of it."""
    source = torch.tensor([5, 2, 7, 0])
    mix, pooled = _fit("spatial_mix", source), _fit("concat", source)
    # unit-variance targets: the best a pooled model can do is ~1 - 1/8 = 0.875
    assert pooled > 0.7
    assert mix < 0.1 and mix < pooled / 10
    # content-based weights cannot pick a token by position when its content has none
    assert _fit("cross_attention", source) > 0.7


def _default_experiment(name: str):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    settings = from_config(config)
    params = SyntheticParams(**config["dataset"]["params"])
    factor = settings.shard.image_downsample
    image = (1, *(n // factor for n in params.grid_shape))
    series = (settings.shard.window, params.n_regions)
    first = settings.experiments[0]
    return first, image, series


def _build(experiment, method: str, image, series) -> MultiModalModel:
    return MultiModalModel(
        condition_type=experiment.condition,
        target_type=experiment.target,
        condition_encoder=experiment.encoder,
        target_decoder=experiment.decoder,
        embedding_dim=experiment.embedding_dim,
        num_attention_heads=experiment.heads,
        conditioning=method,
        conditioning_layers=experiment.layers,
        dropout=experiment.dropout,
        encoder_options=dict(experiment.encoder_options),
        decoder_options=dict(experiment.decoder_options),
        condition_shape=image,
        target_shape=series,
    )


def test_parameter_count_matches_cross_attention_within_5_percent_at_the_defaults():
    experiment, image, series = _default_experiment("first")
    assert (experiment.condition, experiment.target) == ("image", "time_series")
    assert (experiment.embedding_dim, experiment.heads) == (64, 4)
    counts = {
        m: _build(experiment, m, image, series).n_parameters()
        for m in ("cross_attention", "spatial_mix")
    }
    assert abs(counts["spatial_mix"] / counts["cross_attention"] - 1) <= 0.05, counts
    # the same encoder and decoder: the difference is the conditioning layer alone
    model = _build(experiment, "spatial_mix", image, series)
    n_q, n_c = model.target_provenance().n_tokens, model.condition_provenance().n_tokens
    dim = experiment.embedding_dim
    assert counts["spatial_mix"] - counts["cross_attention"] == (
        experiment.heads * n_q * n_c - 2 * (dim * dim + dim)
    )


def test_weight_dropout_draws_a_mask_per_sample_as_attention_does():
    torch.manual_seed(0)
    layer = SpatialMixLayer(8, 3, 5, n_heads=2, dropout=0.5).train()
    queries = torch.randn(1, 3, 8).expand(4, -1, -1)
    tokens = torch.randn(1, 5, 8).expand(4, -1, -1)  # four identical samples
    out, _ = layer(queries, tokens)
    assert not torch.allclose(out[0], out[1])
    layer.eval()
    out, _ = layer(queries, tokens)
    torch.testing.assert_close(out[0], out[1])
