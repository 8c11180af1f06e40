"""The evaluate stage's sampler (``modalmerge.stages.evaluate_samples.draw_samples``): the
draws every generative score is computed from, on the device the model is on (a GPU in
the evaluate job of a diffusion experiment with ``gpus``; tests/test_gpu.py checks CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _model_fixtures import IMAGE
from test_models_diffusion import SERIES, diffusion_model, nonzero

from modalmerge.stages.common import SplitArrays
from modalmerge.stages.evaluate_samples import draw_samples, sampling_device


def held_out(n: int = 5) -> SplitArrays:
    rng = np.random.default_rng(0)
    return SplitArrays(
        subjects=[f"sub-{i // 2}" for i in range(n)],
        window_start=np.arange(n, dtype=np.int64) % 2 * 3,
        condition=rng.standard_normal((n, *IMAGE)).astype(np.float32),
        target=rng.standard_normal((n, *SERIES)).astype(np.float32),
    )


def test_samples_of_every_window_come_back_as_arrays_fixed_by_the_seed():
    model = nonzero(diffusion_model()).eval()
    split = held_out()
    samples, attention = draw_samples(model, split, n_samples=3, seed=4, batch_size=2)
    assert samples.shape == (5, 3, *SERIES) and samples.dtype == np.float32
    assert np.isfinite(samples).all()
    assert attention is not None and np.isfinite(attention).all()
    again, _ = draw_samples(model, split, n_samples=3, seed=4, batch_size=2)
    np.testing.assert_array_equal(samples, again)  # a rerun of evaluate gives the same draws
    other, _ = draw_samples(model, split, n_samples=3, seed=5, batch_size=2)
    assert not np.allclose(samples, other)
    assert samples.std(axis=1).mean() > 0  # the samples of a window differ


def test_the_sampling_device_is_the_cpu_without_a_gpu_or_as_the_environment_says(monkeypatch):
    monkeypatch.delenv("MODALMERGE_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert sampling_device().type == expected
    monkeypatch.setenv("MODALMERGE_DEVICE", "cpu")
    assert sampling_device() == torch.device("cpu")


def test_an_empty_split_is_refused_not_sampled():
    model = nonzero(diffusion_model()).eval()
    empty = SplitArrays(subjects=[], condition=np.zeros((0, *IMAGE), np.float32))
    with pytest.raises(ValueError, match="no windows"):
        draw_samples(model, empty, n_samples=2, seed=0)
