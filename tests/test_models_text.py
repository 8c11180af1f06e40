"""Text modality: the Tokenizer, and text targets that generate vocabulary ids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modalmerge.models import MultiModalModel, Tokenizer
from modalmerge.models.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID

torch.set_num_threads(1)

CORPUS = [
    "Right-handed adult, no history of stroke.",
    "Adult with mild cognitive impairment; right-handed.",
    "Healthy adult.",
]


def test_tokenizer_lowercases_and_splits_words_and_punctuation():
    tok = Tokenizer.fit(CORPUS)
    ids = tok.encode("Healthy ADULT.", max_length=8)
    assert ids[0] == BOS_ID and ids[4] == EOS_ID and ids[5:] == [PAD_ID] * 3
    assert [tok.itos[i] for i in ids[1:4]] == ["healthy", "adult", "."]
    assert tok.decode(ids) == "healthy adult."


def test_tokenizer_round_trips_known_text_and_marks_unknown_words():
    tok = Tokenizer.fit(CORPUS)
    assert (
        tok.decode(tok.encode("adult, right-handed; no stroke.", 16))
        == "adult, right - handed; no stroke."
    )
    ids = tok.encode("adult with aphasia", 8)
    assert ids[3] == UNK_ID and tok.decode(ids) == "adult with <unk>"


def test_tokenizer_vocabulary_respects_min_freq_and_max_size():
    full = Tokenizer.fit(CORPUS)
    frequent = Tokenizer.fit(CORPUS, min_freq=2)
    assert set(frequent.itos[4:]) == {"adult", ".", "right", "-", "handed"}
    assert frequent.itos[4:6] == [".", "adult"]  # most frequent first, ties alphabetical
    small = Tokenizer.fit(CORPUS, max_size=6)
    assert small.vocab_size == 6 and small.itos[4:] == full.itos[4:6]
    with pytest.raises(ValueError, match="max_size must be >= 4"):
        Tokenizer.fit(CORPUS, max_size=2)
    with pytest.raises(ValueError, match="list of documents"):
        Tokenizer.fit("one string")


def test_long_text_is_cut_but_still_ends_with_eos():
    tok = Tokenizer.fit(CORPUS)
    ids = tok.encode(CORPUS[1], max_length=4)
    assert len(ids) == 4 and ids[0] == BOS_ID and ids[-1] == EOS_ID
    with pytest.raises(ValueError, match="max_length must be >= 2"):
        tok.encode("adult", 1)


def test_tokenizer_survives_json():
    tok = Tokenizer.fit(CORPUS)
    again = Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.itos == tok.itos and again.encode(CORPUS[0], 12) == tok.encode(CORPUS[0], 12)
    with pytest.raises(ValueError, match="'words'"):
        Tokenizer.from_dict({"vocab": []})


@pytest.fixture(scope="module", params=["gru", "transformer"])
def text_model(request):
    torch.manual_seed(0)
    tok = Tokenizer.fit(CORPUS)
    model = MultiModalModel(
        "time_series",
        "text",
        target_decoder=request.param,
        embedding_dim=16,
        num_attention_heads=2,
        condition_shape=(5, 3),
        tokenizer=tok,
        max_length=10,
        dropout=0.0,
        decoder_options={"n_layers": 1},
    )
    return model.eval()


def test_generate_emits_bos_vocabulary_ids_eos_then_padding(text_model):
    x = torch.randn(3, 5, 3)
    ids = text_model.generate(x)
    assert ids.dtype == torch.long and ids.shape == (3, 10)
    assert torch.all(ids[:, 0] == BOS_ID)
    assert torch.all((ids >= 0) & (ids < text_model.vocab_size))
    for row in ids.tolist():
        assert EOS_ID in row
        end = row.index(EOS_ID)
        assert BOS_ID not in row[1:end] and PAD_ID not in row[1:end]
        assert all(i == PAD_ID for i in row[end + 1 :])
        assert isinstance(text_model.tokenizer.decode(row), str)


def test_sampling_is_reproducible_with_a_generator(text_model):
    x = torch.randn(2, 5, 3)
    a = text_model.generate(
        x, greedy=False, temperature=2.0, generator=torch.Generator().manual_seed(1)
    )
    b = text_model.generate(
        x, greedy=False, temperature=2.0, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(a, b)
    assert text_model.generate(x, max_length=4).shape == (2, 4)
    with pytest.raises(ValueError, match="max_length must be in"):
        text_model.generate(x, max_length=11)
    with pytest.raises(ValueError, match="temperature"):
        text_model.generate(x, greedy=False, temperature=0.0)


def test_teacher_forcing_logits_at_i_only_see_ids_before_i(text_model):
    tok = text_model.tokenizer
    y = torch.tensor(tok.encode_batch(["healthy adult.", "healthy adult with stroke"], 10))
    x = torch.randn(1, 5, 3).expand(2, -1, -1)
    with torch.no_grad():
        logits = text_model(x, target=y).prediction
    assert logits.shape == (2, 10, tok.vocab_size)
    # both targets agree up to position 2, so the logits for positions 0..3 agree
    torch.testing.assert_close(logits[0, :4], logits[1, :4])
    assert not torch.allclose(logits[0, 4], logits[1, 4])


def test_forward_without_target_scores_the_greedy_text(text_model):
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        logits = text_model(x).prediction
        ids = text_model.generate(x)
        forced = text_model(x, target=ids).prediction
    torch.testing.assert_close(logits, forced)


def test_generate_needs_a_text_target():
    model = MultiModalModel(
        "text", "time_series", vocab_size=20, embedding_dim=8, num_attention_heads=2
    )
    with pytest.raises(ValueError, match="needs a text target"):
        model.generate(torch.ones(1, 32, dtype=torch.long))


def test_token_metrics_do_not_score_the_given_bos():
    from modalmerge.evaluation.modality_metrics import text_metrics, token_accuracy, token_nll

    true = np.array([[BOS_ID, 5, 6, EOS_ID, PAD_ID]])
    pred = np.array([[BOS_ID, 5, 9, 7, 4]])  # bos right for free, 1 of 3 words right
    assert token_accuracy(pred, true, bos_id=BOS_ID) == pytest.approx(1 / 3)
    logits = np.zeros((1, 5, 8))
    logits[0, 0, BOS_ID] = 50.0  # a sure bos does not lower the NLL of the words
    assert token_nll(logits, true, bos_id=BOS_ID) == pytest.approx(np.log(8))
    scores = text_metrics(logits, true, bos_id=BOS_ID)["scores"]
    assert scores["perplexity"] == pytest.approx(8.0)
    assert scores["token_accuracy"] == pytest.approx(0.0)


def test_the_evaluate_stage_scores_text_without_the_given_bos():
    from types import SimpleNamespace

    from modalmerge.evaluation.scoring import BaselineSettings, ScoringInput
    from modalmerge.evaluation.tabular import score_text

    vocab = 8
    true = np.array([[BOS_ID, 5, 6, EOS_ID, PAD_ID], [BOS_ID, 7, EOS_ID, PAD_ID, PAD_ID]])
    logits = np.zeros((2, 5, vocab))
    logits[:, 0, BOS_ID] = 50.0  # right at position 0 only, uniform elsewhere
    test = SimpleNamespace(prediction=logits, target=true, subjects=["a", "b"])
    train = SimpleNamespace(target=true)
    data = ScoringInput(
        condition="image",
        train=train,
        test=test,
        x_train=np.zeros((2, 1)),
        x_test=np.zeros((2, 1)),
        baselines=BaselineSettings(alphas=np.ones(1), n_components=None),
    )
    scores = score_text(data).scores
    model, unigram = scores["model"], scores["group_mean"]
    assert model["token_accuracy"] == pytest.approx(0.0)  # no free bos
    assert model["perplexity"] == pytest.approx(vocab)
    # the unigram baseline puts no mass on bos (or padding): 5, 6, 7 once, eos twice
    counts = np.array([0, 0, 2, 0, 0, 1, 1, 1]) + 1.0
    probs = counts / counts.sum()
    words = [5, 6, EOS_ID, 7, EOS_ID]
    assert unigram["perplexity"] == pytest.approx(np.exp(-np.mean(np.log(probs[words]))))
