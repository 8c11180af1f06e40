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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from modalmerge.models.layers import FeedForward, masked_mean
from modalmerge.models.registry import build, get_conditioning, register_conditioning


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
    """

    def __init__(self, dim: int, n_heads: int = 8, dropout: float = 0.0):
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

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape  # (B, n, dim) -> (B, heads, n, d_head)
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

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
        out, weights = self.attend(
            self._heads(self.to_q(queries)), self._heads(k), self._heads(v), mask, return_attention
        )
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


class Conditioning(nn.Module):
    """A stack of ``n_layers`` layers of one registered conditioning method.

    Parameters
    ----------
    method : str
        A registered name (``cross_attention``, ``film``, ``adaln`` (alias
        ``adain``), ``concat``, ...).
    dim, n_heads, dropout : int, int, float
        Passed to every layer.
    n_layers : int
        Layers applied in turn; attention weights returned are the last layer's.
    options : dict, optional
        Extra keyword arguments for the layer class.
    """

    def __init__(
        self,
        method: str,
        dim: int,
        n_heads: int = 8,
        dropout: float = 0.0,
        n_layers: int = 1,
        options: dict | None = None,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"conditioning n_layers must be >= 1, got {n_layers}")
        layer_cls = get_conditioning(method)
        self.method = method
        settings = {"dim": dim, "n_heads": n_heads, "dropout": dropout}
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
