"""A small word-level tokenizer for the text modality (no downloads, JSON-serialisable).

Text is lowercased and split into words and punctuation marks. Ids 0-3 are
reserved: 0 padding, 1 beginning of sequence, 2 end of sequence, 3 unknown word.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
_WORD = re.compile(r"\w+|[^\w\s]")
_NO_SPACE_BEFORE = set(".,;:!?)]}%'")


def split_words(text: str) -> list[str]:
    """Lowercase ``text`` and split it into words and single punctuation marks."""
    return _WORD.findall(text.lower())


class Tokenizer:
    """Word-level vocabulary: ``fit`` on a corpus, ``encode`` to fixed-length ids, ``decode``.

    Parameters
    ----------
    words : iterable of str, optional
        Vocabulary words in id order, after the four special tokens.
    """

    def __init__(self, words: Iterable[str] = ()):
        self.itos: list[str] = list(SPECIAL_TOKENS) + [w for w in words]
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("tokenizer vocabulary has duplicate words")

    @classmethod
    def fit(cls, corpus: list[str], min_freq: int = 1, max_size: int | None = None) -> Tokenizer:
        """Build a vocabulary from ``corpus``.

        Parameters
        ----------
        corpus : list of str
            Documents.
        min_freq : int
            Words seen fewer times become ``<unk>``.
        max_size : int, optional
            Largest vocabulary size, the four special tokens included; the most
            frequent words are kept (ties broken alphabetically).
        """
        if isinstance(corpus, str):
            raise ValueError("corpus must be a list of documents, got a single string")
        if max_size is not None and max_size < len(SPECIAL_TOKENS):
            raise ValueError(f"max_size must be >= {len(SPECIAL_TOKENS)}, got {max_size}")
        counts = Counter(w for doc in corpus for w in split_words(doc))
        words = sorted(
            (w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w)
        )
        if max_size is not None:
            words = words[: max_size - len(SPECIAL_TOKENS)]
        return cls(words)

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return len(self.itos)

    def encode(self, text: str, max_length: int) -> list[int]:
        """Ids ``[bos, w1, ..., eos, 0, ...]`` of length exactly ``max_length``.

        Text too long for ``max_length`` is cut, keeping ``eos`` last.
        """
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (bos and eos), got {max_length}")
        ids = [self.stoi.get(w, UNK_ID) for w in split_words(text)][: max_length - 2]
        ids = [BOS_ID, *ids, EOS_ID]
        return ids + [PAD_ID] * (max_length - len(ids))

    def encode_batch(self, texts: list[str], max_length: int) -> list[list[int]]:
        """``encode`` each text; ``torch.tensor(result)`` gives a long ``(B, max_length)``."""
        return [self.encode(t, max_length) for t in texts]

    def decode(self, ids) -> str:
        """Text from ids (list, array or 1-D tensor): stops at ``eos``, skips ``pad``/``bos``."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        words: list[str] = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID):
                continue
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} is outside the vocabulary of {self.vocab_size} ids")
            words.append(self.itos[i])
        text = ""
        for w in words:
            text += w if (not text or w in _NO_SPACE_BEFORE) else " " + w
        return text

    def to_dict(self) -> dict:
        """Plain JSON-able form: ``{"words": [...]}`` (words after the special tokens)."""
        return {"words": self.itos[len(SPECIAL_TOKENS) :]}

    @classmethod
    def from_dict(cls, data: dict) -> Tokenizer:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or "words" not in data:
            raise ValueError(f"tokenizer dict must hold a 'words' list, got {type(data).__name__}")
        return cls(data["words"])

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"
