"""MultiModalModel: condition encoder -> conditioning method -> target decoder, built from names."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from modalmerge.io import InputError, atomic_path, require_file
from modalmerge.models.conditioning import Conditioning, needs_token_counts
from modalmerge.models.diffusion import Samples
from modalmerge.models.generative import (
    DEFAULT_DENOISERS,
    build_generative,
    draw_samples,
    frozen_parts,
    generative_forward,
    generative_target,
)
from modalmerge.models.layers import TokenProvenance, decode, encode_tokens
from modalmerge.models.registry import build, check_modality, get_decoder, get_encoder
from modalmerge.models.text import Tokenizer
from modalmerge.models.validation import check_batch, check_time_offset

DEFAULT_ENCODERS = {
    "image": "resnet18",
    "time_series": "transformer",
    "text": "gru",
    "tabular": "mlp",
    "graph": "graph_transformer",
    "point_cloud": "point_transformer",
    "volume_series": "spatiotemporal",
}
DEFAULT_DECODERS = {
    "image": "deconv",
    "time_series": "transformer",
    "text": "gru",
    "tabular": "mlp",
    "graph": "bilinear",
    "point_cloud": "values",
    "volume_series": "deconv",
}
#: every modality with an array shape (all but text and tabular, shaped by the tokenizer and
#: the table); its keys are the modalities whose shape build_model reads from the shards
DEFAULT_SHAPES = {
    "image": (1, 64, 64, 64),
    "time_series": (50, 16),
    "graph": (16, 16),
    "point_cloud": (1024, 6),
    "volume_series": (8, 16, 16, 16),
}
SHAPE_LAYOUTS = {
    "image": "(C, H, W) or (C, D, H, W)",
    "time_series": "(T, channels)",
    "graph": "(N, F + N): N nodes, F node features, the N adjacency rows",
    "point_cloud": "(N, 3 + F)",
    "volume_series": "(T, D, H, W)",
}


class ModelOutput(NamedTuple):
    """What :meth:`MultiModalModel.forward` returns.

    Attributes
    ----------
    prediction : Tensor or dict
        Shaped like the target: image ``(B, C, *spatial)``, time series
        ``(B, T, channels)``, text logits ``(B, L, vocab_size)`` (``[:, i]`` predicts
        id ``i``), tabular ``{"numeric": (B, n_num), "categorical": [(B, card_i), ...]}``.
    attention : Tensor or None
        ``(B, heads, n_target, n_condition)`` weights when asked for and the
        method has them (``cross_attention``; ``spatial_mix``, whose weights are
        the same for every input); else None.
    """

    prediction: Any
    attention: torch.Tensor | None


class MultiModalModel(nn.Module):
    """One modality conditions another: encoder tokens shape a decoder's target queries.

    Parameters
    ----------
    condition_type, target_type : {"image", "time_series", "text", "tabular", "graph", "point_cloud",
        "volume_series"}
        Modalities of the condition (input) and the target (output).
    condition_encoder, target_decoder : str, optional
        Registered names (see :func:`modalmerge.models.registry.available`);
        defaults ``resnet18``/``transformer``/``gru``/``mlp`` by modality and
        ``deconv``/``transformer``/``gru``/``mlp``.
    embedding_dim : int
        Token size shared by encoder, conditioning and decoder.
    num_attention_heads : int
        Heads of the cross-attention and of transformer blocks; divides ``embedding_dim``.
    conditioning : str
        ``cross_attention``, ``spatial_mix`` (a learned, input-independent
        weighting of the condition tokens per query: the control for
        cross-attention), ``film``, ``adaln`` (adaptive layer norm; ``adain`` is
        an accepted older name for it) or ``concat`` (or any registered method);
        ``film``, ``adaln`` and ``concat`` pool the condition tokens first.
    conditioning_layers : int
        Conditioning layers stacked.
    condition_shape, target_shape : tuple of int, optional
        Per-sample shapes for image ``(C, D, H, W)`` or ``(C, H, W)`` (default
        ``(1, 64, 64, 64)``), time series ``(T, channels)`` (default ``(50, 16)``),
        graph ``(N, F + N)`` (node features then adjacency rows, default
        ``(16, 16)``: :mod:`modalmerge.models.graph`) and volume series
        ``(T, D, H, W)`` (default ``(8, 16, 16, 16)``).
        Text and tabular shapes follow from the arguments below.
    vocab_size : int, optional
        Text vocabulary size; taken from ``tokenizer`` when that is given.
    tokenizer : Tokenizer or dict, optional
        A :class:`~modalmerge.models.text.Tokenizer` (or its ``to_dict()``), kept in
        the config so a saved model decodes its own ids.
    max_length : int
        Text length in ids (``bos`` and ``eos`` included); text shape is ``(max_length,)``.
    n_numeric : int, optional
        Leading numeric columns of a table.
    categorical_cardinalities : list of int, optional
        Category counts of a table's trailing categorical columns.
    target_n_numeric, target_categorical_cardinalities : optional
        The target table's schema when condition and target are both tables
        with different columns (e.g. one region's structural profile -> its
        connectivity profile); None: the target uses ``n_numeric`` and
        ``categorical_cardinalities`` too.
    dropout : float
        Dropout everywhere.
    encoder_options, decoder_options, conditioning_options : dict, optional
        Extra keyword arguments (JSON-able) for the encoder, decoder and method,
        e.g. ``encoder_options={"tokenize": "roi"}``, ``decoder_options={"query": "roi"}``.
        A name the block does not take is refused (``ValueError`` listing the
        ones it takes); so is one of the model's own settings (``n_heads``,
        ``dropout``, ``vocab_size``, ...), which are set above.
    """

    def __init__(
        self,
        condition_type: str,
        target_type: str,
        condition_encoder: str | None = None,
        target_decoder: str | None = None,
        embedding_dim: int = 256,
        num_attention_heads: int = 8,
        conditioning: str = "cross_attention",
        conditioning_layers: int = 1,
        condition_shape: tuple[int, ...] | None = None,
        target_shape: tuple[int, ...] | None = None,
        vocab_size: int | None = None,
        tokenizer: Tokenizer | dict | None = None,
        max_length: int = 32,
        n_numeric: int | None = None,
        categorical_cardinalities: list[int] | None = None,
        target_n_numeric: int | None = None,
        target_categorical_cardinalities: list[int] | None = None,
        dropout: float = 0.1,
        encoder_options: dict | None = None,
        decoder_options: dict | None = None,
        conditioning_options: dict | None = None,
    ):
        # Over 60 lines: the constructor resolves and builds every part from names, with its checks.
        super().__init__()
        check_modality(condition_type, "condition_type")
        check_modality(target_type, "target_type")
        if embedding_dim < 1 or num_attention_heads < 1 or embedding_dim % num_attention_heads:
            raise ValueError(
                f"embedding_dim ({embedding_dim}) must be a positive multiple of "
                f"num_attention_heads ({num_attention_heads})"
            )
        if isinstance(tokenizer, Tokenizer):
            tokenizer = tokenizer.to_dict()
        self.tokenizer = None if tokenizer is None else Tokenizer.from_dict(tokenizer)
        if self.tokenizer is not None:
            if vocab_size is not None and vocab_size != self.tokenizer.vocab_size:
                raise ValueError(
                    f"vocab_size {vocab_size} differs from the tokenizer's {self.tokenizer.vocab_size}"
                )
            vocab_size = self.tokenizer.vocab_size
        cards = [int(c) for c in (categorical_cardinalities or [])]
        target_cards = (
            None
            if target_categorical_cardinalities is None
            else [int(c) for c in target_categorical_cardinalities]
        )
        if any(c < 1 for c in cards + (target_cards or [])):
            raise ValueError(f"categorical_cardinalities must be >= 1, got {cards}, {target_cards}")
        if (target_n_numeric is not None or target_cards is not None) and target_type != "tabular":
            raise ValueError(
                "target_n_numeric / target_categorical_cardinalities need a tabular target"
            )
        self.condition_type, self.target_type = condition_type, target_type
        self.condition_encoder_name = condition_encoder or DEFAULT_ENCODERS[condition_type]
        self.generative = generative_target(conditioning, target_type)
        defaults = DEFAULT_DENOISERS if self.generative else DEFAULT_DECODERS
        self.target_decoder_name = target_decoder or defaults[target_type]
        self.conditioning_method = conditioning
        self.vocab_size, self.max_length = vocab_size, int(max_length)
        # (n_numeric, cardinalities) of each role's table; the target may have its own
        self._tables = {"condition": (n_numeric, cards), "target": (n_numeric, cards)}
        if target_n_numeric is not None or target_cards is not None:
            self._tables["target"] = (target_n_numeric, target_cards or [])
        self.condition_shape = self._shape("condition", condition_type, condition_shape)
        self.target_shape = self._shape("target", target_type, target_shape)
        self.validate_inputs = True  # set False to skip the per-batch checks (they sync a GPU)
        self._config = {
            "condition_type": condition_type,
            "target_type": target_type,
            "condition_encoder": self.condition_encoder_name,
            "target_decoder": self.target_decoder_name,
            "embedding_dim": int(embedding_dim),
            "num_attention_heads": int(num_attention_heads),
            "conditioning": conditioning,
            "conditioning_layers": int(conditioning_layers),
            "condition_shape": list(self.condition_shape),
            "target_shape": list(self.target_shape),
            "vocab_size": vocab_size,
            "tokenizer": tokenizer,
            "max_length": self.max_length,
            "n_numeric": n_numeric,
            "categorical_cardinalities": cards,
            "target_n_numeric": target_n_numeric,
            "target_categorical_cardinalities": target_cards,
            "dropout": float(dropout),
            "encoder_options": dict(encoder_options or {}),
            "decoder_options": dict(decoder_options or {}),
            "conditioning_options": dict(conditioning_options or {}),
        }
        try:
            json.dumps(self._config)
        except TypeError as err:
            raise ValueError(f"model options must be plain JSON values: {err}") from None

        # the model's own settings reach a block when its __init__ names them;
        # encoder_options / decoder_options are the user's, checked against the block
        common = {"n_heads": num_attention_heads, "dropout": dropout}
        self.encoder = build(
            get_encoder(condition_type, self.condition_encoder_name),
            f"{self.condition_encoder_name} encoder",
            (self.condition_shape, embedding_dim),
            {**common, **self._modality_kwargs(condition_type, "condition")},
            encoder_options,
        )

        def build_decoder():
            return build(
                get_decoder(target_type, self.target_decoder_name),
                f"{self.target_decoder_name} decoder",
                (self.target_shape, embedding_dim),
                {**common, **self._modality_kwargs(target_type, "target")},
                decoder_options,
            )

        if self.generative:  # denoiser, diffusion layer, mean head: models/generative.py
            mean_kwargs = {**common, **self._modality_kwargs(target_type, "target")}
            build_generative(
                self, build_decoder, conditioning_options, conditioning_layers, embedding_dim,
                (DEFAULT_DECODERS[target_type], mean_kwargs),
            )  # fmt: skip
            return
        counts = {}
        decoder = None
        if needs_token_counts(conditioning):
            # a method with a weight per (query, token) pair (spatial_mix) needs both counts;
            # the decoder is then built first (other methods keep the original build order,
            # so their initial weights under a given seed are unchanged)
            decoder = build_decoder()
            counts = {
                "n_queries": decoder.query_provenance().n_tokens,
                "n_condition": self.encoder.token_provenance(self.condition_shape).n_tokens,
            }
        self.conditioner = Conditioning(
            conditioning,
            embedding_dim,
            num_attention_heads,
            dropout,
            conditioning_layers,
            conditioning_options,
            **counts,
        )
        self.decoder = build_decoder() if decoder is None else decoder
        if getattr(self.decoder, "is_denoiser", False):
            raise ValueError(
                f"decoder {self.target_decoder_name!r} is a diffusion denoiser: it needs "
                "conditioning='diffusion'"
            )

    # ----------------------------------------------------------------- shapes
    def _shape(self, role: str, modality: str, shape) -> tuple[int, ...]:
        name = f"{role}_shape"
        if modality == "text":
            if self.vocab_size is None:
                raise ValueError("a text modality needs vocab_size or a tokenizer")
            derived = (self.max_length,)
        elif modality == "tabular":
            n_numeric, cards = self._tables[role]
            if n_numeric is None and not cards:
                raise ValueError(
                    f"a tabular {role} needs n_numeric and/or categorical_cardinalities"
                )
            self._tables[role] = (int(n_numeric or 0), cards)
            derived = (int(n_numeric or 0) + len(cards),)
        else:
            derived = tuple(int(n) for n in (shape or DEFAULT_SHAPES[modality]))
            ndims = {"image": (3, 4), "volume_series": (4,)}.get(modality, (2,))
            if (
                len(derived) not in ndims
                or min(derived) < 1
                or (modality == "graph" and derived[-1] < derived[0])
                or (modality == "point_cloud" and derived[-1] < 3)
            ):
                raise ValueError(
                    f"{name} for {modality} must be {SHAPE_LAYOUTS[modality]}, got {tuple(derived)}"
                )
        if shape is not None and tuple(int(n) for n in shape) != derived:
            raise ValueError(
                f"{name} {tuple(shape)} disagrees with the {modality} settings {derived}"
            )
        return derived

    def _modality_kwargs(self, modality: str, role: str) -> dict:
        if modality == "text":
            return {"vocab_size": self.vocab_size}
        if modality == "tabular":
            n_numeric, cards = self._tables[role]
            return {"n_numeric": n_numeric, "categorical_cardinalities": cards}
        return {}

    @property
    def n_numeric(self) -> int | None:
        """Numeric columns of the model's table (the condition's when both are tables)."""
        return self._tables["condition" if self.condition_type == "tabular" else "target"][0]

    @property
    def categorical_cardinalities(self) -> list[int]:
        """Category counts of the model's table (the condition's when both are tables)."""
        return self._tables["condition" if self.condition_type == "tabular" else "target"][1]

    def table_schema(self, role: str = "target") -> tuple[int, list[int]]:
        """``(n_numeric, categorical_cardinalities)`` of the condition's or target's table."""
        n_numeric, cards = self._tables[role]
        return int(n_numeric or 0), list(cards)

    def _check(self, x, modality: str, shape, role: str) -> None:
        check_batch(
            x,
            modality,
            shape,
            role,
            vocab_size=self.vocab_size,
            n_numeric=self.table_schema(role)[0],
            categorical_cardinalities=tuple(self.table_schema(role)[1]),
            allow_shorter=True,  # text may be shorter than max_length
        )

    # ---------------------------------------------------------------- forward
    def encode(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Condition batch -> tokens ``(B, n_condition, dim)`` and padding mask ``(B, n)`` or None."""
        if self.validate_inputs:
            self._check(condition, self.condition_type, self.condition_shape, "condition")
        return encode_tokens(self.encoder, condition)

    def forward(
        self,
        condition: torch.Tensor,
        target: torch.Tensor | None = None,
        time_offset: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> ModelOutput:
        """Predict the target from the condition.

        Parameters
        ----------
        condition : Tensor
            A batch of the condition modality (see ``docs/architecture.md`` §3).
        target : Tensor, optional
            Text targets: the ids ``(B, L)`` for teacher forcing (without them the
            model decodes greedily and returns the logits of its own ids). Other
            targets ignore it.
        time_offset : Tensor, optional
            ``(B,)`` long window start in samples, for absolute time positions of
            time-series decoders.
        return_attention : bool
            Also return cross-attention weights ``(B, heads, n_target, n_condition)``.

        Returns
        -------
        ModelOutput
            ``(prediction, attention)``.
        """
        tokens, mask = self.encode(condition)
        b = tokens.shape[0]
        if self.validate_inputs:
            check_time_offset(time_offset, b)
        if self.generative:  # with a target the denoising loss terms, else a sample mean
            if target is not None and self.validate_inputs:
                self._check(target, self.target_type, self.target_shape, "target")
            return ModelOutput(*generative_forward(
                self, tokens, mask, target, time_offset, return_attention, condition
            ))  # fmt: skip
        if self.target_type == "text":
            if target is None:
                target = self.decoder.generate(tokens, self.conditioner, mask)
            elif self.validate_inputs:
                self._check(target, "text", self.target_shape, "target")
        elif self.target_type == "point_cloud" and target is not None and self.validate_inputs:
            self._check(target, "point_cloud", self.target_shape, "target")
        queries = self.decoder.queries(b, target=target, time_offset=time_offset)
        conditioned, attention = self.conditioner(queries, tokens, mask, return_attention)
        if self.target_type == "point_cloud":  # a decoder of values at given points reads them
            return ModelOutput(self.decoder(conditioned, target=target), attention)
        return ModelOutput(decode(self.decoder, conditioned, time_offset), attention)

    def train(self, mode: bool = True) -> MultiModalModel:
        """``nn.Module.train``; parts a model does not train (a ``mean_from`` residual
        model's encoder and mean head) stay in eval mode."""
        super().train(mode)
        for part in frozen_parts(self) if self.generative else ():
            part.eval()
        return self

    @torch.no_grad()
    def sample(
        self,
        condition: torch.Tensor,
        n_samples: int = 8,
        steps: int | None = None,
        guidance: float | None = None,
        eta: float = 0.0,
        seed: int | torch.Generator | None = 0,
        time_offset: torch.Tensor | None = None,
        return_attention: bool = False,
        return_trajectory: bool = False,
    ) -> Samples:
        """Diffusion models: draw ``n_samples`` targets per condition (DDIM).

        Parameters
        ----------
        condition : Tensor
            A batch of the condition modality.
        n_samples : int
            Samples per condition.
        steps : int, optional
            DDIM steps (a divisor of the schedule's ``train_steps``); default the
            model's ``sample_steps``.
        guidance : float, optional
            Classifier-free guidance scale (1: conditional, 0: unconditional); default
            the model's.
        eta : float
            0: deterministic DDIM given the initial noise; 1: stochastic (DDPM-like).
        seed : int or torch.Generator or None
            Seed (or generator) of every random draw: equal seeds give equal samples.
            None uses the global random stream.
        time_offset : Tensor, optional
            ``(B,)`` window starts, as in :meth:`forward`.
        return_attention, return_trajectory : bool
            Also return the last step's cross-attention, and the predicted clean target
            after every step.

        Returns
        -------
        Samples
            ``samples`` ``(B, n_samples, *target_shape)``, ``attention``, ``trajectory``.
        """
        if not self.generative:
            raise ValueError(
                f"sample() needs a generative model (conditioning='diffusion'), this one "
                f"uses {self.conditioning_method!r}"
            )
        tokens, mask = self.encode(condition)
        if self.validate_inputs:
            check_time_offset(time_offset, tokens.shape[0])
        return draw_samples(
            self, tokens, mask, n_samples, steps, guidance, eta, seed, time_offset,
            return_attention, return_trajectory, condition,
        )  # fmt: skip

    @torch.no_grad()
    def generate(
        self,
        condition: torch.Tensor,
        max_length: int | None = None,
        greedy: bool = True,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Text targets: generate ids ``(B, max_length)`` long (``bos``, words, ``eos``, padding).

        Decode them with ``model.tokenizer.decode(ids[i])``. ``greedy=False``
        samples from ``softmax(logits / temperature)`` using ``generator``.
        """
        if self.target_type != "text":
            raise ValueError(
                f"generate() needs a text target, this model predicts {self.target_type}"
            )
        tokens, mask = self.encode(condition)
        return self.decoder.generate(
            tokens, self.conditioner, mask, max_length, greedy, temperature, generator
        )

    # ------------------------------------------------------------- provenance
    def condition_provenance(self, input_shape=None) -> TokenProvenance:
        """Provenance of the condition tokens (for ``input_shape``, default the model's)."""
        return self.encoder.token_provenance(
            self.condition_shape if input_shape is None else input_shape
        )

    def target_provenance(self) -> TokenProvenance:
        """What each target query stands for (time point, ROI, image block, column, word)."""
        return self.decoder.query_provenance()

    # ---------------------------------------------------------- serialisation
    @property
    def config(self) -> dict:
        """Constructor arguments as a plain JSON-able dict (a deep copy)."""
        return json.loads(json.dumps(self._config))

    @classmethod
    def from_config(cls, config: dict) -> MultiModalModel:
        """Build an untrained model from :attr:`config`."""
        if not isinstance(config, dict):
            raise ValueError(f"model config must be a dict, got {type(config).__name__}")
        return cls(**config)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``{"config", "state_dict"}`` to ``path`` atomically; return the path.

        Saved through an open file, not a path: ``torch.save`` names the zip archive's
        top folder after a path's file name (here the temporary one, which holds the pid),
        so equal weights give equal bytes only when saved through a file object.
        """
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            torch.save({"config": self.config, "state_dict": state}, fh)
        return Path(path)

    @classmethod
    def load(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> MultiModalModel:
        """Rebuild a model written by :meth:`save` (``torch.load(weights_only=True)``).

        The file is memory-mapped (``mmap=True``): its tensors are read from the
        page cache as ``load_state_dict`` copies them into the model, so loading
        holds the weights once in process memory, not twice.
        """
        path, data = read_model_file(path, map_location)
        return cls.from_file_data(path, data, map_location)

    @classmethod
    def from_file_data(
        cls, path: Path, data, map_location: str | torch.device = "cpu"
    ) -> MultiModalModel:
        """The model of ``data``, what :func:`read_model_file` read from ``path`` (named in
        the errors): ``{"config", "state_dict"}``; an ensemble's file is refused."""
        if isinstance(data, dict) and "members" in data:
            raise InputError(
                path,
                f"holds an ensemble of {len(data['members'])} models (train.ensemble): load it "
                "with modalmerge.models.load_model",
            )
        if not isinstance(data, dict) or "config" not in data or "state_dict" not in data:
            raise InputError(path, "model file must hold {'config', 'state_dict'}")
        model = cls.from_config(data["config"])
        model.load_state_dict(data["state_dict"])
        return model.to(map_location)

    def n_parameters(self) -> int:
        """Number of trainable parameters (each shared tensor counted once)."""
        seen, total = set(), 0
        for p in self.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        return total

    def extra_repr(self) -> str:
        return (
            f"{self.condition_type}[{self.condition_encoder_name}] -> {self.conditioning_method} -> "
            f"{self.target_type}[{self.target_decoder_name}]"
        )


def read_model_file(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """``(path, contents)`` of a saved model or ensemble file (``torch.load`` with
    ``weights_only=True``, memory-mapped: tensors are read from the page cache as they are
    copied into a model, so loading holds the weights once in process memory)."""
    path = require_file(path, "model file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file
        raise InputError(path, f"not a readable model file ({err})") from None
    return path, data
