"""volume_series decoders reading the window's start (``window_start``): the deterministic
``deconv`` decoder and the MONAI U-Net denoiser; off by default (outputs then ignore it)."""

from __future__ import annotations

import pytest
import torch

from modalmerge.models import MultiModalModel

TARGET, IMAGE = (4, 4, 4, 2), (1, 8, 8, 4)


def _model(decoder, method, window_start):
    torch.manual_seed(0)
    options = {"window_start": window_start}
    if decoder == "diffusion_unet":
        options |= {"channels": [8], "norm_num_groups": 4}
    return MultiModalModel(
        condition_type="image", target_type="volume_series", condition_encoder="cnn",
        embedding_dim=8, num_attention_heads=2, conditioning=method,
        condition_shape=IMAGE, target_shape=TARGET, target_decoder=decoder,
        encoder_options={"channels": 4}, decoder_options=options,
        conditioning_options={"train_steps": 10, "sample_steps": 2} if method == "diffusion" else {},
    ).eval()  # fmt: skip


@pytest.mark.parametrize(
    "decoder,method", [("deconv", "cross_attention"), ("diffusion_unet", "diffusion")]
)
@pytest.mark.parametrize("window_start", [False, True])
def test_the_prediction_depends_on_the_window_start_only_when_asked(decoder, method, window_start):
    model = _model(decoder, method, window_start)
    with torch.no_grad():  # fresh read-outs start at zero (MONAI's U-Net): randomise them
        for p in model.decoder.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(2, *IMAGE, generator=torch.Generator().manual_seed(1))
    y = torch.randn(2, *TARGET, generator=torch.Generator().manual_seed(2))
    outputs = []
    for start in (0, 40):
        offset = torch.full((2,), start)
        with torch.no_grad():
            if method == "diffusion":  # the denoising output, same noise and steps
                out = model(x, target=y, time_offset=offset).prediction.predicted
            else:
                out = model(x, time_offset=offset).prediction
        assert out.shape == (2, *TARGET)
        outputs.append(out)
    assert torch.allclose(outputs[0], outputs[1]) is not window_start


@pytest.mark.parametrize("start_embedding", [False, True])
def test_the_unet_s_timestep_embedding_reads_the_window_start_only_when_asked(start_embedding):
    """start_embedding: the start enters MONAI's class-embedding slot, added to the timestep
    embedding of every residual block; with no attention level at all (so no context token
    is read) the denoising output and the samples still change with the start."""
    torch.manual_seed(0)
    model = MultiModalModel(
        condition_type="image", target_type="volume_series", condition_encoder="cnn",
        embedding_dim=8, num_attention_heads=2, conditioning="diffusion",
        condition_shape=IMAGE, target_shape=TARGET, target_decoder="diffusion_unet",
        encoder_options={"channels": 4},
        decoder_options={"channels": [8], "norm_num_groups": 4, "attention_levels": [False],
                         "start_embedding": start_embedding},
        conditioning_options={"train_steps": 10, "sample_steps": 2},
    ).eval()  # fmt: skip
    with torch.no_grad():  # MONAI zero-initialises its read-out: randomise the U-Net
        for p in model.decoder.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(2, *IMAGE, generator=torch.Generator().manual_seed(1))
    y = torch.randn(2, *TARGET, generator=torch.Generator().manual_seed(2))
    terms, samples = [], []
    for start in (0, 40):
        offset = torch.full((2,), start)
        with torch.no_grad():  # eval: the same validation noise and steps every call
            terms.append(model(x, target=y, time_offset=offset).prediction.predicted)
        drawn = model.sample(x, n_samples=2, seed=3, time_offset=offset).samples
        assert drawn.shape == (2, 2, *TARGET)
        samples.append(drawn)
    assert torch.allclose(terms[0], terms[1]) is not start_embedding
    assert torch.allclose(samples[0], samples[1]) is not start_embedding
    if start_embedding:  # any start (not a table row) has an embedding
        far = model.sample(x, n_samples=2, seed=3, time_offset=torch.full((2,), 10_000)).samples
        assert torch.isfinite(far).all()
