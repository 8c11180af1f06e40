"""The generative (``conditioning='diffusion'``) branch of :class:`~modalmerge.models.model.MultiModalModel`.

A generative model keeps the same three parts as every model (``encoder``,
``conditioner``, ``decoder``, plus the residual variant's ``mean_head``) as attributes of
the :class:`~modalmerge.models.model.MultiModalModel`, so its ``state_dict`` keys, its
initial weights under a seed and its checkpoints are those of a model built before this
module existed. What differs is how they are built and run, and that lives here:

- :func:`generative_target` — whether a method generates, refusing a target no denoiser
  generates;
- :func:`build_generative` — the denoiser decoder, the diffusion conditioning layer and
  the optional mean head, in that order (the order fixes the seeded initial weights);
- :func:`generative_forward` — ``model(condition, target)``: the denoising loss terms;
  ``model(condition)``: the mean of an ensemble of samples;
- :func:`draw_samples` — :meth:`MultiModalModel.sample` from encoded condition tokens;
- :func:`adopt_mean` — a residual model with ``mean_from``: copy a trained deterministic
  ``cross_attention`` model's encoder and decoder in as its frozen encoder and mean head.

The diffusion maths (schedules, DDIM, guidance, the mean head) is in
:mod:`modalmerge.models.diffusion`; this module only wires it into the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from modalmerge.models.diffusion import MeanHead, Samples, check_generative, is_generative
from modalmerge.models.layers import encode_tokens

if TYPE_CHECKING:  # pragma: no cover - typing only (model.py imports this module)
    from modalmerge.models.ensemble import ModelEnsemble
    from modalmerge.models.model import MultiModalModel

__all__ = [
    "DEFAULT_DENOISERS",
    "MeanMember",
    "adopt_mean",
    "build_generative",
    "frozen_parts",
    "draw_samples",
    "generative_forward",
    "generative_target",
    "mean_prediction",
]

#: the denoiser of each target modality that ``conditioning='diffusion'`` can generate
DEFAULT_DENOISERS = {
    "image": "diffusion_unet",
    "time_series": "denoiser",
    "volume_series": "diffusion_unet",  # a window (T, D, H, W): its T volumes are the channels
}


def generative_target(conditioning: str, target_type: str) -> bool:
    """Whether the ``conditioning`` method generates its target (``diffusion``).

    Raises
    ------
    ValueError
        A generative method for a target modality without a denoiser.
    """
    generative = is_generative(conditioning)
    if generative and target_type not in DEFAULT_DENOISERS:
        raise ValueError(
            f"conditioning {conditioning!r} generates {sorted(DEFAULT_DENOISERS)} targets, "
            f"not {target_type!r}"
        )
    return generative


def build_generative(
    model: MultiModalModel,
    build_decoder: Callable[[], nn.Module],
    options: dict | None,
    layers: int,
    dim: int,
    mean_decoder: tuple[str, dict],
) -> None:
    """Give ``model`` its ``decoder`` (the denoiser), ``conditioner`` and ``mean_head``.

    ``build_decoder`` builds the model's target decoder; ``options``, ``layers``, ``dim``:
    the model's ``conditioning_options``, ``conditioning_layers`` and ``embedding_dim``;
    ``mean_decoder``: the deterministic decoder name of the target modality (used when the
    conditioning names none) and the settings a decoder may take (``n_heads``,
    ``dropout``, the modality's), for the residual variant's mean head. The mean head is
    built last, so a seed gives the denoiser and the conditioning their former weights.
    """
    method = model.conditioning_method
    model.decoder = build_decoder()
    model.conditioner = check_generative(model.decoder, method, layers, dim, options)
    model.conditioner.init_whitening(model.target_type, model.target_shape)  # whiten only
    model.mean_head = model.mean_members = None
    if getattr(model.conditioner, "residual", False):
        default, kwargs = mean_decoder
        name = model.conditioner.mean_decoder or default
        model.mean_head = MeanHead.build(
            name, model.target_type, model.target_shape, dim, kwargs, model.conditioner
        )
        model.mean_head.decoder_name = name
        extra = getattr(model.conditioner, "mean_members", 1) - 1  # an ensemble's members
        if extra:  # copies: the same blocks, weights from adopt_mean or the state dict
            model.mean_members = nn.ModuleList(
                MeanMember(copy.deepcopy(model.encoder), copy.deepcopy(model.mean_head))
                for _ in range(extra)
            )
        for part in frozen_parts(model):
            part.requires_grad_(False)


class MeanMember(nn.Module):
    """One further member of a ``mean_from`` ensemble: its own encoder and mean head."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, condition, time_offset=None) -> torch.Tensor:
        return self.head(*encode_tokens(self.encoder, condition), time_offset)


def mean_prediction(model, tokens, mask, time_offset, condition) -> torch.Tensor:
    """The residual model's mean head ``mu(c)`` from member 0's encoded ``tokens``; with a
    ``mean_from`` ensemble (``mean_members`` K > 1) the mean of the K members' predictions,
    the others encoding ``condition`` themselves (as the ensemble predicts)."""
    mean = model.mean_head(tokens, mask, time_offset)
    members = getattr(model, "mean_members", None)
    if members is None:
        return mean
    if condition is None:
        raise ValueError("the mean head of a mean_from ensemble needs the condition batch")
    total = mean.float()
    for member in members:
        total = total + member(condition, time_offset).float()
    return (total / (len(members) + 1)).to(mean.dtype)


def frozen_parts(model: MultiModalModel) -> tuple[nn.Module, ...]:
    """The parts a residual model with ``mean_from`` does not train (encoder, mean head):
    no gradients, and kept in eval mode (no dropout, no batch-norm statistics updated)
    while the model trains; ``()`` for every other model."""
    if getattr(model.conditioner, "mean_from", None) is None:
        return ()
    members = getattr(model, "mean_members", None)
    return (model.encoder, model.mean_head) + (() if members is None else (members,))


#: config keys a ``mean_from`` source must share with the diffusion model
_SHARED = (
    "condition_type", "target_type", "condition_encoder", "embedding_dim",
    "num_attention_heads", "condition_shape", "target_shape", "encoder_options",
)  # fmt: skip


def adopt_mean(model: MultiModalModel, source: MultiModalModel | ModelEnsemble) -> None:
    """Copy ``source``'s encoder, cross-attention and decoder into ``model``'s encoder and
    mean head (``model``: residual diffusion with ``mean_from``; ``source``: the trained
    deterministic ``cross_attention`` model it names, or its ``ModelEnsemble``: member 0
    into the encoder and mean head, the others into ``mean_members``). Afterwards
    ``model``'s mean head predicts exactly what ``source`` predicts.

    Raises
    ------
    ValueError
        Naming what does not match: ``model`` has no ``mean_from``, ``source`` is itself
        generative or not a one-layer option-free ``cross_attention`` model, a shared
        setting (condition, target, encoder, width, heads, shapes, decoder) differs, or its
        number of models is not ``model``'s ``mean_members``.
    """
    conditioner = model.conditioner
    name = getattr(conditioner, "mean_from", None)
    if not frozen_parts(model):
        raise ValueError("adopt_mean needs a residual diffusion model with mean_from")
    sources = list(getattr(source, "members", [source]))  # a ModelEnsemble: its members
    if len(sources) != conditioner.mean_members:
        raise ValueError(
            f"mean_from {name!r} is {'an ensemble of ' if len(sources) > 1 else ''}"
            f"{len(sources)} model{'s' if len(sources) > 1 else ''}, this model's "
            f"mean_members is {conditioner.mean_members} (set method_options.mean_members "
            "to the source's ensemble)"
        )
    _check_mean_source(model, sources[0], name)
    members = [(model.encoder, model.mean_head)]
    members += [(m.encoder, m.head) for m in (model.mean_members or [])]
    for (encoder, head), trained in zip(members, sources, strict=True):
        encoder.load_state_dict(trained.encoder.state_dict())
        head.conditioner.load_state_dict(trained.conditioner.state_dict())
        head.decoder.load_state_dict(trained.decoder.state_dict())


def _check_mean_source(model, source, name) -> None:
    """``source`` (a member of) the deterministic one-layer cross-attention model whose
    settings the mean head shares, else ValueError naming the first difference."""
    conditioner = model.conditioner
    if source.generative:
        raise ValueError(
            f"mean_from {name!r} is itself a generative model ({source.conditioning_method}); "
            "it must be a deterministic cross_attention model"
        )
    theirs, ours = source.config, model.config
    wanted = {"conditioning": "cross_attention", "conditioning_layers": 1,
              "conditioning_options": {}}  # fmt: skip
    for key, value in wanted.items():
        if theirs[key] != value:
            raise ValueError(
                f"mean_from {name!r}: the mean head is one cross_attention layer without "
                f"options, the model has {key} {theirs[key]!r}"
            )
    mean_pairs = [("target_decoder", model.mean_head.decoder_name),
                  ("decoder_options", conditioner.mean_decoder_options)]  # fmt: skip
    for key, value in [(k, ours[k]) for k in _SHARED] + mean_pairs:
        if theirs[key] != value:
            raise ValueError(
                f"mean_from {name!r} has {key} {theirs[key]!r}, this model {value!r} "
                "(the mean head's decoder: mean_decoder, mean_decoder_options)"
            )


def generative_forward(
    model: MultiModalModel,
    tokens: torch.Tensor,
    mask: torch.Tensor | None,
    target: torch.Tensor | None,
    time_offset: torch.Tensor | None,
    return_attention: bool,
    condition: torch.Tensor | None = None,
) -> tuple:
    """``(prediction, attention)`` of a generative ``model`` from encoded condition tokens
    (and the ``condition`` itself, which a ``mean_from`` ensemble's other members encode).

    With a (checked) ``target``: the denoising loss terms (training, validation), no
    attention. Without: the mean of the conditioning's ``n_ensemble`` samples drawn with
    its ``sample_seed`` (deterministic DDIM), and their attention when asked.
    """
    if target is not None:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_parts(model)):
            mean = None
            if model.mean_head is not None:
                mean = mean_prediction(model, tokens, mask, time_offset, condition)
        terms = model.conditioner.denoising_terms(
            model.decoder, target, tokens, mask, time_offset, mean
        )
        if mean is not None and terms.mean_loss == "target":
            terms = terms._replace(mean_loss=model.target_type)
        return terms, None
    conditioner = model.conditioner
    drawn = draw_samples(
        model, tokens, mask, conditioner.n_ensemble, None, None, 0.0,
        conditioner.sample_seed, time_offset, return_attention, False, condition,
    )  # fmt: skip
    return drawn.samples.mean(dim=1), drawn.attention


