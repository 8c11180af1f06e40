"""The graph packing shared by the graph encoder, decoder, loss and checks.

A graph sample is ONE tensor ``(N, F + N)``: for each of the ``N`` nodes (atlas
regions) its ``F`` node features followed by its row of the weighted adjacency
(``x[:, :F]`` features, ``x[:, F:]`` the ``N x N`` symmetric adjacency). So a
graph travels through shards, ``ShardDataset``, collate, the Trainer and
``MultiModalModel``'s shape checks like any single-tensor modality; ``F`` follows
from the shape (``F = width - N``) and may be 0 (an adjacency alone, e.g. FC).

The tangent-space maps treat an adjacency as a symmetric positive-definite
matrix (an FC correlation matrix): ``log_map(C, R) = logm(R^-1/2 C R^-1/2)`` and
``exp_map(T, R) = R^1/2 expm(T) R^1/2`` with the reference ``R`` (the log-Euclidean
mean of training matrices, :func:`log_euclidean_mean`), the whitened tangent space
of Varoquaux et al. 2010 that ``nilearn.connectome.ConnectivityMeasure(kind="tangent")``
uses with its geometric mean. Written here on ``torch.linalg.eigh`` / ``matrix_exp``
because nilearn works from time series in numpy and the decoder needs the exp map
inside autograd.
"""

from __future__ import annotations

import torch


def graph_sizes(shape) -> tuple[int, int]:
    """``(n_nodes, n_features)`` of a per-sample graph shape ``(N, F + N)``."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2 or shape[0] < 1 or shape[1] < shape[0]:
        raise ValueError(
            f"a graph sample must have shape (N, F + N): N nodes, F >= 0 node features, "
            f"then the N x N adjacency rows; got {shape}"
        )
    return shape[0], shape[1] - shape[0]


def split_graph(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, N, F + N)`` -> node features ``(B, N, F)`` and adjacency ``(B, N, N)``."""
    n = x.shape[-2]
    return x[..., : x.shape[-1] - n], x[..., x.shape[-1] - n :]


def pack_graph(features: torch.Tensor | None, adjacency: torch.Tensor) -> torch.Tensor:
    """Node features ``(..., N, F)`` (or None) and adjacency ``(..., N, N)`` -> ``(..., N, F + N)``."""
    if features is None or features.shape[-1] == 0:
        return adjacency
    return torch.cat([features, adjacency], dim=-1)


def upper_triangle(adjacency: torch.Tensor) -> torch.Tensor:
    """``(..., N, N)`` -> the ``N (N - 1) / 2`` edges above the diagonal, ``(..., E)``."""
    n = adjacency.shape[-1]
    i, j = torch.triu_indices(n, n, offset=1, device=adjacency.device)
    return adjacency[..., i, j]


def _eig_map(matrices: torch.Tensor, fn) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrices)
    return (vectors * fn(values).unsqueeze(-2)) @ vectors.transpose(-1, -2)


def log_euclidean_mean(matrices: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """``expm(mean_i logm(C_i))`` of SPD matrices ``(S, N, N)`` (eigenvalues floored)."""
    logs = _eig_map(matrices.double(), lambda v: v.clamp_min(floor).log())
    return _eig_map(logs.mean(0), torch.exp).to(matrices.dtype)


def log_map(matrices: torch.Tensor, reference: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Whitened tangent vectors ``logm(R^-1/2 C R^-1/2)`` of SPD ``C`` ``(..., N, N)``."""
    inv_sqrt = _eig_map(reference.double(), lambda v: v.clamp_min(floor).rsqrt())
    whitened = inv_sqrt @ matrices.double() @ inv_sqrt
    return _eig_map(whitened, lambda v: v.clamp_min(floor).log()).to(matrices.dtype)


def exp_map(tangent: torch.Tensor, reference_sqrt: torch.Tensor) -> torch.Tensor:
    """``R^1/2 expm(T) R^1/2`` (differentiable); ``reference_sqrt`` is ``R^1/2``."""
    return reference_sqrt @ torch.linalg.matrix_exp(tangent) @ reference_sqrt


def matrix_sqrt(reference: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """``R^1/2`` of an SPD matrix (eigenvalues floored)."""
    return _eig_map(reference.double(), lambda v: v.clamp_min(floor).sqrt()).to(reference.dtype)
