"""Denoisers: the target-side networks of ``conditioning='diffusion'``.

A denoiser is registered as a decoder of its target modality and is called by
:class:`~modalmerge.models.diffusion.DiffusionConditioning` as
``denoiser(x_t, timesteps, context, context_mask, time_offset, return_attention)
-> (output shaped like x_t, attention (B, heads, n_queries, n_context) | None)``:
``x_t`` is the noised target, ``timesteps`` ``(B,)`` the diffusion step, ``context``
the condition tokens (learned null tokens where the condition is dropped) and the
output the model's prediction (v, see ``docs/architecture.md``). The condition
enters only through cross-attention.

- ``time_series`` ``denoiser``: tokens are (time x ROI), one per value of the
  window; each block attends over time (within each ROI), then over regions
  (within each time point), then to the condition tokens, then a feed-forward
  layer; every normalisation is modulated by the diffusion step (adaptive layer
  norm, as in DiT). Attention returned: the last block's cross-attention, averaged
  over the window's time points, one query per ROI (``roi`` provenance), so it is
  drawn like the ``query: roi`` decoders'.
- ``image`` ``diffusion_unet``: MONAI's ``DiffusionModelUNet`` with
  ``with_conditioning=True`` and ``cross_attention_dim=dim``, for any ``(C, D, H, W)``
  or ``(C, H, W)`` target (``volume_series`` windows ``(T, D, H, W)`` pass T as
  channels). MONAI does not return its attention weights: ``attention`` is None.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from modalmerge.models.layers import Decoder, TokenProvenance, sample_shape, sinusoidal_embedding
from modalmerge.models.registry import register_decoder


class _DenoiserMixin:
    """What a denoiser answers as a registered decoder (it has no learned target queries)."""

    is_denoiser = True

    def queries(self, batch_size: int, target=None, time_offset=None):
        raise ValueError(
            f"{type(self).__name__} is a diffusion denoiser: use it with conditioning='diffusion'"
        )


def step_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of diffusion steps ``(B,)``."""
    return sinusoidal_embedding(timesteps.float(), dim)


class _Attention(nn.Module):
    """Multi-head attention with SDPA; explicit weights ``(B, h, Q, N)`` when asked."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"embedding dim {dim} must be divisible by {n_heads} heads")
        self.n_heads = n_heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x, context, mask=None, return_attention=False):
        """x (B, Q, dim), context (B, N, dim), mask (B, N) True = keep -> (B, Q, dim), weights."""
        b, q_len, dim = x.shape

        def heads(t):  # (B, n, dim) -> (B, h, n, d_head)
            return t.view(b, t.shape[1], self.n_heads, dim // self.n_heads).transpose(1, 2)

        k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = heads(self.to_q(x)), heads(k), heads(v)
        attn_mask = None if mask is None else mask[:, None, None, :]
        weights = None
        if return_attention:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, Q, N)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.to_out(out.transpose(1, 2).reshape(b, q_len, dim)), weights


class _FactorisedBlock(nn.Module):
    """Time attention, region attention, cross-attention, feed-forward; adaLN from the step."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim, elementwise_affine=False) for _ in range(4))
        self.modulation = nn.Linear(dim, 8 * dim)  # (scale, shift) for each of the 4 norms
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.time_attention = _Attention(dim, n_heads)
        self.region_attention = _Attention(dim, n_heads)
        self.cross_attention = _Attention(dim, n_heads)
        self.ff = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, h, step, context, mask, return_attention):
        """h (B, T, R, dim), step (B, dim), context (B, N, dim) -> h, weights (B, heads, T*R, N)."""
        b, t, r, d = h.shape
        mods = self.modulation(step)[:, None, None, :].chunk(8, dim=-1)

        def norm(i, x):
            return self.norms[i](x) * (1 + mods[2 * i]) + mods[2 * i + 1]

        x = rearrange(norm(0, h), "b t r d -> (b r) t d")  # over time, per ROI
        out = rearrange(self.time_attention(x, x)[0], "(b r) t d -> b t r d", b=b)
        h = h + self.dropout(out)
        x = rearrange(norm(1, h), "b t r d -> (b t) r d")  # over regions, per time point
        h = h + self.dropout(rearrange(self.region_attention(x, x)[0], "(b t) r d -> b t r d", b=b))
        x = rearrange(norm(2, h), "b t r d -> b (t r) d")  # every token to the condition tokens
        out, weights = self.cross_attention(x, context, mask, return_attention)
        h = h + self.dropout(rearrange(out, "b (t r) d -> b t r d", t=t))
        return h + self.dropout(self.ff(norm(3, h))), weights


