"""Model correctness (issue 19): padding, options, plugins, conditioning at initialisation."""

from __future__ import annotations

import pytest
import torch

from modalmerge.models import MultiModalModel

torch.set_num_threads(1)

VOCAB, MAX_LEN, DIM = 12, 10, 16


def text_ids(pad: int) -> torch.Tensor:
    """Two sentences ``bos w w w eos`` with ``pad`` trailing pads."""
    ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])
    return torch.cat([ids, ids.new_zeros(2, pad)], dim=1)


# ----------------------------------------------------------- padding (item 1)


@pytest.mark.parametrize("encoder", ["gru", "lstm"])
def test_trailing_padding_does_not_change_a_recurrent_text_encoding(encoder):
    torch.manual_seed(0)
    model = MultiModalModel(
        "text",
        "time_series",
        condition_encoder=encoder,
        embedding_dim=DIM,
        num_attention_heads=2,
        vocab_size=VOCAB,
        max_length=MAX_LEN,
        target_shape=(6, 3),
        dropout=0.0,
        encoder_options={"n_layers": 2},
    ).eval()
    short, long = text_ids(0), text_ids(MAX_LEN - 5)
    real = short != 0
    with torch.no_grad():
        tokens_short, tokens_long = model.encoder(short), model.encoder(long)
        torch.testing.assert_close(
            tokens_long[:, :5][real], tokens_short[real], atol=1e-6, rtol=1e-5
        )
        torch.testing.assert_close(
            model(long).prediction, model(short).prediction, atol=1e-6, rtol=1e-5
        )
