"""Autoregressive text decoder: teacher forcing in training, step-by-step generation after."""

from __future__ import annotations

import torch
from torch import nn

from modalmerge.models.layers import Decoder, SequenceMixer, TokenProvenance, sample_shape
from modalmerge.models.registry import register_decoder
from modalmerge.models.text import BOS_ID, EOS_ID, PAD_ID


class TextDecoder(Decoder):
    """A causal language model whose position queries are conditioned before decoding.

    Query ``i`` is the embedding of the previous target id (``bos`` for ``i = 0``)
    plus a learned position, so ``logits[:, i]`` predicts ``target[:, i]``. A
    target starts with ``bos``, which the decoder is given, not asked for
    (:meth:`generate` writes it): train and score on positions ``1..`` only, as
    :class:`~modalmerge.training.losses.TextLoss` does (padding and ``bos`` are
    not scored).

    Parameters
    ----------
    output_shape : tuple of int
        ``(max_length,)``.
    dim : int
        Query size.
    vocab_size : int
        Number of ids; logits are ``(B, L, vocab_size)``.
    mixer : {"gru", "transformer"}
        Causal sequence model (a one-way GRU, or a transformer with a causal mask).
    """

    fixed_options = ("mixer",)  # the registered subclasses choose it

    def __init__(
        self,
        output_shape,
        dim: int,
        vocab_size: int,
        mixer: str = "gru",
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        (self.max_length,) = sample_shape(output_shape, 1, "text")
        self.n_queries = self.max_length
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.position = nn.Parameter(torch.randn(self.max_length, dim) * 0.02)
        self.mixer = SequenceMixer(mixer, dim, n_heads, n_layers, dropout, causal=True)
        self.norm = nn.LayerNorm(dim)
        self.to_logits = nn.Linear(dim, vocab_size)

    def queries(self, batch_size: int, target=None, time_offset=None) -> torch.Tensor:
        """Teacher-forcing queries (B, L, dim) from target ids (B, L): shifted right by ``bos``."""
        if target is None:
            raise ValueError("a text decoder needs target ids (B, L) for teacher forcing")
        bos = torch.full_like(target[:, :1], BOS_ID)
        inputs = torch.cat([bos, target[:, :-1]], dim=1)
        return self.embed(inputs) + self.position[: inputs.shape[1]]

    def forward(self, conditioned: torch.Tensor, target=None) -> torch.Tensor:
        """Conditioned queries (B, L, dim) -> next-id logits (B, L, vocab_size)."""
        return self.to_logits(self.norm(self.mixer(conditioned)))

    @torch.no_grad()
    def generate(
        self,
        condition: torch.Tensor,
        conditioning: nn.Module,
        condition_mask: torch.Tensor | None = None,
        max_length: int | None = None,
        greedy: bool = True,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Generate ids ``(B, max_length)`` long: ``bos``, words, ``eos``, then padding.

        Parameters
        ----------
        condition : Tensor
            Condition tokens (B, N, dim) from the condition encoder.
        conditioning : nn.Module
            The model's conditioning stack, applied to the queries at each step.
        condition_mask : Tensor, optional
            (B, N) True for real condition tokens.
        max_length : int, optional
            At most the decoder's ``max_length`` (its default).
        greedy : bool
            Take the most likely id; otherwise sample from ``softmax(logits / temperature)``.
        generator : torch.Generator, optional
            Source of randomness for sampling (reproducible generation).
        """
        length = self.max_length if max_length is None else int(max_length)
        if not 2 <= length <= self.max_length:
            raise ValueError(f"max_length must be in [2, {self.max_length}], got {max_length}")
        if not greedy and temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        b = condition.shape[0]
        ids = torch.full((b, length), PAD_ID, dtype=torch.long, device=condition.device)
        ids[:, 0] = BOS_ID
        done = torch.zeros(b, dtype=torch.bool, device=condition.device)
        for i in range(1, length):
            queries = self.queries(b, ids[:, : i + 1])  # input i is ids[:, i - 1]
            conditioned, _ = conditioning(queries, condition, condition_mask)
            logits = self(conditioned)[:, i].float()  # (B, V)
            logits[:, [PAD_ID, BOS_ID]] = float("-inf")
            if i == length - 1:  # the last slot can only close the sequence
                logits[
                    :, torch.arange(self.vocab_size, device=logits.device) != EOS_ID
                ] = -torch.inf
            if greedy:
                nxt = logits.argmax(-1)
            else:
                probs = (logits / temperature).softmax(-1)
                device = probs.device if generator is None else generator.device
                nxt = torch.multinomial(probs.to(device), 1, generator=generator).squeeze(1)
                nxt = nxt.to(ids.device)
            ids[:, i] = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
            done |= nxt == EOS_ID
            if bool(done.all()):
                break
        return ids

    def query_provenance(self) -> TokenProvenance:
        """``word`` provenance: query i produces target position i."""
        return TokenProvenance("word", self.n_queries, input_shape=(self.max_length,))


@register_decoder("text", "gru")
class GRUTextDecoder(TextDecoder):
    """One-way GRU language-model decoder (see :class:`TextDecoder`)."""

    def __init__(self, output_shape, dim: int, vocab_size: int, **options):
        super().__init__(output_shape, dim, vocab_size, mixer="gru", **options)


@register_decoder("text", "transformer")
class TransformerTextDecoder(TextDecoder):
    """Causal-transformer language-model decoder (see :class:`TextDecoder`)."""

    def __init__(self, output_shape, dim: int, vocab_size: int, **options):
        super().__init__(output_shape, dim, vocab_size, mixer="transformer", **options)