@register_decoder("time_series", "denoiser")
class TimeSeriesDenoiser(_DenoiserMixin, Decoder):
    """Denoiser of ``(T, R)`` windows with (time x ROI) tokens and factorised attention.

    Parameters
    ----------
    output_shape : tuple of int
        ``(T, R)``.
    dim : int
        Token width (the model's ``embedding_dim``; the condition tokens have it too).
    n_layers : int
        Blocks of (time attention, region attention, cross-attention, feed-forward).
    time_patch : int
        Consecutive time points of one ROI per token (a divisor of T): 1 gives one token
        per value; larger patches cut the tokens, and the cost, by that factor.
    n_heads, dropout
        Attention heads; dropout inside the blocks.
    labels : list of str, optional
        ROI names (attention provenance).
    """

    def __init__(
        self,
        output_shape,
        dim: int,
        n_layers: int = 2,
        time_patch: int = 1,
        n_heads: int = 4,
        dropout: float = 0.0,
        labels: list[str] | None = None,
    ):
        super().__init__()
        self.output_shape = sample_shape(output_shape, 2, "time_series")
        n_time, n_rois = self.output_shape
        if time_patch < 1 or n_time % time_patch:
            raise ValueError(f"time_patch ({time_patch}) must divide the window's {n_time} volumes")
        self.patch = int(time_patch)
        self.dim = dim
        self.labels = None if labels is None else tuple(str(x) for x in labels)
        self.n_queries = n_rois
        self.value_in = nn.Linear(self.patch, dim)
        self.roi_embedding = nn.Parameter(torch.randn(n_rois, dim) * 0.5)
        self.step_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(
            _FactorisedBlock(dim, n_heads, dropout) for _ in range(n_layers)
        )
        self.out_norm = nn.LayerNorm(dim)
        self.value_out = nn.Linear(dim, self.patch)
        nn.init.zeros_(self.value_out.weight)
        nn.init.zeros_(self.value_out.bias)

    def forward(
        self, x, timesteps, context, context_mask=None, time_offset=None, return_attention=False
    ):
        """x (B, T, R) noised window -> (B, T, R) prediction, attention (B, h, R, N) | None."""
        b, t, r = x.shape
        p = self.patch
        offset = (
            torch.zeros(b, dtype=torch.long, device=x.device)
            if time_offset is None
            else time_offset
        )
        # absolute time of each patch's centre (B, T / p), in volumes
        times = offset.to(x.device)[:, None] + torch.arange(0, t, p, device=x.device) + (p - 1) / 2
        patches = rearrange(x, "b (n p) r -> b n r p", p=p)
        h = (
            self.value_in(patches)
            + self.roi_embedding
            + sinusoidal_embedding(times, self.dim).to(x.dtype)[:, :, None, :]
        )  # (B, T / p, R, dim)
        step = self.step_mlp(step_embedding(timesteps, self.dim).to(x.dtype))
        weights = None
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            h, w = block(h, step, context, context_mask, return_attention and last)
            if w is not None:  # (B, heads, (T / p) R, N) -> mean over time (B, heads, R, N)
                weights = w.view(b, w.shape[1], t // p, r, -1).mean(dim=2)
        out = self.value_out(self.out_norm(h))  # (B, T / p, R, p)
        return rearrange(out, "b n r p -> b (n p) r"), weights

    def query_provenance(self) -> TokenProvenance:
        """One query per ROI: the cross-attention averaged over the window's time points."""
        return TokenProvenance(
            "roi", self.n_queries, labels=self.labels, input_shape=self.output_shape
        )


@register_decoder("volume_series", "diffusion_unet")  # a window: its T volumes as channels
@register_decoder("image", "diffusion_unet")
class ImageDenoiser(_DenoiserMixin, Decoder):
    """MONAI ``DiffusionModelUNet`` reading the condition tokens by cross-attention.

    Trained through MONAI's ``DiffusionInferer`` (``uses_monai_inferer``).

    Parameters
    ----------
    output_shape : tuple of int
        ``(C, D, H, W)`` or ``(C, H, W)``; any channel count (a ``(T, D, H, W)``
        window of volumes passes T as channels). Spatial sizes must be divisible by
        ``2 ** (len(channels) - 1)``.
    dim : int
        The condition tokens' width (``cross_attention_dim``).
    channels : list of int
        U-Net channels per level (each a multiple of ``norm_num_groups``).
    attention_levels : list of bool
        Levels with (self- and cross-) attention; default only the deepest.
    n_res_blocks : int
        Residual blocks per level.
    n_heads : int
        Attention heads (``num_head_channels = channels[level] // n_heads``).
    norm_num_groups : int
        Group-norm groups.
    window_start : bool
        Append to the condition tokens one token holding the sinusoidal embedding of the
        window's start (``time_offset``, in volumes), so the U-Net's cross-attention can
        read where in the run the window lies (condition dropout does not drop it). Off by
        default (the model is then as before).
    start_embedding : bool
        Add the window's start to the U-Net's timestep embedding, which every residual
        block of every level reads (the token above reaches only the attention levels): its
        sinusoidal embedding through a two-layer MLP, in MONAI's class-embedding slot
        (``num_class_embeds``; the window start is the "class label", a continuous code
        rather than a table, so any start works). Off by default.
    flash_attention : bool
        MONAI's ``use_flash_attention``: attention by torch's fused
        ``scaled_dot_product_attention`` instead of explicit matrices; the same weights
        and (to float rounding) the same outputs, 2-3x faster on CPU where attention
        dominates (docs/benchmarks.md, "Diffusion: ROI time series -> T1 image"). Off by
        default (the model is then as before).
    """

    def __init__(
        self,
        output_shape,
        dim: int,
        channels: list[int] | None = None,
        attention_levels: list[bool] | None = None,
        n_res_blocks: int = 1,
        n_heads: int = 4,
        norm_num_groups: int = 8,
        window_start: bool = False,
        start_embedding: bool = False,
        flash_attention: bool = False,
    ):
        super().__init__()
        self.dim, self.window_start = int(dim), bool(window_start)
        self.start_embedding = bool(start_embedding)
        from monai.networks.nets import DiffusionModelUNet

        self.output_shape = tuple(int(n) for n in output_shape)
        if len(self.output_shape) not in (3, 4):
            raise ValueError(f"image target must be (C, H, W) or (C, D, H, W), got {output_shape}")
        channels = list(channels or [16, 32])
        levels = list(attention_levels or [False] * (len(channels) - 1) + [True])
        factor = 2 ** (len(channels) - 1)
        if any(n % factor for n in self.output_shape[1:]):
            raise ValueError(
                f"image target spatial shape {self.output_shape[1:]} must be divisible by "
                f"{factor} for a U-Net of {len(channels)} levels"
            )
        self.n_queries = 1
        self.unet = DiffusionModelUNet(
            spatial_dims=len(self.output_shape) - 1,
            in_channels=self.output_shape[0],
            out_channels=self.output_shape[0],
            channels=channels,
            attention_levels=levels,
            num_res_blocks=n_res_blocks,
            num_head_channels=[max(c // n_heads, 1) for c in channels],
            norm_num_groups=norm_num_groups,
            with_conditioning=True,
            cross_attention_dim=dim,
            num_class_embeds=1 if self.start_embedding else None,
            use_flash_attention=bool(flash_attention),
        )
        if self.start_embedding:  # the class slot reads the window start, not a table row
            self.unet.class_embedding = WindowStartEmbedding(channels[0], channels[0] * 4)

    def forward(
        self, x, timesteps, context, context_mask=None, time_offset=None, return_attention=False
    ):
        """x (B, C, *spatial) -> (B, C, *spatial), None (MONAI keeps its weights inside).

        MONAI's cross-attention takes no key mask: ``context_mask`` (an encoder's
        padding) is not applied; a dropped condition arrives as null tokens, not as a mask.
        """
        context = self.unet_context(context, time_offset)
        return self.unet_model(time_offset)(x=x, timesteps=timesteps, context=context), None

    def unet_model(self, time_offset=None):
        """The U-Net as MONAI's ``DiffusionInferer`` calls it (``x=, timesteps=, context=``):
        with ``start_embedding``, the window start ``time_offset`` (B,) (0 when None) bound
        as its ``class_labels``."""
        if not self.start_embedding:
            return self.unet

        def call(x, timesteps, context=None):
            start = time_offset
            if start is None:
                start = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            return self.unet(x=x, timesteps=timesteps, context=context, class_labels=start)

        return call

    def unet_context(self, context, time_offset=None):
        """The U-Net's cross-attention context: the condition tokens, and with
        ``window_start`` one more token embedding ``time_offset`` (B,)."""
        if not self.window_start or time_offset is None:
            return context
        token = sinusoidal_embedding(time_offset.float(), self.dim).to(context.dtype)
        return torch.cat([context, token[:, None, :]], dim=1)

    def query_provenance(self) -> TokenProvenance:
        """The whole image (MONAI gives no per-query attention)."""
        return TokenProvenance("image_grid", 1, grid_shape=(1,) * (len(self.output_shape) - 1))

    uses_monai_inferer = True


class WindowStartEmbedding(nn.Module):
    """A window start (volumes, (B,)) -> ``(B, out_dim)``: its sinusoidal embedding of width
    ``dim`` through Linear-SiLU-Linear, like MONAI's timestep embedding; it takes the place
    of ``DiffusionModelUNet.class_embedding`` (an ``nn.Embedding`` there)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.dim = int(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, start: torch.Tensor) -> torch.Tensor:
        code = sinusoidal_embedding(start.float(), self.dim)
        return self.mlp(code.to(self.mlp[0].weight.dtype))
