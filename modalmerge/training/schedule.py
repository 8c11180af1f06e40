"""Optimizer, learning-rate schedules and early stopping for :class:`~modalmerge.training.trainer.Trainer`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

SCHEDULERS = ("cosine", "onecycle", "constant")


# layers whose ``weight`` is a weight matrix (or kernel) that weight decay should shrink
_DECAYED_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)


def decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters AdamW decays: the weight matrices of the model's layers.

    These are the ``weight`` of linear and (transposed) convolution layers, the
    weight matrices of recurrent layers (``weight_ih_l*``, ``weight_hh_l*``) and
    the input projections of multi-head attention (``in_proj_weight``, ...).
    Nothing else is decayed: biases, normalisation scales, embedding tables,
    learned queries and position tables (decay would pull a lookup table or a
    query towards zero without regularising any map).
    """
    names = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for param_name, param in module.named_parameters(recurse=False):
            if param is None:
                continue
            if (
                (isinstance(module, _DECAYED_LAYERS) and param_name == "weight")
                or (isinstance(module, nn.RNNBase) and param_name.startswith("weight_"))
                or (
                    isinstance(module, nn.MultiheadAttention) and param_name.endswith("proj_weight")
                )
            ):
                names.add(prefix + param_name)
    return names


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (betas 0.9, 0.95) decaying only the weight matrices of layers.

    Parameters
    ----------
    model : torch.nn.Module
        Its trainable parameters are optimised.
    lr : float
        Peak learning rate.
    weight_decay : float
        Decoupled weight decay of the parameters :func:`decay_parameter_names`
        lists (linear, convolution, recurrent and attention weight matrices);
        embeddings, learned queries, position tables, biases and norms get none.

    Returns
    -------
    torch.optim.AdamW
        Two parameter groups: decayed first, then not decayed.
    """
    decayed = decay_parameter_names(model)
    decay, no_decay, seen = [], [], set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (decay if name in decayed else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_ratio: float = 0.01,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Build a per-step learning-rate schedule.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Its parameter groups' ``lr`` is the peak learning rate.
    name : {"cosine", "onecycle", "constant"}
        ``cosine``: linear warm-up over ``warmup_fraction`` of the steps, then a
        cosine decay to ``min_lr_ratio`` x peak; ``onecycle``:
        :class:`torch.optim.lr_scheduler.OneCycleLR` with ``pct_start=warmup_fraction``
        and ``cycle_momentum=False``, so Adam's betas stay the optimizer's (0.9, 0.95);
        ``constant``: the peak rate throughout.
    total_steps : int
        Optimizer steps in the whole run (epochs x batches per epoch).
    warmup_fraction : float
        Share of ``total_steps`` spent warming up, in [0, 1).
    min_lr_ratio : float
        Final rate of the cosine schedule relative to the peak.

    Returns
    -------
    torch.optim.lr_scheduler.LRScheduler
        Stepped once per optimizer step; its state dict is plain data.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    if name == "onecycle":
        peak = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=peak,
            total_steps=total_steps,
            pct_start=max(warmup_fraction, 1e-3),
            cycle_momentum=False,  # OneCycleLR would cycle beta1 between 0.85 and 0.95
        )
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if name != "cosine":
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    warmup = int(round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class EarlyStopping:
    """Stop when the monitored loss has not improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int
        Epochs without improvement tolerated before stopping (>= 1).
    min_delta : float
        An improvement must lower the best loss by more than this.
    """

    patience: int = 5
    min_delta: float = 0.0
    best_loss: float = math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def update(self, loss: float, epoch: int) -> bool:
        """Record ``loss`` of ``epoch`` (1-based); return True when it is a new best."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch = float(loss), int(epoch)
            self.epochs_without_improvement = 0
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs passed without improvement."""
        return self.epochs_without_improvement >= self.patience
