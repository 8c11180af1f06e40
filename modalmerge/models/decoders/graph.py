"""Graph decoder: node queries -> a symmetric connectivity matrix from a bilinear edge head."""

from __future__ import annotations

import torch
from torch import nn

from modalmerge.models.graph import exp_map, graph_sizes, log_euclidean_mean, matrix_sqrt
from modalmerge.models.layers import Decoder, SequenceMixer, TokenProvenance
from modalmerge.models.registry import register_decoder

#: tangent entries are bounded by TANGENT_BOUND / sqrt(N) (a soft tanh bound), so the
#: eigenvalues of T stay below TANGENT_BOUND sqrt(N) and expm(T) finite
TANGENT_BOUND = 2.0


@register_decoder("graph", "bilinear")
class BilinearGraphDecoder(Decoder):
    """One query per node; edges ``E_ij = h_i^T W h_j`` with ``W`` symmetric.

    The conditioned node queries are mixed by ``n_layers`` transformer blocks,
    normalised, and projected to ``rank`` dimensions per side; the edge head is
    ``P diag(s) P^T + b`` (``s`` learned signs/scales, a symmetric ``W`` of rank
    ``rank``), so the matrix is symmetric by construction. Node features, when
    the target has them (``F > 0``), come from a linear head per node. The
    prediction is packed like the target, ``(B, N, F + N)``.

    Parameters
    ----------
    output_shape : tuple of int
        ``(N, F + N)`` (:mod:`modalmerge.models.graph`).
    dim, n_heads, dropout
        Query size, heads of the mixer, dropout.
    n_layers : int
        Transformer blocks over the node queries (0: none).
    rank : int, optional
        Rank of the bilinear form (default ``dim``).
    tangent : bool
        Predict in the whitened tangent space of SPD matrices: the edge head gives a
        symmetric ``T`` and the output is ``R^1/2 expm(T) R^1/2`` (symmetric positive
        definite), with ``R`` the reference set by :meth:`set_tangent_reference`
        (the training matrices' log-Euclidean mean; identity until set; kept in the
        state dict). For FC targets. ``T``'s entries are softly bounded
        (``TANGENT_BOUND / sqrt(N)``), the bilinear scales start at 0 (the first
        prediction is ``R``), and the exp map runs in float64.
    labels : list of str, optional
        Region names, reported in the provenance.
    """

    def __init__(
        self,
        output_shape,
        dim: int,
        n_heads: int = 4,
        dropout: float = 0.0,
        n_layers: int = 1,
        rank: int | None = None,
        tangent: bool = False,
        labels: list[str] | None = None,
    ):
        super().__init__()
        self.n_nodes, self.n_features = graph_sizes(output_shape)
        self.n_queries = self.n_nodes
        if labels is not None and len(labels) != self.n_nodes:
            raise ValueError(f"{len(labels)} labels for {self.n_nodes} graph nodes")
        self.labels = None if labels is None else tuple(str(x) for x in labels)
        rank = int(rank or dim)
        self.query = nn.Parameter(torch.randn(self.n_nodes, dim) * 0.02)
        self.mixer = (
            SequenceMixer("transformer", dim, n_heads, n_layers, dropout) if n_layers else None
        )
        self.norm = nn.LayerNorm(dim)
        self.project = nn.Linear(dim, rank)
        # tangent: start at T = 0, the reference itself (the training mean FC)
        self.scale = nn.Parameter(torch.full((rank,), 0.0 if tangent else rank**-0.5))
        self.edge_bias = nn.Parameter(torch.zeros(()))
        self.feature_head = nn.Linear(dim, self.n_features) if self.n_features else None
        self.tangent = bool(tangent)
        eye = torch.eye(self.n_nodes)
        self.register_buffer("reference", eye.clone())
        self.register_buffer("reference_sqrt", eye.clone())

    @torch.no_grad()
    def set_tangent_reference(self, adjacency: torch.Tensor) -> None:
        """Set ``R`` to the log-Euclidean mean of training adjacencies ``(S, N, N)``."""
        reference = log_euclidean_mean(adjacency.to(self.reference))
        self.reference.copy_(reference)
        self.reference_sqrt.copy_(matrix_sqrt(reference))

    def queries(self, batch_size: int, target=None, time_offset=None) -> torch.Tensor:
        """Node queries (B, N, dim)."""
        return self.query.unsqueeze(0).expand(batch_size, -1, -1)

    def forward(self, conditioned: torch.Tensor) -> torch.Tensor:
        """Conditioned node queries (B, N, dim) -> graphs (B, N, F + N)."""
        h = conditioned if self.mixer is None else self.mixer(conditioned)
        h = self.norm(h)
        p = self.project(h)  # (B, N, rank)
        edges = (p * self.scale) @ p.transpose(1, 2) + self.edge_bias
        edges = 0.5 * (edges + edges.transpose(1, 2))  # exact symmetry in floating point
        if self.tangent:  # entries bounded so expm stays finite; in float64 (small N x N)
            bound = TANGENT_BOUND / self.n_nodes**0.5
            tangent = bound * torch.tanh(edges.double() / bound)
            edges = exp_map(tangent, self.reference_sqrt.double()).to(p.dtype)
            edges = 0.5 * (edges + edges.transpose(1, 2))
        if self.feature_head is None:
            return edges
        return torch.cat([self.feature_head(h), edges], dim=-1)

    def query_provenance(self) -> TokenProvenance:
        """``roi`` provenance: query i is node (region) i."""
        width = self.n_features + self.n_nodes
        return TokenProvenance(
            "roi", self.n_nodes, labels=self.labels, input_shape=(self.n_nodes, width)
        )
