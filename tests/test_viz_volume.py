"""Space-time attention drawn back onto the brain (modalmerge.viz.volume_attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalmerge.models.encoders.volume_series import SpatioTemporalEncoder
from modalmerge.viz.volume_attention import plot_space_time_attention, space_time_maps


def test_a_token_s_weight_lands_on_its_own_patch_and_volumes_only():
    encoder = SpatioTemporalEncoder((5, 9, 8, 7), 8, patch=4, time_patch=2, n_layers=0)
    prov = encoder.token_provenance()
    weights = np.zeros(prov.n_tokens)
    cell = (1, 2, 0, 1)  # tubelet 1 (volumes 2-3), patch (2, 0, 1)
    weights[np.ravel_multi_index(cell, prov.grid_shape)] = 1.0
    maps = space_time_maps(weights, prov)
    assert maps.shape == (5, 9, 8, 7)
    hot = np.argwhere(maps > 0)
    assert set(hot[:, 0]) == {2, 3}
    assert set(hot[:, 1]) == {8}  # patch 2 of the D axis: voxels 8-11, cropped to 8
    assert set(hot[:, 2]) == {0, 1, 2, 3} and set(hot[:, 3]) == {4, 5, 6}
    assert maps.sum() == 2 * 1 * 4 * 3


def test_the_figure_is_written_and_bad_inputs_are_refused(tmp_path):
    encoder = SpatioTemporalEncoder((4, 8, 8, 8), 8, patch=4, n_layers=0)
    prov = encoder.token_provenance()
    weights = torch.softmax(torch.randn(prov.n_tokens), 0)
    window = np.random.default_rng(0).normal(size=(4, 8, 8, 8))
    path = plot_space_time_attention(weights, prov, window, times=[0, 3], path=tmp_path / "a.png")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="outside the window"):
        plot_space_time_attention(weights, prov, window, times=[4])
    with pytest.raises(ValueError, match="weights for"):
        space_time_maps(weights[:-1], prov)
