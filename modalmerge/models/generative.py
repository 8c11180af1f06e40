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
- :func:`draw_samples` — :meth:`MultiModalModel.sample` from encoded condition tokens.

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
    "build_generative",
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
    model.mean_head = None
    if getattr(model.conditioner, "residual", False):
        default, kwargs = mean_decoder
        name = model.conditioner.mean_decoder or default
        model.mean_head = MeanHead.build(
            name, model.target_type, model.target_shape, dim, kwargs, model.conditioner
        )


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
    mean = model.mean_head(tokens, mask, offset).float()  # residual: samples = mu + r
    trajectory = None if drawn.trajectory is None else drawn.trajectory + mean[None, :, None]
    return drawn._replace(samples=drawn.samples + mean[:, None], trajectory=trajectory)
