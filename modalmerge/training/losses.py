"""Training losses chosen by the target modality.

Each target modality of the model contract (``docs/architecture.md`` §3) has one
loss, registered by name; :func:`make_loss` builds it with options::

    loss_fn = make_loss("time_series", correlation_weight=0.5)
    loss = loss_fn(output.prediction, batch["target"])   # scalar tensor

Every loss is a mean over the batch's elements, so the gradient of a batch split
across processes and averaged (DistributedDataParallel) equals the gradient of the
whole batch (exactly so when the pieces are equal in size; for text, up to the
number of non-pad tokens in each piece).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOSSES: dict[str, type[nn.Module]] = {}


def register_loss(target_type: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register a loss module for a target modality name."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        if target_type in LOSSES:
            raise ValueError(f"a loss for target type {target_type!r} is already registered")
        LOSSES[target_type] = cls
        return cls

    return decorate


def make_loss(target_type: str, **options) -> nn.Module:
    """Build the loss for ``target_type`` with keyword ``options``.

    Parameters
    ----------
    target_type : str
        A registered target modality: ``"time_series"``, ``"image"``, ``"text"``,
        ``"tabular"`` or ``"graph"``.
    **options
        Passed to the loss class (e.g. ``correlation_weight`` for time series,
        ``kind`` for images, ``pad_id`` for text, ``categorical_weight`` for tables).

    Returns
    -------
    torch.nn.Module
        Called as ``loss(prediction, target)``; returns a scalar float32 tensor.

    Raises
    ------
    ValueError
        Unknown target type or unknown option.
    """
    if target_type not in LOSSES:
        raise ValueError(
            f"no loss for target type {target_type!r}; known: {', '.join(sorted(LOSSES))}"
        )
    try:
        return LOSSES[target_type](**options)
    except TypeError as err:
        raise ValueError(f"bad loss option for target type {target_type!r}: {err}") from None


def _check_same_shape(prediction: Tensor, target: Tensor, what: str) -> None:
    if prediction.shape != target.shape:
        raise ValueError(
            f"{what} loss: prediction shape {tuple(prediction.shape)} "
            f"!= target shape {tuple(target.shape)}"
        )


def pearson_per_channel(prediction: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation over time for every sample and channel.

    ``r = mean(p t) / sqrt((var(p) + eps) (var(t) + eps))`` with ``p``, ``t`` centred
    over time. ``eps`` sits inside the root, with each variance (per time point), so
    a constant or nearly constant series has correlation about 0 and finite,
    bounded gradients (at most about ``max|t| / (T sqrt(eps var(t)))`` per entry)
    instead of the ``0 / 0`` of ``sqrt(var(p))`` at a constant series.

    Parameters
    ----------
    prediction, target : Tensor
        ``(B, T, R)``: batch, time points, channels (ROIs).
    eps : float
        Added to each variance (a floor of ``sqrt(eps)`` on each standard
        deviation); it changes r by about ``(eps / var(p) + eps / var(t)) / 2``,
        relatively: 1e-8 for standardised series.

    Returns
    -------
    Tensor
        ``(B, R)`` correlations in [-1, 1].
    """
    p = prediction - prediction.mean(dim=1, keepdim=True)
    t = target - target.mean(dim=1, keepdim=True)
    covariance = (p * t).mean(dim=1)
    variance_p = p.pow(2).mean(dim=1) + eps
    variance_t = t.pow(2).mean(dim=1) + eps
    return covariance * torch.rsqrt(variance_p * variance_t)


