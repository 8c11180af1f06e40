"""Losses by target modality, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from modalmerge.training.losses import LOSSES, make_loss, pearson_per_channel


def test_every_contract_modality_has_a_loss():
    assert {"time_series", "image", "text", "tabular"} <= set(LOSSES)


def test_time_series_loss_is_mse_plus_weighted_one_minus_correlation():
    target = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]]])  # (1, T=3, R=2)
    prediction = torch.tensor([[[2.0, 1.0], [4.0, 0.0], [6.0, 0.0]]])
    # ROI 0: prediction = 2 x target -> r = 1; ROI 1: target (0,0,1), prediction (1,0,0)
    # centred: t = (-1/3,-1/3,2/3), p = (2/3,-1/3,-1/3) -> cov = -1/3, norms 2/3 each -> r = -0.5
    mse = ((1 + 4 + 9) + (1 + 0 + 1)) / 6
    expected = mse + 0.5 * (1 - (1.0 + -0.5) / 2)
    loss = make_loss("time_series", correlation_weight=0.5)(prediction, target)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_time_series_correlation_is_per_roi_over_time():
    t = torch.linspace(0, 1, 10)
    target = torch.stack([t, -t], dim=-1)[None]  # (1, 10, 2)
    r = pearson_per_channel(target, target)
    assert torch.allclose(r, torch.ones(1, 2), atol=1e-6)
    assert pearson_per_channel(-target, target).mean().item() == pytest.approx(-1.0, abs=1e-6)


def test_time_series_loss_without_correlation_is_plain_mse():
    a, b = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    loss = make_loss("time_series", correlation_weight=0.0)(a, b)
    assert loss.item() == pytest.approx(torch.mean((a - b) ** 2).item(), rel=1e-6)


def test_constant_series_gives_finite_loss():
    loss = make_loss("time_series")(torch.zeros(1, 4, 2), torch.ones(1, 4, 2))
    assert math.isfinite(loss.item())


@pytest.mark.parametrize("wiggle", [0.0, 1e-7, 1e-5, 1e-3])
def test_constant_or_nearly_constant_prediction_gives_finite_bounded_gradients(wiggle):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(4, 20, 5, generator=g)
    prediction = 0.3 + wiggle * torch.randn(4, 20, 5, generator=g)
    prediction.requires_grad_(True)
    make_loss("time_series", correlation_weight=0.5)(prediction, target).backward()
    assert torch.isfinite(prediction.grad).all()
    assert prediction.grad.abs().max().item() < 1e3


def test_correlation_of_ordinary_series_is_the_textbook_pearson_r():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(3, 30, 4, generator=g, dtype=torch.float64)
    prediction = 0.5 * target + torch.randn(3, 30, 4, generator=g, dtype=torch.float64)
    p = prediction - prediction.mean(1, keepdim=True)
    t = target - target.mean(1, keepdim=True)
    textbook = (p * t).sum(1) / (p.norm(dim=1) * t.norm(dim=1))
    torch.testing.assert_close(
        pearson_per_channel(prediction, target), textbook, atol=1e-5, rtol=1e-5
    )


def test_time_series_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="prediction shape"):
        make_loss("time_series")(torch.zeros(1, 4, 2), torch.zeros(1, 4, 3))


@pytest.mark.parametrize(("kind", "expected"), [("l1", 1.5), ("mse", 2.5)])
def test_image_loss_l1_or_mse(kind, expected):
    prediction = torch.zeros(1, 1, 2, 1, 1)
    target = torch.tensor([1.0, 2.0]).view(1, 1, 2, 1, 1)
    assert make_loss("image", kind=kind)(prediction, target).item() == pytest.approx(expected)


def test_image_loss_rejects_unknown_kind():
    with pytest.raises(ValueError, match="'l1' or 'mse'"):
        make_loss("image", kind="huber")


def test_text_loss_ignores_padding():
    # vocabulary 4; sample: tokens (2, 3, 0=pad); uniform logits except pad position garbage
    logits = torch.zeros(1, 3, 4)
    logits[0, 2] = torch.tensor([100.0, -100.0, -100.0, -100.0])  # pad position: ignored
    target = torch.tensor([[2, 3, 0]])
    loss = make_loss("text")(logits, target)
    assert loss.item() == pytest.approx(math.log(4), rel=1e-6)


def test_text_loss_matches_hand_computed_cross_entropy():
    logits = torch.tensor([[[2.0, 0.0, 0.0]]])  # (1, 1, 3)
    target = torch.tensor([[2]])
    expected = -(0.0 - math.log(math.exp(2) + 2))
    assert make_loss("text", pad_id=-1)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_text_loss_does_not_score_the_given_bos_at_position_0():
    # the decoder is fed bos and the target starts with bos: position 0 is free
    target = torch.tensor([[1, 5, 6, 2, 0], [1, 7, 2, 0, 0]])
    logits = torch.randn(2, 5, 9, generator=torch.Generator().manual_seed(0))
    loss = make_loss("text")(logits, target)
    words = torch.nn.functional.cross_entropy(
        logits[:, 1:].flatten(0, 1), target[:, 1:].flatten(), ignore_index=0
    )
    assert loss.item() == pytest.approx(words.item(), rel=1e-6)
    cheat = logits.clone()
    cheat[:, 0, 1] = 100.0  # a sure bos at position 0 earns nothing
    assert make_loss("text")(cheat, target).item() == pytest.approx(loss.item(), rel=1e-6)
    with pytest.raises(ValueError, match="padding or bos"):
        make_loss("text")(logits[:, :1], target[:, :1])


def test_text_loss_rejects_all_padding_and_bad_shapes():
    with pytest.raises(ValueError, match="padding"):
        make_loss("text")(torch.zeros(1, 2, 4), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, L, V\)"):
        make_loss("text")(torch.zeros(1, 3, 4), torch.ones(1, 2, dtype=torch.long))


def test_tabular_loss_sums_numeric_mse_and_mean_categorical_cross_entropy():
    prediction = {
        "numeric": torch.tensor([[1.0, 2.0]]),
        "categorical": [torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0]])],
    }
    target = torch.tensor([[0.0, 4.0, 1.0, 2.0]])  # numeric (0, 4), codes 1 and 2
    expected = (1 + 4) / 2 + (math.log(2) + math.log(3)) / 2
    assert make_loss("tabular")(prediction, target).item() == pytest.approx(expected, rel=1e-6)


def test_tabular_loss_ignores_missing_codes():
    prediction = {"numeric": torch.zeros(2, 0), "categorical": [torch.tensor([[0.0, 5.0]] * 2)]}
    target = torch.tensor([[1.0], [-1.0]])  # second row missing
    expected = torch.nn.functional.cross_entropy(torch.tensor([[0.0, 5.0]]), torch.tensor([1]))
    assert make_loss("tabular")(prediction, target).item() == pytest.approx(expected.item())


def test_tabular_loss_rejects_wrong_column_count_and_out_of_range_codes():
    prediction = {"numeric": torch.zeros(1, 1), "categorical": [torch.zeros(1, 2)]}
    with pytest.raises(ValueError, match="1 numeric \\+ 1 categorical"):
        make_loss("tabular")(prediction, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="cardinality"):
        make_loss("tabular")(prediction, torch.tensor([[0.0, 5.0]]))


def test_unknown_target_type_or_option_is_a_value_error():
    with pytest.raises(ValueError, match="no loss for target type 'audio'"):
        make_loss("audio")
    with pytest.raises(ValueError, match="bad loss option"):
        make_loss("image", nonsense=1)