def draw_samples(
    model, tokens, mask, n, steps, guidance, eta, seed, offset, attention, path, condition=None
):
    """``n`` samples per condition from encoded ``tokens`` (arguments as in
    :meth:`MultiModalModel.sample`; ``path``: return the trajectory): the diffusion
    conditioning's DDIM draws, plus the mean head's ``mu(c)`` for a residual model
    (:func:`mean_prediction`, which reads ``condition`` for an ensemble's members)."""
    generator = seed
    if seed is not None and not isinstance(seed, torch.Generator):
        generator = torch.Generator(device=tokens.device).manual_seed(int(seed))
    drawn: Samples = model.conditioner.sample(
        model.decoder, tokens, mask, model.target_shape, n, steps, guidance, eta,
        generator, offset, attention, path,
    )  # fmt: skip
    if model.mean_head is None:
        return drawn
    mean = mean_prediction(model, tokens, mask, offset, condition).float()  # a mu + s r
    scale = getattr(model.conditioner, "spread", None)  # calibrate_spread's s
    scale = 1.0 if scale is None else scale.float()  # (times 1.0 is exact: r unchanged)
    shrink = getattr(model.conditioner, "mean_scale", None)  # calibrate_mean's a
    mean = mean if shrink is None else mean * shrink.float()
    trajectory = drawn.trajectory
    trajectory = None if trajectory is None else trajectory * scale + mean[None, :, None]
    return drawn._replace(samples=drawn.samples * scale + mean[:, None], trajectory=trajectory)