@register_loss("time_series")
class TimeSeriesLoss(nn.Module):
    """MSE plus ``correlation_weight * (1 - r)``, r the Pearson correlation over time.

    r is computed per sample and per ROI and averaged, so the loss rewards the
    right time course in every region, not only the right overall level.

    Parameters
    ----------
    correlation_weight : float
        Weight lambda of the correlation term (0 gives plain MSE).
    """

    def __init__(self, correlation_weight: float = 0.5):
        super().__init__()
        if correlation_weight < 0:
            raise ValueError(f"correlation_weight must be >= 0, got {correlation_weight}")
        self.correlation_weight = float(correlation_weight)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Loss of ``prediction`` against ``target``, both ``(B, T, R)``."""
        _check_same_shape(prediction, target, "time_series")
        if prediction.dim() != 3:
            raise ValueError(
                f"time_series loss expects (B, T, R) tensors, got shape {tuple(prediction.shape)}"
            )
        prediction, target = prediction.float(), target.float()
        loss = F.mse_loss(prediction, target)
        if self.correlation_weight:
            if prediction.shape[1] < 2:
                raise ValueError("time_series correlation term needs at least 2 time points")
            correlation = pearson_per_channel(prediction, target).mean()
            loss = loss + self.correlation_weight * (1.0 - correlation)
        return loss


@register_loss("graph")
class GraphLoss(nn.Module):
    """Upper-triangle edge MSE plus ``correlation_weight * (1 - r)``, r over a sample's edges.

    Graphs are packed ``(B, N, F + N)`` (:mod:`modalmerge.models.graph`). Only the
    ``N (N - 1) / 2`` edges above the diagonal are scored (the matrix is symmetric
    and an FC diagonal is 1 by definition); r is the Pearson correlation between
    predicted and true edges of each sample, averaged over the batch, so the loss
    rewards the right pattern of connections and not only their mean level. Node
    features (``F > 0``) add ``feature_weight`` times their MSE.
    """

    def __init__(self, correlation_weight: float = 0.5, feature_weight: float = 1.0):
        super().__init__()
        if correlation_weight < 0 or feature_weight < 0:
            raise ValueError(
                f"graph loss weights must be >= 0, got correlation_weight={correlation_weight}, "
                f"feature_weight={feature_weight}"
            )
        self.correlation_weight = float(correlation_weight)
        self.feature_weight = float(feature_weight)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Loss of ``prediction`` against ``target``, both ``(B, N, F + N)``."""
        _check_same_shape(prediction, target, "graph")
        if prediction.dim() != 3 or not 2 <= prediction.shape[1] <= prediction.shape[2]:
            raise ValueError(
                f"graph loss expects (B, N, F + N) tensors with N >= 2, got {tuple(prediction.shape)}"
            )
        n = prediction.shape[1]
        prediction, target = prediction.float(), target.float()
        i, j = torch.triu_indices(n, n, offset=1, device=prediction.device)
        f = prediction.shape[2] - n
        edges_p, edges_t = prediction[:, i, f + j], target[:, i, f + j]  # (B, E)
        loss = F.mse_loss(edges_p, edges_t)
        if self.correlation_weight and edges_p.shape[1] > 1:
            r = pearson_per_channel(edges_p.unsqueeze(-1), edges_t.unsqueeze(-1)).mean()
            loss = loss + self.correlation_weight * (1.0 - r)
        if f and self.feature_weight:
            loss = loss + self.feature_weight * F.mse_loss(prediction[..., :f], target[..., :f])
        return loss


@register_loss("image")
class ImageLoss(nn.Module):
    """Voxel-wise L1 (default) or MSE between predicted and target images.

    Parameters
    ----------
    kind : {"l1", "mse"}
        The voxel-wise distance.
    """

    def __init__(self, kind: str = "l1"):
        super().__init__()
        if kind not in ("l1", "mse"):
            raise ValueError(f"image loss kind must be 'l1' or 'mse', got {kind!r}")
        self.kind = kind

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Loss of ``prediction`` against ``target``, both ``(B, C, [D,] H, W)``."""
        _check_same_shape(prediction, target, "image")
        prediction, target = prediction.float(), target.float()
        if self.kind == "l1":
            return F.l1_loss(prediction, target)
        return F.mse_loss(prediction, target)


@register_loss("volume_series")
class VolumeSeriesLoss(ImageLoss):
    """Voxel-wise MSE (default; ``kind="l1"`` for L1) between windows ``(B, T, D, H, W)``.

    MSE: the cleaned BOLD is z-scored per voxel, so squared error is variance unexplained.
    """

    def __init__(self, kind: str = "mse"):
        super().__init__(kind)


@register_loss("text")
class TextLoss(nn.Module):
    """Token cross-entropy that scores neither padding nor the given ``bos``.

    ``prediction[:, i]`` holds the logits for ``target[:, i]``: the text decoder
    feeds the target shifted right (bos first) for teacher forcing, so no shift
    happens here. Position 0 of a target is always ``bos``, which the decoder is
    given rather than predicts (``generate`` writes it without asking the
    model); a target id equal to ``bos_id`` is therefore not scored, like padding.

    Parameters
    ----------
    pad_id : int
        Token id ignored by the loss (0 for :class:`modalmerge.models.text.Tokenizer`).
    bos_id : int or None
        Beginning-of-sequence id, not scored either (1 for the Tokenizer); None
        scores it.
    label_smoothing : float
        Passed to :func:`torch.nn.functional.cross_entropy`.
    """

    def __init__(self, pad_id: int = 0, bos_id: int | None = 1, label_smoothing: float = 0.0):
        super().__init__()
        self.pad_id = int(pad_id)
        self.bos_id = None if bos_id is None else int(bos_id)
        self.label_smoothing = float(label_smoothing)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Loss of logits ``(B, L, V)`` against token ids ``(B, L)``."""
        if prediction.dim() != 3 or target.dim() != 2 or prediction.shape[:2] != target.shape:
            raise ValueError(
                f"text loss expects logits (B, L, V) and ids (B, L); got "
                f"{tuple(prediction.shape)} and {tuple(target.shape)}"
            )
        target = target.long()
        if self.bos_id is not None:
            target = target.masked_fill(target == self.bos_id, self.pad_id)
        if (target != self.pad_id).sum() == 0:
            raise ValueError("text loss: every target token is padding or bos")
        return F.cross_entropy(
            prediction.float().flatten(0, 1),
            target.flatten(),
            ignore_index=self.pad_id,
            label_smoothing=self.label_smoothing,
        )


