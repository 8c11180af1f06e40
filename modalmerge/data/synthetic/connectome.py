"""Structural connectome of the synthetic cohort and the network model that turns it into FC.

Off by default (``connectome: false``): nothing here runs and no random number is
drawn, so the default cohort is unchanged. On (``connectome: true``):

- **SC.** Each subject's structural connectome follows the exponential distance
  rule (Ercsey-Ravasz et al. 2013): ``W_ij = exp(-d_ij / lambda) * H_ij``, ``d_ij``
  the distance between atlas region centroids, ``H`` a cohort-level log-normal
  edge heterogeneity (its own stream) with homotopic edges doubled. The
  subject's latents that also shape its anatomy modulate it: every edge is
  scaled by ``integrity_i integrity_j`` (the regional cortical thickness, as for
  the coupling of the default cohort), the decay length shrinks with atrophy
  (``lambda exp(-0.3 a)``, ``a`` the relative atrophy: long-range loss), and a
  subject-level log-normal edge noise (SD ``EDGE_NOISE``) makes SCs individual.
  ``SC`` has a zero diagonal and spectral radius 1.
- **FC.** The neural process is a multivariate Ornstein-Uhlenbeck process
  ``dx = A x dt + sqrt(2) dW`` with ``A = -I + g SC``, ``g`` the subject's global
  coupling (``connectome_coupling * exp(0.15 z)``, capped at ``MAX_G``). Its
  stationary covariance ``S`` solves the Lyapunov equation ``A S + S A^T + 2 I = 0``
  (:func:`scipy.linalg.solve_continuous_lyapunov`); the FC truth is ``S`` as a
  correlation matrix. Sampled at the TR it is an exact VAR(1) (:func:`ou_transition`)
  whose step makes an uncoupled region as persistent per TR as the default
  cohort's (``NEURAL_AR``). The BOLD then convolves it with the HRF like the
  default cohort, so the observed FC is the neural FC seen through the HRF,
  finite runs and the BOLD noise: SC -> FC is a planted, known relation.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cholesky, expm, solve_continuous_lyapunov

from modalmerge.data.synthetic.params import STREAM_CONNECTOME, SyntheticParams, rng_for

DECAY_FRACTION = 0.35  # distance decay length lambda, as a fraction of the median distance
COHORT_HETEROGENEITY = 0.5  # SD of the cohort's log-normal edge factors
HOMOTOPIC_GAIN = 2.0  # left-right homologous regions are wired more strongly
EDGE_NOISE = 0.25  # SD of a subject's own log-normal edge factors
ATROPHY_DECAY = 0.3  # decay length shrinks as exp(-ATROPHY_DECAY * relative atrophy)
G_SPREAD = 0.15  # SD of log g across subjects
MAX_G = 0.95  # g < 1 keeps A = -I + g SC stable (SC has spectral radius 1)


def _symmetric_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    upper = np.triu(rng.standard_normal((n, n)), 1)
    return upper + upper.T


def region_distances(centroids: np.ndarray) -> np.ndarray:
    """Euclidean distances (R, R) between region centroids (R, 3)."""
    return np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=-1)


def structural_connectome(
    p: SyntheticParams, centroids: np.ndarray, index: int, integrity: np.ndarray, atrophy: float
) -> tuple[np.ndarray, float]:
    """Subject ``index``'s SC (R, R) and global coupling ``g``.

    ``integrity`` (R,) and ``atrophy`` (relative, ~0-2) are the subject's
    anatomical latents (:func:`modalmerge.data.synthetic.factors.subject_truth`).
    """
    n = len(centroids)
    distance = region_distances(centroids)
    decay = DECAY_FRACTION * np.median(distance[np.triu_indices(n, 1)])
    cohort = rng_for(p, 0, STREAM_CONNECTOME)
    heterogeneity = np.exp(COHORT_HETEROGENEITY * _symmetric_normal(cohort, n))
    homologue = (np.arange(n) + n // 2) % n
    heterogeneity[np.arange(n), homologue] *= HOMOTOPIC_GAIN
    rng = rng_for(p, index, STREAM_CONNECTOME)
    own = np.exp(EDGE_NOISE * _symmetric_normal(rng, n))
    g = float(min(MAX_G, p.connectome_coupling * np.exp(G_SPREAD * rng.standard_normal())))
    wiring = np.exp(-distance / (decay * np.exp(-ATROPHY_DECAY * atrophy)))
    sc = wiring * heterogeneity * own * np.outer(integrity, integrity)
    np.fill_diagonal(sc, 0.0)
    sc /= np.max(np.abs(np.linalg.eigvalsh(sc)))
    return sc, g


def drift_matrix(sc: np.ndarray, g: float) -> np.ndarray:
    """``A = -I + g SC``."""
    return -np.eye(len(sc)) + g * sc


def lyapunov_covariance(sc: np.ndarray, g: float) -> np.ndarray:
    """Stationary covariance ``S`` of ``dx = A x dt + sqrt(2) dW``: ``A S + S A^T = -2 I``."""
    a = drift_matrix(sc, g)
    cov = solve_continuous_lyapunov(a, -2.0 * np.eye(len(sc)))
    return 0.5 * (cov + cov.T)


def correlation(cov: np.ndarray) -> np.ndarray:
    """A covariance matrix (..., R, R) as a correlation matrix (unit diagonal)."""
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    return cov / (sd[..., :, None] * sd[..., None, :])


def lyapunov_fc(sc: np.ndarray, g: float) -> np.ndarray:
    """The model's FC truth: the OU process's stationary correlation matrix."""
    return correlation(lyapunov_covariance(sc, g))


def ou_transition(sc: np.ndarray, g: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """The OU process sampled every ``step``: ``x[t+1] = Phi x[t] + L e[t]``, ``e ~ N(0, I)``.

    ``Phi = expm(A step)`` and ``L L^T = S - Phi S Phi^T`` (exact discretisation:
    the samples have the stationary covariance ``S``).
    """
    cov = lyapunov_covariance(sc, g)
    phi = expm(drift_matrix(sc, g) * step)
    innovation = cov - phi @ cov @ phi.T
    return phi, cholesky(0.5 * (innovation + innovation.T), lower=True)


def simulate_ou(
    sc: np.ndarray, g: float, n_steps: int, step: float, rng: np.random.Generator, burn: int = 50
) -> np.ndarray:
    """``n_steps`` samples (n_steps, R) of the stationary OU process."""
    phi, chol = ou_transition(sc, g, step)
    shocks = rng.standard_normal((n_steps + burn, len(sc))) @ chol.T
    x = np.zeros_like(shocks)
    x[0] = shocks[0]
    for t in range(1, len(x)):
        x[t] = phi @ x[t - 1] + shocks[t]
    return x[burn:]


def connectome_truth(truth) -> dict[str, np.ndarray]:
    """The truth arrays of a subject with a connectome: ``sc``, ``connectome_g``, ``fc_neural``."""
    return {
        "sc": truth.connectome,
        "connectome_g": np.float64(truth.connectome_g),
        "fc_neural": lyapunov_fc(truth.connectome, truth.connectome_g),
    }
