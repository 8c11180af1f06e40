"""The SC | true FC | predicted FC figure of one held-out subject."""

from __future__ import annotations

import numpy as np
import pytest

from modalmerge.viz.connectome import plot_sc_fc_prediction


def _sym(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).random((n, n))
    return (a + a.T) / 2


def test_three_matrices_an_edge_scatter_and_glass_brains_at_the_centroids(tmp_path):
    n = 6
    coords = np.random.default_rng(0).uniform(-60, 60, (n, 3))
    names = [f"r{i}" for i in range(n)]
    fig = plot_sc_fc_prediction(_sym(n, 0), _sym(n, 1), _sym(n, 2), names, coords)
    titles = [ax.get_title() for ax in fig.axes]
    assert {"structural connectome", "true FC", "predicted FC"} <= set(titles)
    true, pred = _sym(n, 1), _sym(n, 2)
    i, j = np.triu_indices(n, 1)
    r = np.corrcoef(true[i, j], pred[i, j])[0, 1]
    assert f"edges: r = {r:.2f}" in titles
    plot_sc_fc_prediction(_sym(n, 0), true, pred, names, coords, output=tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000
    without = plot_sc_fc_prediction(_sym(n, 0), true, pred)
    assert len(without.axes) < len(fig.axes)  # no glass-brain row without coordinates
    with pytest.raises(ValueError, match=r"must all be \(R, R\)"):
        plot_sc_fc_prediction(_sym(n, 0), true, _sym(n + 1, 3))
