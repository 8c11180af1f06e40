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

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from modalmerge.models.diffusion import MeanHead, Samples, check_generative, is_generative

if TYPE_CHECKING:  # pragma: no cover - typing only (model.py imports this module)
    from modalmerge.models.model import MultiModalModel

__all__ = [
    "DEFAULT_DENOISERS",
    "adopt_mean",
    "build_generative",
    "frozen_parts",
    "draw_samples",
    "generative_forward",
    "generative_target",
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
    model.mean_head = None
    if getattr(model.conditioner, "residual", False):
        default, kwargs = mean_decoder
        name = model.conditioner.mean_decoder or default
        model.mean_head = MeanHead.build(
            name, model.target_type, model.target_shape, dim, kwargs, model.conditioner
        )
        model.mean_head.decoder_name = name
        for part in frozen_parts(model):
            part.requires_grad_(False)


def frozen_parts(model: MultiModalModel) -> tuple[nn.Module, ...]:
    """The parts a residual model with ``mean_from`` does not train (encoder, mean head):
    no gradients, and kept in eval mode (no dropout, no batch-norm statistics updated)
    while the model trains; ``()`` for every other model."""
    if getattr(model.conditioner, "mean_from", None) is None:
        return ()
    return (model.encoder, model.mean_head)


#: config keys a ``mean_from`` source must share with the diffusion model
_SHARED = (
    "condition_type", "target_type", "condition_encoder", "embedding_dim",
    "num_attention_heads", "condition_shape", "target_shape", "encoder_options",
)  # fmt: skip


def adopt_mean(model: MultiModalModel, source: MultiModalModel) -> None:
    """Copy ``source``'s encoder, cross-attention and decoder into ``model``'s encoder and
    mean head (``model``: residual diffusion with ``mean_from``; ``source``: the trained
    deterministic ``cross_attention`` model it names). Afterwards ``model``'s mean head
    predicts exactly what ``source`` predicts.

    Raises
    ------
    ValueError
        Naming what does not match: ``model`` has no ``mean_from``, ``source`` is itself
        generative or not a one-layer option-free ``cross_attention`` model, or a shared
        setting (condition, target, encoder, width, heads, shapes, decoder) differs.
    """
    conditioner = model.conditioner
    name = getattr(conditioner, "mean_from", None)
    if not frozen_parts(model):
        raise ValueError("adopt_mean needs a residual diffusion model with mean_from")
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
    model.encoder.load_state_dict(source.encoder.state_dict())
    model.mean_head.conditioner.load_state_dict(source.conditioner.state_dict())
    model.mean_head.decoder.load_state_dict(source.decoder.state_dict())


def generative_forward(
    model: MultiModalModel,
    tokens: torch.Tensor,
    mask: torch.Tensor | None,
    target: torch.Tensor | None,
    time_offset: torch.Tensor | None,
    return_attention: bool,
) -> tuple:
    """``(prediction, attention)`` of a generative ``model`` from encoded condition tokens.

    With a (checked) ``target``: the denoising loss terms (training, validation), no
    attention. Without: the mean of the conditioning's ``n_ensemble`` samples drawn with
    its ``sample_seed`` (deterministic DDIM), and their attention when asked.
    """
    if target is not None:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_parts(model)):
            mean = None if model.mean_head is None else model.mean_head(tokens, mask, time_offset)
        terms = model.conditioner.denoising_terms(
            model.decoder, target, tokens, mask, time_offset, mean
        )
        if mean is not None and terms.mean_loss == "target":
            terms = terms._replace(mean_loss=model.target_type)
        return terms, None
    conditioner = model.conditioner
    drawn = draw_samples(
        model, tokens, mask, conditioner.n_ensemble, None, None, 0.0,
        conditioner.sample_seed, time_offset, return_attention, False,
    )  # fmt: skip
    return drawn.samples.mean(dim=1), drawn.attention


def draw_samples(model, tokens, mask, n, steps, guidance, eta, seed, offset, attention, path):
    """``n`` samples per condition from encoded ``tokens`` (arguments as in
    :meth:`MultiModalModel.sample`; ``path``: return the trajectory): the diffusion
    conditioning's DDIM draws, plus the mean head's ``mu(c)`` for a residual model."""
    generator = seed
    if seed is not None and not isinstance(seed, torch.Generator):
        generator = torch.Generator(device=tokens.device).manual_seed(int(seed))
    drawn: Samples = model.conditioner.sample(
        model.decoder, tokens, mask, model.target_shape, n, steps, guidance, eta,
        generator, offset, attention, path,
    )  # fmt: skip
    if model.mean_head is None:
        return drawn
    mean = model.mean_head(tokens, mask, offset).float()  # residual: samples = a mu + s r
    scale = getattr(model.conditioner, "spread", None)  # calibrate_spread's s
    scale = 1.0 if scale is None else scale.float()  # (times 1.0 is exact: r unchanged)
    shrink = getattr(model.conditioner, "mean_scale", None)  # calibrate_mean's a
    mean = mean if shrink is None else mean * shrink.float()
    trajectory = drawn.trajectory
    trajectory = None if trajectory is None else trajectory * scale + mean[None, :, None]
    return drawn._replace(samples=drawn.samples * scale + mean[:, None], trajectory=trajectory)
