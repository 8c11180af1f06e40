"""The training loop: AdamW, a per-step schedule, early stopping, checkpoints, resume.

::

    trainer = Trainer(model, lr=1e-3, checkpoint_dir="models/exp1")
    history = trainer.train(train_loader, val_loader, epochs=30)   # pandas.DataFrame
    history = trainer.train(train_loader, val_loader, epochs=30, resume=True)  # after a kill

Batches are dicts with ``"condition"`` and ``"target"`` and optionally
``"time_offset"`` (``docs/architecture.md`` §3). Under ``torchrun`` with several
processes the same code trains data-parallel (see :mod:`modalmerge.training.distributed`).
On CPU with a fixed seed and no data-loader workers, a run killed at any point and
resumed ends with bitwise the same weights as an uninterrupted run with the same
number of processes: each epoch's checkpoint holds the model, optimizer, schedule,
gradient scaler, early-stopping state, history and every random-number generator
(the data loader's included, and under torchrun every rank's own). Loader workers
(on GPU nodes) keep random streams of their own that a checkpoint does not hold,
so there a resumed run matches an uninterrupted one to float tolerance only if the
dataset draws no random numbers (ModalMerge's datasets draw none), and GPU kernels
are not bitwise reproducible anyway.

On CUDA the step runs under autocast in the precision
:func:`~modalmerge.training.device.select_precision` picks (bf16 on compute
capability >= 8.0, fp16 with a GradScaler below); validation always runs in fp32,
so early stopping compares fp32 losses. The loop does not wait for the GPU per
batch: losses are summed on the device and read (and checked for NaN/inf) once
per epoch, unless the progress bar is on. Each rank draws dropout from its own
seed (``seed + rank``); weights start equal on every rank (DDP broadcasts rank
0's), and the data shuffle uses the shared ``seed``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from modalmerge.io import atomic_path
from modalmerge.training import distributed
from modalmerge.training.checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    state_dict_to_cpu,
)
from modalmerge.training.device import (
    autocast,
    move_to_device,
    resolve_device,
    select_precision,
)
from modalmerge.training.losses import make_loss
from modalmerge.training.schedule import EarlyStopping, make_optimizer, make_scheduler

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
HISTORY_NAME = "history.csv"
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "lr", "seconds"]


class Trainer:
    """Train a model of the ModalMerge contract (``forward(condition, target, time_offset)``).

    Parameters
    ----------
    model : torch.nn.Module
        Has ``.config`` (a plain dict, stored in checkpoints) and ``.target_type``
        (selects the loss); ``forward`` returns an object with ``.prediction``.
    lr : float
        Peak learning rate of AdamW.
    weight_decay : float
        AdamW weight decay, applied to parameters with two or more dimensions.
    grad_clip : float or None
        Maximum global gradient norm; ``None`` or 0 disables clipping.
    patience : int
        Epochs without validation improvement before stopping; the best
        weights are restored at the end of training either way.
    checkpoint_dir : path-like, optional
        Where ``last.pt`` (every epoch) and ``history.csv`` go; needed to resume.
    device : str or torch.device
        ``"auto"``: this process's GPU (``cuda:LOCAL_RANK``) when CUDA is usable,
        else CPU (:func:`~modalmerge.training.device.resolve_device`).
    amp : {"auto", "bf16", "fp16", "off"} or bool
        Autocast precision on CUDA (:func:`~modalmerge.training.device.select_precision`):
        ``"auto"`` picks bf16 where native, else fp16 with a GradScaler. Not used on CPU.
    seed : int
        Seeds torch, numpy and Python at the start of a fresh run (``seed + rank``
        under torchrun), and the distributed sampler's shuffle (``seed``).
    loss_options : dict, optional
        Keyword options of the target modality's loss (:func:`~modalmerge.training.losses.make_loss`).
    progress : bool
        Show a tqdm progress bar per epoch.
    scheduler : {"cosine", "onecycle", "constant"}
        Per-step learning-rate schedule (:func:`~modalmerge.training.schedule.make_scheduler`).
    warmup_fraction : float
        Share of all steps used for warm-up.
    min_delta : float
        Smallest decrease of the validation loss that counts as improvement.
    compile : bool
        ``torch.compile`` the model (CUDA only); under DDP the wrapped module is
        compiled (DDP first, then compile: TorchDynamo splits graphs at buckets).
    loss : callable, optional
        ``loss(prediction, target) -> scalar``, overriding the registry.
    find_unused_parameters : bool
        Passed to DistributedDataParallel.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        grad_clip: float | None = 1.0,
        patience: int = 5,
        checkpoint_dir: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        amp: str | bool = "auto",
        seed: int = 0,
        loss_options: dict | None = None,
        progress: bool = True,
        scheduler: str = "cosine",
        warmup_fraction: float = 0.05,
        min_delta: float = 0.0,
        compile: bool = False,
        loss: Callable[[Any, Any], torch.Tensor] | None = None,
        find_unused_parameters: bool = False,
    ):
        # Over 60 lines: device, precision, distribution and optimiser set up in the order they depend on each other.
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not isinstance(getattr(model, "config", None), dict):
            raise ValueError("model must carry a plain dict .config (stored in checkpoints)")
        self.ctx = distributed.context_from_env()
        self.device = resolve_device(device, self.ctx.local_rank)
        self.ctx = distributed.setup(self.device)
        if amp in ("bf16", "fp16", True) and self.device.type != "cuda":
            warnings.warn(f"{amp} autocast is used on CUDA only; training in fp32", stacklevel=2)
        self.precision = select_precision(self.device, amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        if self.ctx.is_main:
            log.info(
                "training on %s in %s%s",
                self.device,
                self.precision,
                f" (DDP, {self.ctx.world_size} processes)" if self.ctx.enabled else "",
            )
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed-shape 3D convolutions
        if loss is None:
            target_type = getattr(model, "target_type", None)
            if target_type is None:
                raise ValueError("model has no .target_type; pass loss= explicitly")
            # a generative model's forward returns its denoising terms, scored by their own loss
            kind = "diffusion" if getattr(model, "generative", False) else target_type
            loss = make_loss(kind, **(loss_options or {}))
        self.loss_fn = loss
        if self.ctx.enabled and self.device.type == "cuda":
            # BatchNorm (the resnet encoders) normalises over the global batch, not each
            # rank's share (SyncBatchNorm needs CUDA; CPU/Gloo runs keep per-rank statistics)
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        self.optimizer = make_optimizer(self.model, lr, weight_decay)
        self._forward: nn.Module = self.model
        if self.ctx.enabled:
            self._forward = nn.parallel.DistributedDataParallel(
                self._forward,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters,
            )
        if compile and self.device.type == "cuda":
            self._forward = torch.compile(self._forward)  # after the DDP wrap, as DDP's docs say
        self.grad_clip = grad_clip
        self.patience = patience
        self.min_delta = min_delta
        self.seed = seed
        self.progress = progress
        self.scheduler_name = scheduler
        self.warmup_fraction = warmup_fraction
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.history: list[dict[str, float]] = []
        self.early_stopping = EarlyStopping(patience, min_delta)

    # ------------------------------------------------------------------ paths
    @property
    def checkpoint_path(self) -> Path | None:
        """``<checkpoint_dir>/last.pt`` or None."""
        return self.checkpoint_dir / CHECKPOINT_NAME if self.checkpoint_dir else None

    @property
    def history_path(self) -> Path | None:
        """``<checkpoint_dir>/history.csv`` or None."""
        return self.checkpoint_dir / HISTORY_NAME if self.checkpoint_dir else None

    # ------------------------------------------------------------------ steps
    def _loss(self, module: nn.Module, batch: dict, amp: bool = True) -> torch.Tensor:
        if not isinstance(batch, dict) or "condition" not in batch or "target" not in batch:
            raise ValueError("a batch must be a dict with 'condition' and 'target'")
        batch = move_to_device(batch, self.device)
        with autocast(self.device, self.precision if amp else "fp32"):
            output = module(
                batch["condition"], target=batch["target"], time_offset=batch.get("time_offset")
            )
        return self.loss_fn(output.prediction, batch["target"])

    def _accumulator(self, *shape: int) -> torch.Tensor:
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        return torch.zeros(shape, dtype=dtype, device=self.device)

    def _train_epoch(self, loader: DataLoader, scheduler, epoch: int) -> float:
        self.model.train()
        # summed on the device: no host sync per batch (one per epoch, below)
        total = self._accumulator()
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        count = 0
        show = self.progress and self.ctx.is_main
        bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not show)
        for step, batch in enumerate(bar):
            loss = self._loss(self._forward, batch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)  # fp16: skips steps with inf/NaN gradients
            self.scaler.update()
            scheduler.step()
            value = loss.detach().to(total.dtype)
            total += value
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(value), step, first_bad)
            count += 1
            if show:
                bar.set_postfix(loss=f"{value.item():.4g}")
        if count == 0:
            raise ValueError("the training loader yielded no batches")
        # the mean over processes: every rank sees the same value and stops together
        sums = distributed.all_reduce_sum(torch.stack([total, total.new_tensor(count)]), self.ctx)
        mean, n = sums.tolist()
        mean /= n
        if not math.isfinite(mean):
            bad = int(first_bad)
            where = f"batch {bad}" if bad >= 0 else "a batch of another process"
            raise FloatingPointError(
                f"training loss is {mean} at epoch {epoch}, {where}: "
                "check the inputs for NaN/inf or lower the learning rate"
            )
        return mean

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> float:
        """Mean loss over ``loader`` in fp32 (weighted by batch size; all processes pooled).

        No autocast: early stopping and the best epoch are chosen on fp32 losses.
        """
        self.model.eval()
        sums = self._accumulator(2)
        for batch in loader:
            n = len(batch["target"]) if isinstance(batch["target"], torch.Tensor) else 1
            loss = self._loss(self.model, batch, amp=False)
            sums[0] += loss.detach().to(sums.dtype) * n
            sums[1] += n
        total, n = distributed.all_reduce_sum(sums, self.ctx).tolist()
        if n == 0:
            raise ValueError("the validation loader yielded no batches")
        return total / n

    # ------------------------------------------------------------ checkpoints
    def _checkpoint(
        self, epoch: int, scheduler, best_state, rng: list[dict], stopped: bool
    ) -> dict:
        model_state = state_dict_to_cpu(self.model.state_dict())
        return {
            "format_version": CHECKPOINT_FORMAT,
            "model_config": self.model.config,
            "model_state": model_state,
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(),
            "epoch": epoch,
            "best_val_loss": self.early_stopping.best_loss,
            "best_epoch": self.early_stopping.best_epoch,
            "epochs_without_improvement": self.early_stopping.epochs_without_improvement,
            # None: the best weights are this epoch's model_state (saves a copy)
            "best_model_state": None if self.early_stopping.best_epoch == epoch else best_state,
            "stopped_early": stopped,
            "rng": rng[0],
            # every rank's own generators (dropout streams differ by rank); [] in one process
            "rank_rng": rng if len(rng) > 1 else [],
            "scaler_state": self.scaler.state_dict(),
            "history": list(self.history),
        }

    def _write_history(self) -> None:
        if self.history_path is None or not self.ctx.is_main:
            return
        with atomic_path(self.history_path) as tmp:
            pd.DataFrame(self.history, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)

    def save_model(self, path: str | os.PathLike) -> Path:
        """Write the trained model to ``path`` atomically (the workflow's ``model.pt``).

        A model with its own ``save`` (:meth:`MultiModalModel.save
        <modalmerge.models.model.MultiModalModel.save>`) writes its own format, so
        that its ``load`` reads the file back; any other model is written as
        ``{"model_config", "model_state"}``. Only rank 0 writes; under torchrun every
        rank must call it (it ends in a barrier).
        """
        path = Path(path)
        if self.ctx.is_main:
            if callable(getattr(self.model, "save", None)):
                self.model.save(path)
            else:
                state = state_dict_to_cpu(self.model.state_dict())
                save_checkpoint(path, {"model_config": self.model.config, "model_state": state})
        distributed.barrier(self.ctx)
        return path

    def _resume(self, scheduler, generators: dict) -> tuple[int, dict | None, bool]:
        path = self.checkpoint_path
        if path is None:
            raise ValueError("resume=True needs checkpoint_dir")
        if not path.exists():
            log.info("no checkpoint at %s; starting a fresh run", path)
            return 0, None, False
        ckpt = load_checkpoint(path)
        if ckpt["model_config"] != self.model.config:
            raise ValueError(
                f"{path}: checkpoint was written for another model configuration "
                f"({ckpt['model_config']}) than this one ({self.model.config})"
            )
        self.model.load_state_dict(ckpt["model_state"])
        # optimizer after the scheduler is built: the saved lr/initial_lr win
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        scheduler.load_state_dict(ckpt["scheduler_state"])
        es = self.early_stopping
        es.best_loss, es.best_epoch = ckpt["best_val_loss"], ckpt["best_epoch"]
        es.epochs_without_improvement = ckpt["epochs_without_improvement"]
        best = ckpt["best_model_state"]
        if best is None:
            best = ckpt["model_state"]
        self.history = list(ckpt["history"])
        if ckpt.get("scaler_state"):
            self.scaler.load_state_dict(ckpt["scaler_state"])
        rank_rng = ckpt.get("rank_rng") or []
        if len(rank_rng) == self.ctx.world_size:
            restore_rng_state(rank_rng[self.ctx.rank], generators)
        else:
            restore_rng_state(ckpt["rng"], generators)
            if self.ctx.enabled:  # another world size: re-derive the per-rank streams
                torch.manual_seed(distributed.rank_seed(self.seed + ckpt["epoch"], self.ctx))
        log.info("resumed from %s after epoch %d", path, ckpt["epoch"])
        return ckpt["epoch"], best, bool(ckpt["stopped_early"])

    # ------------------------------------------------------------------ train
    def train(
        self,
        train_loader: DataLoader,
        val_loader: DataLoader | None = None,
        epochs: int = 30,
        resume: bool = False,
        on_epoch_end: Callable[[dict], None] | None = None,
    ) -> pd.DataFrame:
        """Train for up to ``epochs`` epochs, stopping early on the validation loss.

        Parameters
        ----------
        train_loader : torch.utils.data.DataLoader
            Yields batch dicts; under torchrun its ``batch_size`` is the global batch.
        val_loader : torch.utils.data.DataLoader, optional
            Monitored for early stopping; without it the training loss is monitored.
        epochs : int
            Maximum number of epochs.
        resume : bool
            Continue from ``<checkpoint_dir>/last.pt`` when it exists.
        on_epoch_end : callable, optional
            Called with each epoch's history record.

        Returns
        -------
        pandas.DataFrame
            One row per epoch: ``epoch, train_loss, val_loss, lr, seconds``.

        Raises
        ------
        FloatingPointError
            A non-finite loss; the message names the epoch and batch.
        """
        # Over 60 lines: the epoch loop with resume, early stopping, checkpoints and per-epoch logging.
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        try:
            steps_per_epoch = len(train_loader)
        except TypeError:
            raise ValueError("train_loader must have a length (a map-style dataset)") from None
        if self.device.type == "cuda" and not getattr(train_loader, "pin_memory", True):
            log.info("hint: DataLoader(pin_memory=True) speeds up host-to-GPU copies")
        train_loader = distributed.shard_loader(train_loader, self.ctx, self.seed, train=True)
        if val_loader is not None:
            val_loader = distributed.shard_loader(val_loader, self.ctx, self.seed, train=False)
        scheduler = make_scheduler(
            self.optimizer,
            self.scheduler_name,
            total_steps=epochs * steps_per_epoch,
            warmup_fraction=self.warmup_fraction,
        )
        generators = {
            "train_loader": getattr(train_loader, "generator", None),
            "train_sampler": getattr(getattr(train_loader, "sampler", None), "generator", None),
        }
        self.early_stopping = EarlyStopping(self.patience, self.min_delta)
        self.history = []
        start, best_state, stopped = 0, None, False
        if resume:
            start, best_state, stopped = self._resume(scheduler, generators)
        if start == 0:
            seed = distributed.rank_seed(self.seed, self.ctx)  # seed + rank: own dropout masks
            torch.manual_seed(seed)
            np.random.seed(seed)  # noqa: NPY002 - the global state users draw from
            random.seed(seed)

        for epoch in range(start + 1, epochs + 1):
            if stopped:
                break
            began = time.perf_counter()
            sampler = getattr(train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            train_loss = self._train_epoch(train_loader, scheduler, epoch)
            val_loss = self.evaluate(val_loader) if val_loader is not None else math.nan
            if val_loader is not None and not math.isfinite(val_loss):
                raise FloatingPointError(f"validation loss is {val_loss} at epoch {epoch}")
            monitored = val_loss if val_loader is not None else train_loss
            if self.early_stopping.update(monitored, epoch):
                best_state = state_dict_to_cpu(self.model.state_dict())
            stopped = self.early_stopping.should_stop
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - began,
            }
            self.history.append(record)
            if self.checkpoint_path is not None:
                rng = distributed.all_gather_objects(capture_rng_state(generators), self.ctx)
                if self.ctx.is_main:
                    save_checkpoint(
                        self.checkpoint_path,
                        self._checkpoint(epoch, scheduler, best_state, rng, stopped),
                    )
            self._write_history()
            distributed.barrier(self.ctx)
            if self.ctx.is_main:  # one line per epoch in the job log, with or without a TTY
                log.info(
                    "epoch %d/%d: train_loss %.4g, val_loss %.4g, lr %.3g, %.1f s",
                    epoch,
                    epochs,
                    train_loss,
                    val_loss,
                    record["lr"],
                    record["seconds"],
                )
            if on_epoch_end is not None:
                on_epoch_end(record)
            if stopped:
                log.info(
                    "early stopping after epoch %d (best: epoch %d)",
                    epoch,
                    self.early_stopping.best_epoch,
                )

        if best_state is not None:
            self.model.load_state_dict(best_state)
        return pd.DataFrame(self.history, columns=HISTORY_COLUMNS)
