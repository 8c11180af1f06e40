"""Tiny model shapes, batches and checks shared by the model tests (no tests here: importing
a test module from another would register its test encoders twice)."""

from __future__ import annotations

import torch

from modalmerge.models import MultiModalModel

MODALITIES = ["image", "time_series", "text", "tabular", "volume_series"]
B, DIM, HEADS = 2, 16, 2
IMAGE = (1, 8, 8, 8)
SERIES = (6, 3)
VOLUMES = (3, 8, 8, 8)  # (T, D, H, W): 3 volumes of 2 x 2 x 2 patches of 4^3
VOCAB, MAX_LEN = 12, 6
N_NUM, CARDS = 2, [3, 2]
TINY_ENCODERS = {
    "image": "cnn",
    "time_series": "transformer",
    "text": "gru",
    "tabular": "mlp",
    "volume_series": "spatiotemporal",
}
TINY_OPTIONS = {
    "image": {"n_blocks": 2},
    "time_series": {"n_layers": 1},
    "text": {},
    "tabular": {},
    "volume_series": {"n_layers": 1},
}
SHAPES = {"image": IMAGE, "time_series": SERIES, "volume_series": VOLUMES}


def tiny_model(
    condition: str, target: str, method: str = "cross_attention", **kw
) -> MultiModalModel:
    args = dict(
        condition_type=condition,
        target_type=target,
        condition_encoder=TINY_ENCODERS[condition],
        embedding_dim=DIM,
        num_attention_heads=HEADS,
        conditioning=method,
        condition_shape=SHAPES.get(condition),
        target_shape=SHAPES.get(target),
        vocab_size=VOCAB,
        max_length=MAX_LEN,
        n_numeric=N_NUM,
        categorical_cardinalities=CARDS,
        dropout=0.0,
        encoder_options=TINY_OPTIONS[condition],
        decoder_options={"n_layers": 1} if target in ("time_series", "text") else {},
    )
    args.update(kw)
    return MultiModalModel(**args)


def batch(modality: str, shape=None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if modality == "image":
        return torch.randn(B, *(shape or IMAGE), generator=g)
    if modality == "time_series":
        return torch.randn(B, *(shape or SERIES), generator=g)
    if modality == "volume_series":
        return torch.randn(B, *(shape or VOLUMES), generator=g)
    if modality == "text":
        ids = torch.randint(4, VOCAB, (B, MAX_LEN), generator=g)
        ids[:, 0], ids[:, 3], ids[:, 4:] = 1, 2, 0  # bos w w eos pad pad
        return ids
    numeric = torch.randn(B, N_NUM, generator=g)
    codes = torch.stack([torch.randint(0, c, (B,), generator=g) for c in CARDS], 1).float()
    return torch.cat([numeric, codes], 1)


def check_prediction(prediction, target: str) -> None:
    if target == "image":
        assert prediction.shape == (B, *IMAGE)
    elif target == "time_series":
        assert prediction.shape == (B, *SERIES)
    elif target == "volume_series":
        assert prediction.shape == (B, *VOLUMES)
    elif target == "text":
        assert prediction.shape == (B, MAX_LEN, VOCAB)
    else:
        assert prediction["numeric"].shape == (B, N_NUM)
        assert [tuple(c.shape) for c in prediction["categorical"]] == [(B, c) for c in CARDS]


def scalar_loss(prediction) -> torch.Tensor:
    if isinstance(prediction, dict):
        return prediction["numeric"].square().mean() + sum(
            c.square().mean() for c in prediction["categorical"]
        )
    return prediction.square().mean()
