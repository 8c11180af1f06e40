"""``conditioning='diffusion'``: a conditional denoising diffusion model.

The condition encoder's tokens reach a denoiser (a registered decoder with
``is_denoiser``, :mod:`modalmerge.models.decoders.denoisers`) through
cross-attention only. This module holds what is not network: the noise schedule
and the training target (MONAI's ``DDPMScheduler``), the sampler (MONAI's
``DDIMScheduler``), condition dropout and classifier-free guidance.

- **Training** (DDPM, Ho et al. 2020): a step ``t`` uniform in ``[0, train_steps)``,
  ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``; the denoiser predicts
  ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` (v-prediction, Salimans & Ho 2022;
  why: ``docs/architecture.md``) and the loss is the mean squared error to it. With
  probability ``condition_dropout`` a training sample's condition tokens are all
  replaced by a learned null token, which teaches the unconditional model too.
- **Sampling** (DDIM, Song et al. 2021): ``steps`` steps at trailing spacing
  (``t = train_steps - 1 - k * train_steps / steps``; ``steps`` must divide
  ``train_steps``), ``eta`` 0 (deterministic given the initial noise) to 1 (with
  ``steps == train_steps`` exactly DDPM's ancestral sampler). Classifier-free
  guidance: ``out = out_null + guidance * (out_cond - out_null)``; ``guidance`` 1
  is the conditional model alone, 0 the unconditional one.
- **Residual diffusion** (``residual=True``; CorrDiff, Mardani et al. 2023): a
  deterministic mean head (the model's condition tokens read by cross-attention
  into a deterministic decoder, built by :class:`~modalmerge.models.model.MultiModalModel`)
  predicts the conditional mean ``mu(c)`` with an MSE loss weighted ``mean_weight``;
  the diffusion chain models the residual ``x_0 - mu(c)`` (``mu`` detached: the
  denoising loss does not move the mean head), and a sample is ``mu + residual``.
  With ``mean_from`` (CorrDiff's own two-stage recipe) the encoder and the mean head are
  not trained here: they are copied, frozen, from a trained deterministic
  ``cross_attention`` model (:func:`~modalmerge.models.generative.adopt_mean`), and only
  the denoiser (and the null token) learn; the loss is the denoising loss alone.
- **Whitened residuals** (``whiten=True``, with ``mean_from``, time-series targets): the
  chain runs on ``(x_0 - mu) W`` where ``W = S^-1/2`` whitens the frozen mean head's
  training residuals across ROIs (``S``: their ROI x ROI covariance, Ledoit-Wolf shrunk,
  estimated once before training by :func:`~modalmerge.models.whitening.fit_whitening`),
  and a draw ``z`` maps back as ``z S^1/2``. A denoiser that leaves the ROIs of its
  draws independent then still draws residuals with the training residuals' covariance
  (diffusion in a decorrelated space, as latent and PCA-space diffusion do); what it
  learns is how one subject departs from that.
- Validation losses (eval mode) draw their steps and noise from a generator seeded
  with ``validation_seed``: the same draws every epoch, so early stopping compares
  like with like, and the global random streams are not touched.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from modalmerge.models.layers import decode
from modalmerge.models.registry import build, get_conditioning, get_decoder, register_conditioning

PREDICTIONS = ("v_prediction", "epsilon")
SCHEDULES = ("cosine", "linear_beta", "scaled_linear_beta", "sigmoid_beta")


def is_generative(method: str) -> bool:
    """Whether the registered conditioning ``method`` is a generative model (``diffusion``)."""
    return bool(getattr(get_conditioning(method), "generative", False))


def check_generative(denoiser, method: str, n_layers: int, dim: int, options: dict | None):
    """Build the generative ``method``'s layer for ``denoiser``, checking that they fit.

    The denoiser (a registered decoder with ``is_denoiser``) holds the network; its
    depth is its own option (``decoder_options: {n_layers: ...}``), so
    ``conditioning_layers`` must stay 1.
    """
    if not getattr(denoiser, "is_denoiser", False):
        raise ValueError(
            f"conditioning {method!r} needs a denoiser decoder (time_series: denoiser, "
            f"image: diffusion_unet), got {type(denoiser).__name__}"
        )
    if n_layers != 1:
        raise ValueError(
            f"conditioning {method!r} takes conditioning_layers=1 (set the denoiser's depth "
            f"with decoder_options n_layers), got {n_layers}"
        )
    return build(get_conditioning(method), f"{method} conditioning", (), {"dim": dim}, options)


class MeanHead(nn.Module):
    """A residual diffusion model's deterministic head: the target's deterministic
    decoder's queries read the condition tokens by cross-attention (as in a
    ``cross_attention`` model), and the decoder maps them to ``mu(c)``."""

    def __init__(self, decoder: nn.Module, dim: int, heads: int, dropout: float):
        super().__init__()
        from modalmerge.models.conditioning import Conditioning

        if getattr(decoder, "is_denoiser", False):
            raise ValueError("the mean head needs a deterministic decoder, not a denoiser")
        self.conditioner = Conditioning("cross_attention", dim, heads, dropout, 1, {})
        self.decoder = decoder

    @classmethod
    def build(cls, name, target_type, target_shape, dim, kwargs, diffusion) -> MeanHead:
        """The mean head of the ``diffusion`` conditioning (its ``mean_decoder_options``) with
        the registered decoder ``name`` for ``target_type``; ``kwargs``: the model's settings
        a decoder may take (``n_heads``, ``dropout``, the modality's)."""
        decoder = build(
            get_decoder(target_type, name),
            f"{name} mean-head decoder",
            (target_shape, dim),
            kwargs,
            diffusion.mean_decoder_options,
        )
        return cls(decoder, dim, kwargs["n_heads"], kwargs["dropout"])

    def forward(self, tokens, mask=None, time_offset=None) -> torch.Tensor:
        """``mu(c)`` shaped like the target, from the condition tokens ``(B, N, dim)``."""
        queries = self.decoder.queries(tokens.shape[0], time_offset=time_offset)
        conditioned, _ = self.conditioner(queries, tokens, mask, False)
        return decode(self.decoder, conditioned, time_offset)


class DenoisingTerms(NamedTuple):
    """What a generative model's forward returns as ``prediction`` given a target:
    the denoiser's output and what it should have been (the loss compares them).

    A residual model adds its mean head's prediction ``mean`` of the clean
    ``target``; the loss adds ``mean_weight`` times their mean squared error.
    """

    predicted: torch.Tensor
    wanted: torch.Tensor
    mean: torch.Tensor | None = None
    target: torch.Tensor | None = None
    mean_weight: float = 0.0
    mean_loss: str = "mse"


class Samples(NamedTuple):
    """:meth:`DiffusionConditioning.sample`'s result.

    Attributes
    ----------
    samples : Tensor
        ``(B, n_samples, *target_shape)``.
    attention : Tensor or None
        The denoiser's cross-attention at the last step (conditional branch),
        averaged over samples: ``(B, heads, n_queries, n_condition)``.
    trajectory : Tensor or None
        ``(steps, B, n_samples, *target_shape)``: the predicted clean target
        ``x_0`` after each step (the denoising trajectory), when asked.
    """

    samples: torch.Tensor
    attention: torch.Tensor | None
    trajectory: torch.Tensor | None


def _check_residual(residual, mean_weight, mean_decoder, mean_decoder_options, mean_loss, detach):
    """ValueError naming the first residual-diffusion option that is out of range or unused."""
    if not isinstance(residual, bool):
        raise ValueError(f"residual must be true or false, got {residual!r}")
    if not residual and (mean_decoder is not None or mean_decoder_options is not None):
        raise ValueError("mean_decoder and mean_decoder_options need residual: true")
    if not mean_weight > 0:
        raise ValueError(f"mean_weight must be > 0, got {mean_weight}")
    if mean_loss not in ("mse", "target"):
        raise ValueError(f"mean_loss must be 'mse' or 'target', got {mean_loss!r}")
    if detach and not residual:
        raise ValueError("detach_condition needs residual: true")


def _check_mean_from(mean_from, residual, mean_weight, mean_loss, detach_condition):
    """``mean_from`` if it fits the other residual options, else ValueError."""
    if mean_from is None:
        return None
    if not isinstance(mean_from, str) or not mean_from:
        raise ValueError(f"mean_from must be an experiment name, got {mean_from!r}")
    if not residual:
        raise ValueError("mean_from needs residual: true (it supplies the mean head)")
    if mean_weight != 1.0 or mean_loss != "mse" or detach_condition:
        raise ValueError(
            "mean_from freezes the encoder and the mean head: mean_weight, mean_loss "
            "and detach_condition do not apply; leave them out"
        )
    return mean_from


def _check_flag(name: str, value, needs: str, needed: bool, why: str) -> bool:
    """Option ``name`` as a bool that, when true, needs option ``needs`` true (``why``),
    else ValueError naming both: ``calibrate_spread`` (needs ``residual``) and
    ``calibrate_mean`` (needs ``calibrate_spread``)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if value and not needed:
        raise ValueError(f"{name} needs {needs}: true ({why})")
    return value


def _check_mean_members(mean_members, mean_from) -> int:
    """``mean_members`` if it fits (an int >= 1; above 1 it needs ``mean_from``)."""
    if isinstance(mean_members, bool) or not isinstance(mean_members, int) or mean_members < 1:
        raise ValueError(f"mean_members must be an integer >= 1, got {mean_members!r}")
    if mean_members > 1 and mean_from is None:
        raise ValueError(
            "mean_members needs mean_from: the mean head is a trained ensemble's (train."
            "ensemble or the experiment's ensemble), copied in frozen"
        )
    return mean_members


def _check_whiten(whiten, mean_from) -> bool:
    """``whiten`` if it fits (it needs ``mean_from``), else ValueError."""
    if whiten and mean_from is None:
        raise ValueError(
            "whiten needs mean_from: it whitens the residuals of a trained, frozen mean head"
        )
    return bool(whiten)


@register_conditioning("diffusion")
class DiffusionConditioning(nn.Module):
    """Noise schedule, condition dropout, DDIM sampling and guidance of a diffusion model.

    Parameters
    ----------
    dim : int
        Condition token width (the null token's).
    train_steps : int
        Diffusion steps of the training chain.
    schedule : {"cosine", "linear_beta", "scaled_linear_beta", "sigmoid_beta"}
        MONAI noise schedule.
    prediction : {"v_prediction", "epsilon"}
        What the denoiser predicts.
    condition_dropout : float
        Probability that a training sample's condition is replaced by the null token.
    sample_steps : int
        DDIM steps used by ``model(condition)`` and by default in ``sample``.
    guidance : float
        Default guidance scale.
    n_ensemble : int
        Samples averaged by ``model(condition)``.
    sample_seed : int
        Seed of the initial noise of ``model(condition)`` (deterministic predictions).
    validation_seed : int
        Seed of the validation losses' steps and noise.
    target_scale : float
        Targets are multiplied by it before diffusion and samples divided by it after:
        set it near 1 / (the targets' SD) so the data meet the unit-variance noise
        the schedule assumes (standardized BOLD windows after filtering have SD ~0.4).
        A residual model scales the residual ``x_0 - mu``.
    residual : bool
        Residual diffusion: a deterministic mean head predicts ``mu(c)`` and the
        diffusion chain models ``x_0 - mu(c)`` (module docstring).
    mean_weight : float
        Weight of the mean head's MSE beside the denoising loss (``residual`` only).
    mean_decoder : str, optional
        The mean head's registered deterministic decoder (default: the target's
        default decoder, e.g. ``transformer`` for time series, ``deconv`` for images).
    mean_decoder_options : dict, optional
        Its keyword options (e.g. ``{"query": "roi"}``).
    mean_loss : {"mse", "target"}
        The mean head's loss: ``mse`` (the conditional mean), or ``target``: the
        deterministic loss of the target modality, as a deterministic model of that
        target is trained (time series: MSE + 0.5 (1 - r)).
    detach_condition : bool
        ``residual`` only: the denoiser reads the condition tokens detached, so only
        the mean head trains the condition encoder (as in the deterministic model).
    mean_from : str, optional
        ``residual`` only: the name of the trained deterministic ``cross_attention``
        experiment whose encoder and decoder become this model's encoder and mean head,
        frozen (the workflow's train stage copies them in before training). Their own
        loss options (``mean_weight``, ``mean_loss``, ``detach_condition``) then do not
        apply and are refused.
    mean_members : int
        ``mean_from`` only: the number of members of the ``mean_from`` experiment's
        ensemble (its ``ensemble``), 1 for a single model. With K > 1 the mean head
        predicts the mean of the K members' predictions: member 0's encoder and head are
        ``encoder`` and ``mean_head`` (the denoiser reads member 0's condition tokens), the
        others are frozen copies in ``mean_members``. An ensemble of training seeds predicts
        held-out subjects with a lower MSE than one fit (docs/benchmarks.md, "Mean-head
        candidates on validation").
    whiten : bool
        ``mean_from`` and time-series targets only: diffuse the residuals whitened across
        ROIs by their training covariance (module docstring). The matrices are buffers
        (in the state dict), identity until the train stage fits them.
    calibrate_spread : bool
        ``residual`` only: after training, the train stage chooses one scale ``s`` for the
        residual draws on the validation subjects (lowest mean fair CRPS), and a sample
        becomes ``mu + s r`` (:mod:`modalmerge.models.spread`). The scale is a buffer
        ``spread`` (in the state dict), 1 until calibrated.
    calibrate_mean : bool
        ``calibrate_spread`` only: the same calibration also chooses a scale ``a`` for the
        mean head's prediction, jointly with ``s``, and a sample becomes ``a mu + s r``: a
        mean head that overfits its training subjects predicts held-out subjects with too
        large an amplitude, and shrinking it is the validation-chosen remedy. A buffer
        ``mean_scale``, 1 until calibrated.
    """

    generative = True
    returns_attention = True

    def __init__(
        self,
        dim: int,
        train_steps: int = 1000,
        schedule: str = "cosine",
        prediction: str = "v_prediction",
        condition_dropout: float = 0.1,
        sample_steps: int = 20,
        guidance: float = 1.0,
        n_ensemble: int = 8,
        sample_seed: int = 0,
        validation_seed: int = 0,
        target_scale: float = 1.0,
        residual: bool = False,
        mean_weight: float = 1.0,
        mean_decoder: str | None = None,
        mean_decoder_options: dict | None = None,
        mean_loss: str = "mse",
        detach_condition: bool = False,
        mean_from: str | None = None,
        mean_members: int = 1,
        whiten: bool = False,
        calibrate_spread: bool = False,
        calibrate_mean: bool = False,
    ):
        super().__init__()
        from monai.networks.schedulers import DDPMScheduler

        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if not 0 <= condition_dropout < 1:
            raise ValueError(f"condition_dropout must be in [0, 1), got {condition_dropout}")
        if train_steps < 1 or n_ensemble < 1:
            raise ValueError("train_steps and n_ensemble must be >= 1")
        self.train_steps, self.schedule, self.prediction = int(train_steps), schedule, prediction
        self.condition_dropout = float(condition_dropout)
        self.sample_steps, self.guidance = self.check_steps(sample_steps), float(guidance)
        self.n_ensemble, self.sample_seed = int(n_ensemble), int(sample_seed)
        self.validation_seed = int(validation_seed)
        if target_scale <= 0:
            raise ValueError(f"target_scale must be > 0, got {target_scale}")
        self.target_scale = float(target_scale)
        self._init_residual(residual, mean_weight, mean_decoder, mean_decoder_options,
                            mean_loss, detach_condition)  # fmt: skip
        self.mean_from = _check_mean_from(mean_from, residual, mean_weight, mean_loss,
                                          detach_condition)  # fmt: skip
        self.whiten = _check_whiten(whiten, self.mean_from)
        self.mean_members = _check_mean_members(mean_members, self.mean_from)
        self._init_spread(calibrate_spread, residual, calibrate_mean)
        self.null = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.ddpm = DDPMScheduler(
            num_train_timesteps=self.train_steps,
            schedule=schedule,
            prediction_type=prediction,
            clip_sample=False,
        )

    def _init_residual(self, residual, mean_weight, mean_decoder, mean_decoder_options,
                       mean_loss, detach_condition) -> None:  # fmt: skip
        """The residual variant's own settings (checked; class docstring)."""
        _check_residual(residual, mean_weight, mean_decoder, mean_decoder_options, mean_loss,
                        detach_condition)  # fmt: skip
        self.residual, self.mean_weight = residual, float(mean_weight)
        self.mean_loss, self.detach_condition = mean_loss, bool(detach_condition)
        self.mean_decoder = mean_decoder
        self.mean_decoder_options = dict(mean_decoder_options or {})

    def _init_spread(self, calibrate_spread, residual, calibrate_mean=False) -> None:
        """``calibrate_spread`` and ``calibrate_mean`` (checked) and, with them, the residual
        draws' scale and the mean's: buffers ``spread`` and ``mean_scale``, 1 until the
        train stage calibrates them."""
        self.calibrate_spread = _check_flag(
            "calibrate_spread", calibrate_spread, "residual", residual,
            "it scales the draws around the mean head",
        )  # fmt: skip
        self.calibrate_mean = _check_flag(
            "calibrate_mean", calibrate_mean, "calibrate_spread", self.calibrate_spread,
            "the mean's scale is chosen with the draws' spread, on the same validation CRPS",
        )  # fmt: skip
        if self.calibrate_spread:
            self.register_buffer("spread", torch.ones(()))
        if self.calibrate_mean:
            self.register_buffer("mean_scale", torch.ones(()))

    def check_steps(self, steps: int) -> int:
        """``steps`` if it is a valid DDIM step count (divides ``train_steps``), else ValueError."""
        steps = int(steps)
        if steps < 1 or steps > self.train_steps or self.train_steps % steps:
            raise ValueError(
                f"DDIM steps must divide train_steps ({self.train_steps}); got {steps}"
            )
        return steps

    def ddim(self, steps: int):
        """A MONAI ``DDIMScheduler`` on this schedule, at ``steps`` trailing steps."""
        from monai.networks.schedulers import DDIMScheduler

        steps = self.check_steps(steps)
        scheduler = DDIMScheduler(
            num_train_timesteps=self.train_steps,
            schedule=self.schedule,
            prediction_type=self.prediction,
            clip_sample=False,
            set_alpha_to_one=True,
        )
        scheduler.set_timesteps(steps)
        # trailing spacing, consistent with step()'s prev = t - train_steps // steps
        scheduler.timesteps = (
            self.train_steps - 1 - torch.arange(steps) * (self.train_steps // steps)
        )
        return scheduler

    def init_whitening(self, target_type: str, target_shape: tuple[int, ...]) -> None:
        """Register identity whitening and colouring buffers for ``whiten`` (no-op without)."""
        if not self.whiten:
            return
        if target_type != "time_series":
            raise ValueError(f"whiten whitens time series across ROIs, not {target_type!r} targets")
        n = int(target_shape[-1])
        self.register_buffer("whitening", torch.eye(n))
        self.register_buffer("coloring", torch.eye(n))

    def set_whitening(self, covariance: torch.Tensor, floor: float = 1e-6) -> None:
        """Set ``whitening = S^-1/2`` and ``coloring = S^1/2`` (symmetric, ZCA: each whitened
        ROI stays closest to its own) from a ROI covariance ``S``; eigenvalues below
        ``floor`` x the largest are raised to it, so no direction is amplified without bound."""
        if not self.whiten:
            raise ValueError("set_whitening needs a model built with whiten=True")
        covariance = torch.as_tensor(covariance, dtype=torch.float64)
        if covariance.shape != self.whitening.shape or not torch.isfinite(covariance).all():
            raise ValueError(
                f"whitening needs a finite {tuple(self.whitening.shape)} covariance, "
                f"got shape {tuple(covariance.shape)}"
            )
        values, vectors = torch.linalg.eigh((covariance + covariance.T) / 2)
        values = values.clamp_min(float(values.max()) * floor)
        if not values.max() > 0:
            raise ValueError("whitening needs a covariance with positive variance")
        self.whitening.copy_((vectors * values.rsqrt()) @ vectors.T)
        self.coloring.copy_((vectors * values.sqrt()) @ vectors.T)

    def to_chain(self, x0: torch.Tensor) -> torch.Tensor:
        """A clean target (a residual model's residual) in the chain's space: whitened
        across ROIs when ``whiten``, then times ``target_scale``."""
        x0 = x0.float()
        if self.whiten:  # in fp32 also under autocast
            with torch.autocast(x0.device.type, enabled=False):
                x0 = x0 @ self.whitening
        return x0 * self.target_scale

    def from_chain(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_chain`."""
        x = x.float() / self.target_scale
        if not self.whiten:
            return x
        with torch.autocast(x.device.type, enabled=False):
            return x @ self.coloring

    def null_context(self, context: torch.Tensor) -> torch.Tensor:
        """The null condition: every token replaced by the learned null token."""
        return self.null.to(context.dtype).expand_as(context)

    # ---------------------------------------------------------------- training
    def denoising_terms(
        self, denoiser, x0, context, mask=None, time_offset=None, mean=None
    ) -> DenoisingTerms:
        """One DDPM training draw for the batch ``x0``: the denoiser's output and its target.

        ``mean``: a residual model's mean-head prediction of ``x0``; the chain then
        noises ``x0 - mean`` (detached) and the terms carry the mean head's error too.
        """
        b, device = x0.shape[0], x0.device
        generator = None
        if not self.training:
            generator = torch.Generator(device=device).manual_seed(self.validation_seed)
        if mean is not None:
            context = context.detach() if self.detach_condition else context
            terms = self.denoising_terms(
                denoiser, x0.float() - mean.detach().float(), context, mask, time_offset
            )
            if self.mean_from is not None:  # frozen mean head: the denoising loss alone
                return terms
            return terms._replace(
                mean=mean, target=x0, mean_weight=self.mean_weight, mean_loss=self.mean_loss
            )
        x0 = self.to_chain(x0)
        t = torch.randint(0, self.train_steps, (b,), device=device, generator=generator)
        noise = torch.randn(x0.shape, device=device, generator=generator)
        if self.training and self.condition_dropout > 0:
            drop = torch.rand(b, device=device) < self.condition_dropout
            context = torch.where(drop[:, None, None], self.null_context(context), context)
        if self.prediction == "v_prediction":
            wanted = self.ddpm.get_velocity(x0, noise, t)
        else:
            wanted = noise
        if getattr(denoiser, "uses_monai_inferer", False):
            from monai.inferers import DiffusionInferer

            # training keyword: condition= (sampling's is conditioning=)
            predicted = DiffusionInferer(self.ddpm)(
                inputs=x0,
                diffusion_model=denoiser.unet_model(time_offset),
                noise=noise,
                timesteps=t,
                condition=denoiser.unet_context(context, time_offset),
            )
        else:
            x_t = self.ddpm.add_noise(x0, noise, t)
            predicted, _ = denoiser(x_t, t, context, mask, time_offset)
        return DenoisingTerms(predicted, wanted)

    # ---------------------------------------------------------------- sampling
    def _guided(self, denoiser, x, t, context, mask, time_offset, guidance, attention):
        """The guided model output at step ``t`` (and the conditional branch's attention)."""
        steps = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        if guidance == 1.0:
            return denoiser(x, steps, context, mask, time_offset, attention)
        if guidance == 0.0:
            return denoiser(x, steps, self.null_context(context), mask, time_offset, False)[0], None
        both = torch.cat([context, self.null_context(context)])
        out, weights = denoiser(
            torch.cat([x, x]),
            torch.cat([steps, steps]),
            both,
            None if mask is None else torch.cat([mask, mask]),
            None if time_offset is None else torch.cat([time_offset, time_offset]),
            attention,
        )
        cond, uncond = out.chunk(2)
        return uncond + guidance * (cond - uncond), None if weights is None else weights.chunk(2)[0]

    @torch.no_grad()
    def sample(
        self,
        denoiser,
        context: torch.Tensor,
        mask: torch.Tensor | None,
        target_shape: tuple[int, ...],
        n_samples: int = 1,
        steps: int | None = None,
        guidance: float | None = None,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        time_offset: torch.Tensor | None = None,
        return_attention: bool = False,
        return_trajectory: bool = False,
    ) -> Samples:
        """Draw ``n_samples`` targets per condition with DDIM; see :class:`Samples`."""
        # Over 60 lines: the sampling loop with guidance, attention and trajectory kept together.
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        guidance = self.guidance if guidance is None else float(guidance)
        scheduler = self.ddim(self.sample_steps if steps is None else steps)
        b = context.shape[0]

        def repeat(x):
            return None if x is None else x.repeat_interleave(n_samples, dim=0)

        context, mask, offset = repeat(context), repeat(mask), repeat(time_offset)
        x = torch.randn((b * n_samples, *target_shape), generator=generator, device=context.device)
        path, attention = [], None
        for i, t in enumerate(scheduler.timesteps.tolist()):
            last = i == len(scheduler.timesteps) - 1
            out, weights = self._guided(
                denoiser, x, t, context, mask, offset, guidance, return_attention and last
            )
            x, x0 = scheduler.step(out.float(), t, x, eta=eta, generator=generator)
            if return_trajectory:
                path.append(self.from_chain(x0.view(b, n_samples, *target_shape)))
            if weights is not None:
                attention = weights.float().view(b, n_samples, *weights.shape[1:]).mean(dim=1)
        trajectory = torch.stack(path) if return_trajectory else None
        samples = self.from_chain(x.view(b, n_samples, *target_shape))
        return Samples(samples, attention, trajectory)