@register_loss("tabular")
class TabularLoss(nn.Module):
    """MSE on numeric columns plus the mean cross-entropy of the categorical heads.

    The target row holds the numeric columns first and one integer category code
    per categorical column last (``docs/architecture.md`` §3); a negative code
    marks a missing value and is ignored.

    Parameters
    ----------
    categorical_weight : float
        Weight of the categorical term.
    """

    def __init__(self, categorical_weight: float = 1.0):
        super().__init__()
        self.categorical_weight = float(categorical_weight)

    def forward(self, prediction: dict, target: Tensor) -> Tensor:
        """Loss of ``{"numeric": (B, n_num), "categorical": [(B, card_i), ...]}`` vs ``(B, n_num + n_cat)``."""
        if not isinstance(prediction, dict) or "numeric" not in prediction:
            raise ValueError(
                "tabular loss expects a prediction dict {'numeric': ..., 'categorical': [...]}"
            )
        numeric = prediction["numeric"]
        heads = list(prediction.get("categorical", []))
        n_num, n_cat = numeric.shape[-1], len(heads)
        if target.dim() != 2 or target.shape[1] != n_num + n_cat:
            raise ValueError(
                f"tabular target must be (B, {n_num} numeric + {n_cat} categorical), "
                f"got {tuple(target.shape)}"
            )
        target = target.float()
        loss = numeric.new_zeros((), dtype=torch.float32)
        if n_num:
            loss = loss + F.mse_loss(numeric.float(), target[:, :n_num])
        if n_cat:
            codes = target[:, n_num:].round().long()
            codes = torch.where(codes < 0, torch.full_like(codes, -100), codes)
            terms = []
            for i, logits in enumerate(heads):
                if logits.shape[0] != target.shape[0]:
                    raise ValueError(f"tabular categorical head {i}: batch size mismatch")
                if int(codes[:, i].max()) >= logits.shape[1]:
                    raise ValueError(
                        f"tabular categorical column {i}: code {int(codes[:, i].max())} "
                        f">= head cardinality {logits.shape[1]}"
                    )
                # every head stays in the graph (DDP needs the same parameters used on every
                # rank) and no host sync: a head without an observed code adds 0 and no count
                observed = (codes[:, i] >= 0).sum()
                ce = F.cross_entropy(
                    logits.float(), codes[:, i], ignore_index=-100, reduction="sum"
                )
                terms.append(torch.stack([ce / observed.clamp(min=1), (observed > 0).float()]))
            terms = torch.stack(terms)
            loss = loss + self.categorical_weight * terms[:, 0].sum() / terms[:, 1].sum().clamp(
                min=1
            )
        return loss


