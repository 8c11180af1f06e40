"""Graph encoder: node tokens mixed by self-attention biased by the edge weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modalmerge.models.graph import graph_sizes, split_graph
from modalmerge.models.layers import Encoder, FeedForward, TokenProvenance, sample_shape
from modalmerge.models.registry import register_encoder


class EdgeBiasedAttention(nn.Module):
    """Dense multi-head self-attention over nodes with an additive edge-weight bias per head.

    ``scores_h(i, j) = q_i . k_j / sqrt(d) + a_h * A_ij``: head ``h`` learns how
    much an edge's weight draws node ``i`` to node ``j`` (``a_h`` may be negative:
    a head can prefer unconnected nodes; a constant per head would cancel in the
    softmax, so there is none). ``edge_bias=False`` drops the bias: the
    plain dense-attention twin (``benchmarks/bench_graph.py``). The math runs in
    ``scaled_dot_product_attention`` with the bias as its float mask.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0, edge_bias: bool = True):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} must be a multiple of n_heads {n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.edge_scale = nn.Parameter(torch.ones(n_heads)) if edge_bias else None

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """``x`` (B, N, dim), ``adjacency`` (B, N, N) -> (B, N, dim)."""
        b, n, dim = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, dim // self.n_heads).unbind(2)
        bias = None
        if self.edge_scale is not None:
            bias = (adjacency.unsqueeze(1) * self.edge_scale.view(1, -1, 1, 1)).to(q.dtype)
        h = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=bias,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(h.transpose(1, 2).reshape(b, n, dim))


class GraphBlock(nn.Module):
    """Pre-norm transformer block whose attention is :class:`EdgeBiasedAttention`."""

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0, edge_bias: bool = True):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = EdgeBiasedAttention(dim, n_heads, dropout, edge_bias)
        self.feed_forward = FeedForward(dim, dropout=dropout)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), adjacency)
        return x + self.feed_forward(self.norm2(x))


@register_encoder("graph", "graph_transformer")
class GraphTransformerEncoder(Encoder):
    """One token per node (region): features, identity and connectivity profile, then attention.

    A node's token is ``W_f features_i + e_i + W_a A_i`` (its features, a learned
    embedding of the node's identity, and a linear map of its adjacency row, its
    connectivity profile), refined by ``n_layers`` blocks of self-attention
    biased by the edge weights. Graphs of one model share their node set (an
    atlas), so a node's identity is its index.

    Parameters
    ----------
    input_shape : tuple of int
        ``(N, F + N)``, see :mod:`modalmerge.models.graph`.
    dim, n_heads, dropout
        Token size, attention heads, dropout.
    n_layers : int
        Attention blocks.
    edge_bias : bool
        Bias attention by edge weight (False: plain dense attention, the control).
    profile : bool
        Add the adjacency row as a node feature (``W_a A_i``).
    labels : list of str, optional
        Region names, reported in the provenance.
    """

    def __init__(
        self,
        input_shape,
        dim: int,
        n_heads: int = 4,
        dropout: float = 0.0,
        n_layers: int = 2,
        edge_bias: bool = True,
        profile: bool = True,
        labels: list[str] | None = None,
    ):
        super().__init__()
        self.n_nodes, self.n_features = graph_sizes(sample_shape(input_shape, 2, "graph"))
        if labels is not None and len(labels) != self.n_nodes:
            raise ValueError(f"{len(labels)} labels for {self.n_nodes} graph nodes")
        self.labels = None if labels is None else tuple(str(x) for x in labels)
        self.features = nn.Linear(self.n_features, dim) if self.n_features else None
        self.identity = nn.Parameter(torch.randn(self.n_nodes, dim) * 0.02)
        self.profile = nn.Linear(self.n_nodes, dim) if profile else None
        self.blocks = nn.ModuleList(
            GraphBlock(dim, n_heads, dropout, edge_bias) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Graphs (B, N, F + N) -> node tokens (B, N, dim)."""
        features, adjacency = split_graph(x)
        tokens = self.identity.unsqueeze(0).expand(x.shape[0], -1, -1)
        if self.features is not None:
            tokens = tokens + self.features(features)
        if self.profile is not None:
            tokens = tokens + self.profile(adjacency)
        for block in self.blocks:
            tokens = block(tokens, adjacency)
        return self.norm(tokens)

    def token_provenance(self, input_shape=None) -> TokenProvenance:
        """``roi`` provenance: token i is node (region) i."""
        width = self.n_features + self.n_nodes
        return TokenProvenance(
            "roi", self.n_nodes, labels=self.labels, input_shape=(self.n_nodes, width)
        )
