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


def _volume_splits(n_test: int = 20, n_train: int = 6):
    """Held-out and training 4D windows: three windows a subject in order (the sixth
    subject's straddle the sampler's batches of 16), two starts, a brain
    (voxels that vary across the training windows) inside a zero border."""
    from _model_fixtures import VOLUMES

    rng = np.random.default_rng(1)

    def windows(n):
        x = np.zeros((n, *VOLUMES), np.float32)
        x[:, :, 2:6, 2:6, 2:6] = rng.standard_normal((n, VOLUMES[0], 4, 4, 4))
        return x

    def split(n, prefix):
        return SplitArrays(
            subjects=[f"{prefix}-{i // 3}" for i in range(n)],
            window_start=np.arange(n, dtype=np.int64) % 2 * 3,
            condition=rng.standard_normal((n, *IMAGE)).astype(np.float32),
            target=windows(n),
        )

    return split(n_test, "sub"), split(n_train, "train")


def test_4d_samples_scored_as_they_are_drawn_give_the_scores_of_all_samples_at_once():
    """The evaluate stage streams a 4D target's samples subject by subject (memory does not
    grow with the split): same draws, same scores, same kept samples as scoring them all."""
    from modalmerge.evaluation.scoring import Scored
    from modalmerge.evaluation.volume_series import add_volume_sample_scores
    from modalmerge.stages.evaluate_samples import add_samples, stream_volume_samples

    test, train = _volume_splits()
    model = diffusion_model("image", "volume_series").eval()
    with torch.no_grad():  # MONAI's U-Net starts with its output convolution at zero
        for weight in model.decoder.parameters():
            if weight.dim() > 1 and not weight.any():
                weight.normal_(std=0.1)
    samples, attention = draw_samples(model, test, n_samples=3, seed=2)
    test.prediction = samples.mean(axis=1)
    units = sorted(set(test.subjects))

    def scored():
        return Scored(scores={"model": {}}, arrays={}, per_unit={"units": units, "model": {}})

    whole, streamed = scored(), scored()
    add_volume_sample_scores(whole, samples, test, train)
    prediction, streamed_attention, found = stream_volume_samples(model, test, train, 3, 2)
    assert sorted(found.by_unit) == units
    add_samples(streamed, found, "volume_series", test, train, tr=2.0)
    np.testing.assert_array_equal(prediction, test.prediction)
    if attention is not None:
        np.testing.assert_allclose(streamed_attention, attention, rtol=1e-6)
    assert streamed.per_unit == whole.per_unit
    assert streamed.scores == whole.scores and streamed.extra == whole.extra
    np.testing.assert_array_equal(streamed.arrays["samples"], whole.arrays["samples"])
    assert streamed.arrays["samples"].shape[0] == min(4, len(test.subjects))
    with pytest.raises(ValueError, match="2 samples"):
        stream_volume_samples(model, test, train, 1, 2)