def chamfer_distance(
    prediction: Tensor, target: Tensor, coordinate_scale: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Symmetric Chamfer terms of two clouds ``(B, N, 3 + F)`` and ``(B, M, 3 + F)``.

    Returns ``(coordinates, features_of_prediction, features_of_target)``: the mean squared
    distance (in units of ``coordinate_scale``) from each point to its nearest point of the
    other cloud, both ways, halved; and the squared feature error of each point against its
    nearest neighbour's features, each way (means). Hand-written with ``torch.cdist``: the
    libraries that ship a Chamfer kernel (pytorch3d, kaolin) need compiled extensions, and
    torch_geometric has none; one ``(B, N, M)`` distance matrix is cheap at surface sizes.
    """
    a, b = prediction[..., :3] / coordinate_scale, target[..., :3] / coordinate_scale
    d = torch.cdist(a, b).square()  # (B, N, M)
    to_target, nearest_target = d.min(dim=2)  # each predicted point's nearest target point
    to_prediction, nearest_prediction = d.min(dim=1)
    coordinates = 0.5 * (to_target.mean() + to_prediction.mean())
    if prediction.shape[-1] == 3:
        zero = coordinates.new_zeros(())
        return coordinates, zero, zero

    def features_at(cloud: Tensor, index: Tensor) -> Tensor:
        f = cloud[..., 3:]
        return torch.gather(f, 1, index[..., None].expand(-1, -1, f.shape[-1]))

    ahead = (prediction[..., 3:] - features_at(target, nearest_target)).square().mean()
    back = (features_at(prediction, nearest_prediction) - target[..., 3:]).square().mean()
    return coordinates, ahead, back


@register_loss("point_cloud")
class PointCloudLoss(nn.Module):
    """Point-cloud loss: per point where the prediction sits on the target's points, else Chamfer.

    A prediction whose xyz equal the target's (the ``values`` decoder copies the given
    coordinates) is scored point by point: MSE of the features. Otherwise (the ``set``
    decoder generates its own points) the clouds are compared as sets: the Chamfer
    distance of the coordinates (in units of ``coordinate_scale``) plus ``feature_weight``
    x the feature error against each point's nearest neighbour, both ways
    (:func:`chamfer_distance`). For a prediction on the target's points the Chamfer form
    reduces to the same MSE, since every point is its own nearest neighbour.

    Parameters
    ----------
    coordinate_scale : float
        mm per unit of the coordinate term (the encoders' default: 70).
    feature_weight : float
        Weight of the feature term.
    """

    def __init__(self, coordinate_scale: float = 70.0, feature_weight: float = 1.0):
        super().__init__()
        if coordinate_scale <= 0:
            raise ValueError(f"coordinate_scale must be > 0, got {coordinate_scale}")
        self.coordinate_scale = float(coordinate_scale)
        self.feature_weight = float(feature_weight)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Loss of a cloud ``(B, N, 3 + F)`` against the target cloud ``(B, M, 3 + F)``."""
        if prediction.dim() != 3 or target.dim() != 3 or prediction.shape[-1] != target.shape[-1]:
            raise ValueError(
                f"point_cloud loss needs clouds (B, N, 3 + F) of equal widths, got "
                f"{tuple(prediction.shape)} and {tuple(target.shape)}"
            )
        prediction, target = prediction.float(), target.float()
        if prediction.shape == target.shape and torch.equal(prediction[..., :3], target[..., :3]):
            if prediction.shape[-1] == 3:
                return prediction.new_zeros(()) + 0.0 * prediction.sum()
            return F.mse_loss(prediction[..., 3:], target[..., 3:])
        coordinates, ahead, back = chamfer_distance(prediction, target, self.coordinate_scale)
        return coordinates + self.feature_weight * 0.5 * (ahead + back)


@register_loss("diffusion")
class DenoisingLoss(nn.Module):
    """Generative models (``conditioning='diffusion'``): the mean squared error of the
    denoiser's output to its training target (v or the noise).

    ``prediction`` is the model's :class:`~modalmerge.models.diffusion.DenoisingTerms`
    ``(predicted, wanted)``; ``target`` (the clean batch) is already inside ``wanted``.
    A residual diffusion model's terms also hold its mean head's prediction: the loss
    then adds ``mean_weight`` times its mean squared error to the clean target (or,
    with ``mean_loss: target``, the target modality's own loss).
    """

    def __init__(self):
        super().__init__()
        self._mean_losses: dict[str, nn.Module] = {}

    def forward(self, prediction, target: Tensor) -> Tensor:
        """Mean over every element of ``(predicted - wanted) ** 2`` in float32 (plus the
        weighted mean-head MSE of a residual model)."""
        predicted, wanted = prediction.predicted, prediction.wanted
        _check_same_shape(predicted, wanted, "diffusion")
        loss = F.mse_loss(predicted.float(), wanted.float())
        if prediction.mean is None:
            return loss
        _check_same_shape(prediction.mean, prediction.target, "diffusion mean head")
        mean, target = prediction.mean.float(), prediction.target.float()
        if prediction.mean_loss == "mse":
            return loss + prediction.mean_weight * F.mse_loss(mean, target)
        # the target modality's deterministic loss (mean_loss: target), default options
        if prediction.mean_loss not in self._mean_losses:
            self._mean_losses[prediction.mean_loss] = make_loss(prediction.mean_loss)
        return loss + prediction.mean_weight * self._mean_losses[prediction.mean_loss](mean, target)
