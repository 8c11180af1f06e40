"""Conditioning methods: how condition tokens shape the target queries.

Each method is a layer ``(queries (B, Q, dim), condition (B, N, dim), mask (B, N) | None)
-> (conditioned queries (B, Q, dim), attention (B, heads, Q, N) | None)``, registered
by name; :class:`Conditioning` stacks ``n_layers`` of one method.

- ``cross_attention``: multi-head attention, queries from the target, keys/values
  from the condition, then residual + LayerNorm + feed-forward.
- ``film``: the pooled condition sets a per-feature scale and shift of the queries.
- ``adaln`` (adaptive layer norm; ``adain`` is an older name for it, still
  accepted): each query is layer-normalised over its features, then re-scaled
  and shifted from the condition tokens' mean and standard deviation. It is not
  instance normalisation: no statistic is taken across queries (tokens), so a
  causal text decoder stays causal.

``film`` and ``adaln`` start as the identity modulation: their last layer is
zero-initialised, so at initialisation the scale is 1 and the shift 0 whatever
the condition, and the output equals the unconditioned path.
- ``concat``: the pooled condition is concatenated to every query and projected
  (the plain baseline).
- ``spatial_mix``: the control for cross-attention. Each target query mixes the
  condition tokens with a learned, input-independent softmax weighting per head,
  ``(heads, n_queries, n_condition)``, then the same value projection, output
  projection, residual and feed-forward as ``cross_attention``: it keeps spatial
  access to the tokens but its weights do not depend on their content. The
  difference ``cross_attention - spatial_mix`` is what content-based attention
  adds; ``film``, ``adaln`` and ``concat`` pool the condition tokens into one
  vector first (``adaln`` into their mean and SD), so a difference to them also
  measures pooling.

Methods whose layers set ``returns_attention = True`` return weights
``(B, heads, Q, N)`` when asked (:func:`returns_attention`). A layer whose
``__init__`` names ``n_queries`` / ``n_condition`` is given the decoder's query
count and the encoder's token count (from their provenance) when the model is
built (:func:`needs_token_counts`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from modalmerge.models.layers import FeedForward, masked_mean
from modalmerge.models.registry import (
    _parameters,
    build,
    get_conditioning,
    register_conditioning,
)

TOKEN_COUNTS = ("n_queries", "n_condition")


def returns_attention(method: str) -> bool:
    """Whether the registered ``method`` returns weights ``(B, heads, Q, N)`` when asked."""
    return bool(getattr(get_conditioning(method), "returns_attention", False))


def needs_token_counts(method: str) -> bool:
    """Whether the ``method``'s layer is built knowing ``n_queries`` and ``n_condition``."""
    names, _ = _parameters(get_conditioning(method))
    return any(name in names for name in TOKEN_COUNTS)


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, n, d = x.shape  # (B, n, dim) -> (B, heads, n, d_head)
    return x.view(b, n, n_heads, d // n_heads).transpose(1, 2)


class _ResidualFeedForward(nn.Module):
    """``x -> LayerNorm(x + FeedForward(x))``."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.ff = FeedForward(dim, dropout=dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.ff(x))


@register_conditioning("cross_attention")
class CrossAttentionLayer(nn.Module):
    """Multi-head cross-attention from target queries to condition tokens.

    The fast path uses :func:`torch.nn.functional.scaled_dot_product_attention`;
    with ``return_attention=True`` the same attention is computed explicitly as
    ``softmax(Q K^T / sqrt(d_head))`` and its weights ``(B, heads, Q, N)`` are
    returned (weights before dropout; each row sums to 1 over condition tokens).

    ``sink: true`` (``method_options``) adds a learned "null" key whose value is zero
    (an attention sink; Xiao et al. 2023, "Efficient streaming language models with
    attention sinks"; register tokens, Darcet et al. 2024): a head that has nothing
    to read can put its mass there instead of on an arbitrary hub token. The sink
    carries no information about the condition or its regions. The returned weights
    are those of the real tokens only, so a row then sums to 1 minus the sink's share.
    """

    returns_attention = True

    def __init__(self, dim: int, n_heads: int = 8, dropout: float = 0.0, sink: bool = False):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"embedding dim {dim} must be divisible by {n_heads} heads")
        self.n_heads = n_heads
        self.dropout = dropout
        self.condition_norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)
        self.out_dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ff = _ResidualFeedForward(dim, dropout)
        if not isinstance(sink, bool):
            raise ValueError(f"cross_attention: sink must be true or false, got {sink!r}")
        # created last, and only when asked: the other weights' initial values under a
        # given seed stay those of the model without a sink
        self.sink_key = nn.Parameter(torch.zeros(dim)) if sink else None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return _split_heads(x, self.n_heads)  # (B, n, dim) -> (B, heads, n, d_head)

    def _with_sink(self, k, v, mask):
        """Append the sink: key ``sink_key`` per head, value 0, never masked."""
        b, h, _, d = k.shape
        key = self.sink_key.to(k.dtype).view(1, h, 1, d).expand(b, h, 1, d)
        k = torch.cat([k, key], dim=2)
        v = torch.cat([v, torch.zeros_like(v[:, :, :1])], dim=2)
        if mask is not None:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        return k, v, mask

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        return_attention: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention over heads: q (B, h, Q, d), k/v (B, h, N, d), mask (B, N) True = keep."""
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, N)
        p = self.dropout if self.training else 0.0
        if not return_attention:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p), None
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, Q, N)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        return F.dropout(weights, p, self.training) @ v, weights

    def forward(
        self,
        queries: torch.Tensor,
        condition: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Queries (B, Q, dim), condition (B, N, dim) -> (B, Q, dim), weights (B, h, Q, N) | None."""
        k, v = self.to_kv(self.condition_norm(condition)).chunk(2, dim=-1)
        k, v = self._heads(k), self._heads(v)
        if self.sink_key is not None:
            k, v, mask = self._with_sink(k, v, mask)
        out, weights = self.attend(self._heads(self.to_q(queries)), k, v, mask, return_attention)
        if weights is not None and self.sink_key is not None:
            weights = weights[..., :-1]  # the real tokens' share
        out = out.transpose(1, 2).reshape(queries.shape)  # (B, Q, dim)
        x = self.norm(queries + self.out_dropout(self.to_out(out)))
        return self.ff(x), weights


def _zero_init(linear: nn.Linear) -> nn.Linear:
    """Zero weight and bias: a modulation head that starts at scale 1, shift 0."""
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


@register_conditioning("film")
class FiLMLayer(nn.Module):
    """Feature-wise linear modulation: ``q * (1 + gamma(c)) + beta(c)`` from the pooled condition.

    The last layer of ``gamma, beta`` starts at zero (identity modulation). No
    normalisation follows the modulation (a LayerNorm there would cancel a gain
    or shift shared by all features); the residual feed-forward block follows.
    """

    def __init__(self, dim: int, n_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.to_scale_shift = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), _zero_init(nn.Linear(dim, 2 * dim))
        )
        self.ff = _ResidualFeedForward(dim, dropout)

    def modulate(self, queries, condition, mask=None):
        """The modulated queries ``q * (1 + gamma) + beta``, before the feed-forward block."""
        gamma, beta = self.to_scale_shift(masked_mean(condition, mask)).chunk(2, dim=-1)
        return queries * (1 + gamma.unsqueeze(1)) + beta.unsqueeze(1)

    def forward(self, queries, condition, mask=None, return_attention=False):
        """Queries (B, Q, dim), condition (B, N, dim) -> (B, Q, dim), None."""
        return self.ff(self.modulate(queries, condition, mask)), None


@register_conditioning("adaln")
@register_conditioning("adain")  # its former name: older configs and saved models use it
class AdaptiveLayerNormLayer(nn.Module):
    """Adaptive layer normalisation driven by condition statistics (``adaln``, alias ``adain``).

    Each query is normalised over its features (no information passes between
    queries, so causal text decoding stays causal: this is a layer norm, not the
    instance norm over tokens of AdaIN proper); the condition tokens'
    per-feature mean and standard deviation (after a linear projection) are mapped
    to a scale ``1 + s`` and a shift ``b`` applied to the normalised queries. The
    map starts at zero, so at initialisation the layer is
    ``feed_forward(layer_norm(q))`` whatever the condition.
    """

    def __init__(self, dim: int, n_heads: int = 8, dropout: float = 0.0, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.project = nn.Linear(dim, dim)
        self.to_scale_shift = _zero_init(nn.Linear(2 * dim, 2 * dim))
        self.ff = _ResidualFeedForward(dim, dropout)

    def modulate(self, queries, condition, mask=None):
        """The normalised, modulated queries, before the feed-forward block."""
        normalised = F.layer_norm(queries, queries.shape[-1:], eps=self.eps)
        c = self.project(condition)  # (B, N, dim)
        c_mean = masked_mean(c, mask)
        c_std = torch.sqrt(masked_mean((c - c_mean.unsqueeze(1)) ** 2, mask) + self.eps)
        scale, shift = self.to_scale_shift(torch.cat([c_mean, c_std], dim=-1)).chunk(2, dim=-1)
        return normalised * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)

    def forward(self, queries, condition, mask=None, return_attention=False):
        """Queries (B, Q, dim), condition (B, N, dim) -> (B, Q, dim), None."""
        return self.ff(self.modulate(queries, condition, mask)), None


@register_conditioning("concat")
class ConcatLayer(nn.Module):
    """Concatenate the pooled condition to every query and project back to ``dim``."""

    def __init__(self, dim: int, n_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.condition_norm = nn.LayerNorm(dim)
        self.project = nn.Linear(2 * dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.ff = _ResidualFeedForward(dim, dropout)

    def forward(self, queries, condition, mask=None, return_attention=False):
        """Queries (B, Q, dim), condition (B, N, dim) -> (B, Q, dim), None."""
        pooled = masked_mean(self.condition_norm(condition), mask)  # (B, dim)
        pooled = pooled.unsqueeze(1).expand(-1, queries.shape[1], -1)
        x = self.norm(queries + self.project(torch.cat([queries, pooled], dim=-1)))
        return self.ff(x), None


@register_conditioning("spatial_mix")
class SpatialMixLayer(nn.Module):
    """Learned, input-independent mixing of the condition tokens: cross-attention without content.

    Query ``i`` of head ``h`` takes ``sum_n W[h, i, n] v_n`` with
    ``W[h, i] = softmax(logits[h, i])`` over the condition tokens: ``logits``
    ``(heads, n_queries, n_condition)`` is a learned table, the same for every
    input, so the weights never depend on the condition's (or the query's)
    content. Everything else is :class:`CrossAttentionLayer`: condition
    LayerNorm, value projection split into heads, output projection, residual +
    LayerNorm, residual feed-forward. The table starts at zero (uniform weights:
    every query starts from the mean of the condition's values, as the pooled
    methods do) and, like the decoders' learned queries, is not weight-decayed.

    Token ``n`` is always the condition's ``n``-th token and query ``i`` the
    decoder's ``i``-th query, so the counts are fixed when the model is built
    (from the encoder's and decoder's provenance). Shorter inputs use the
    leading rows and columns of the table (a text condition shorter than
    ``max_length``, a text target's prefix during decoding); longer ones are
    refused. Padding tokens (``mask`` False) get weight 0.

    Its parameter count differs from ``cross_attention``'s by
    ``heads * n_queries * n_condition - 2 * (dim**2 + dim)`` (the table in, the
    query and key projections out): +1,280 (+0.7 % of the model) for the default
    image -> time-series experiment (150 grid tokens, 16 ROI queries, dim 64, 4 heads).
    """

    returns_attention = True

    def __init__(
        self, dim: int, n_queries: int, n_condition: int, n_heads: int = 8, dropout: float = 0.0
    ):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"embedding dim {dim} must be divisible by {n_heads} heads")
        if n_queries < 1 or n_condition < 1:
            raise ValueError(
                f"spatial_mix needs at least one query and one condition token, got "
                f"n_queries={n_queries}, n_condition={n_condition}"
            )
        self.n_heads, self.n_queries, self.n_condition = n_heads, n_queries, n_condition
        self.dropout = dropout
        self.condition_norm = nn.LayerNorm(dim)
        self.to_v = nn.Linear(dim, dim)
        self.mix_logits = nn.Parameter(torch.zeros(n_heads, n_queries, n_condition))
        self.to_out = nn.Linear(dim, dim)
        self.out_dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ff = _ResidualFeedForward(dim, dropout)

    def weights(
        self, n_target: int, n_condition: int, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mixing weights ``(1 or B, heads, n_target, n_condition)``; rows sum to 1.

        Without ``mask`` the batch axis is 1 (the weights are the same for every
        sample); with ``mask`` (B, N), True = keep, padding tokens get 0.
        """
        if n_target > self.n_queries or n_condition > self.n_condition:
            raise ValueError(
                f"spatial_mix was built for {self.n_queries} target queries and "
                f"{self.n_condition} condition tokens (a learned weight per pair), got "
                f"{n_target} and {n_condition}: build the model for these shapes"
            )
        logits = self.mix_logits[:, :n_target, :n_condition].unsqueeze(0)  # (1, h, Q, N)
        if mask is not None:
            logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        return logits.softmax(dim=-1)

    def forward(
        self,
        queries: torch.Tensor,
        condition: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Queries (B, Q, dim), condition (B, N, dim) -> (B, Q, dim), weights (B, h, Q, N) | None."""
        b, n_target, _ = queries.shape
        weights = self.weights(n_target, condition.shape[1], mask)
        v = _split_heads(self.to_v(self.condition_norm(condition)), self.n_heads)
        if self.training and self.dropout > 0:  # a dropout mask per sample, as in attention
            mixed = F.dropout(weights.expand(b, -1, -1, -1), self.dropout, True) @ v
        else:
            mixed = weights @ v  # (1 or B, h, Q, N) @ (B, h, N, d_head) -> (B, h, Q, d_head)
        out = mixed.transpose(1, 2).reshape(queries.shape)  # (B, Q, dim)
        x = self.norm(queries + self.out_dropout(self.to_out(out)))
        if return_attention:
            return self.ff(x), weights.expand(b, -1, -1, -1)
        return self.ff(x), None


class Conditioning(nn.Module):
    """A stack of ``n_layers`` layers of one registered conditioning method.

    Parameters
    ----------
    method : str
        A registered name (``cross_attention``, ``spatial_mix``, ``film``,
        ``adaln`` (alias ``adain``), ``concat``, ...).
    dim, n_heads, dropout : int, int, float
        Passed to every layer.
    n_layers : int
        Layers applied in turn; attention weights returned are the last layer's.
    options : dict, optional
        Extra keyword arguments for the layer class.
    n_queries, n_condition : int, optional
        Target queries and condition tokens, for methods that learn a weight per
        pair (``spatial_mix``; see :func:`needs_token_counts`).
    """

    def __init__(
        self,
        method: str,
        dim: int,
        n_heads: int = 8,
        dropout: float = 0.0,
        n_layers: int = 1,
        options: dict | None = None,
        n_queries: int | None = None,
        n_condition: int | None = None,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"conditioning n_layers must be >= 1, got {n_layers}")
        layer_cls = get_conditioning(method)
        self.method = method
        settings = {"dim": dim, "n_heads": n_heads, "dropout": dropout}
        if needs_token_counts(method):
            if n_queries is None or n_condition is None:
                raise ValueError(
                    f"{method} conditioning learns a weight per (target query, condition "
                    "token): it needs n_queries and n_condition"
                )
            settings.update(n_queries=int(n_queries), n_condition=int(n_condition))
        self.layers = nn.ModuleList(
            build(layer_cls, f"{method} conditioning", (), settings, options)
            for _ in range(n_layers)
        )

    def forward(
        self,
        queries: torch.Tensor,
        condition: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Condition ``queries`` (B, Q, dim) on ``condition`` (B, N, dim).

        Returns the conditioned queries (B, Q, dim) and, for attention methods
        asked with ``return_attention``, weights (B, heads, Q, N); else None.
        """
        attention = None
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            queries, weights = layer(queries, condition, mask, return_attention and last)
            if last:
                attention = weights
        return queries, attention
