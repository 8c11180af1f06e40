"""Train one experiment of ``config.yaml`` on the shards' train split.

Validation loss on the val split drives early stopping; the test split is never
read here. Writes ``model.pt`` (config + state dict, tokenizer included) and
``history.csv``; per-epoch checkpoints under ``checkpoints/`` let a killed job
resume where it stopped (Snakemake reruns the job; the Trainer picks up
``last.pt``).

Under ``torchrun`` (``gpus > 1``) every rank runs this function: the process group
is joined first, rank 0 alone prepares the checkpoint directory (the others wait),
all ranks train and reach :meth:`Trainer.save_model`'s barrier, and rank 0 writes
``model.pt`` and ``history.csv``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from modalmerge.data.shards.dataset import collate_samples
from modalmerge.io import InputError, atomic_path
from modalmerge.models.ensemble import ModelEnsemble, load_model
from modalmerge.models.generative import adopt_mean
from modalmerge.models.model import MultiModalModel
from modalmerge.models.spread import fit_spread
from modalmerge.models.whitening import fit_whitening
from modalmerge.settings import ExperimentSettings, TrainSettings, ensemble_refusal, to_dict
from modalmerge.stages.common import build_model, experiment_dataset, fit_tokenizer
from modalmerge.training import distributed
from modalmerge.training.device import resolve_device
from modalmerge.training.trainer import Trainer

log = logging.getLogger(__name__)

#: residual draws per validation window when a model calibrates its spread
#: (``calibrate_spread``): the fair CRPS is unbiased at any ensemble size, so a few
#: suffice for one scale, and the validation sampling stays a small part of the job
SPREAD_SAMPLES = 16


def _loader(dataset, batch_size: int, shuffle: bool, seed: int, workers: int, pin: bool):
    """A loader whose batches do not depend on ``workers``.

    Workers are not persistent: each epoch's iterator then draws its worker seed
    from ``generator`` as a worker-less one does, so the shuffle of every epoch
    (and a resumed run's) is the same for 0 or N workers; the files are reopened
    per epoch (lazily, by :class:`~modalmerge.data.shards.dataset.ShardDataset`).
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        persistent_workers=False,
        pin_memory=pin,
        drop_last=False,
        collate_fn=collate_samples,
    )


def _checkpoint_dir(
    out_dir: Path, experiment: ExperimentSettings, settings: TrainSettings, source: Path | None
) -> Path:
    """``out_dir/checkpoints``, emptied when it holds the resume state of another configuration.

    A killed job resumes from its last checkpoint only if the experiment and
    training settings are unchanged, and so is the ``mean_from`` model ``source`` (its
    bytes), whose frozen weights the checkpoint holds; otherwise training starts afresh.
    """
    checkpoints = out_dir / "checkpoints"
    parts = [to_dict(experiment), to_dict(settings)]
    if source is not None:
        parts.append(hashlib.sha256(source.read_bytes()).hexdigest())
    blob = json.dumps(parts, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()
    stamp = checkpoints / "run.json"
    if checkpoints.exists() and (not stamp.exists() or json.loads(stamp.read_text()) != key):
        log.info("discarding checkpoints of another configuration in %s", checkpoints)
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    with atomic_path(stamp) as tmp:
        tmp.write_text(json.dumps(key))
    return checkpoints


def mean_source(model, out_dir: Path) -> Path | None:
    """A residual diffusion model with ``mean_from``: copy the named experiment's trained
    encoder and decoder in as its frozen encoder and mean head (CorrDiff: the regression
    first, then the diffusion on its residuals). The named model is the sibling
    ``out_dir/../<mean_from>/model.pt``, the workflow's ``models/<name>/model.pt``, which
    the train rule lists as an input. Returns its path (None without ``mean_from``)."""
    name = getattr(model.conditioner, "mean_from", None) if model.generative else None
    if name is None:
        return None
    path = out_dir.parent / name / "model.pt"
    if not path.is_file():
        raise InputError(
            path,
            f"mean_from {name!r}: no trained model of that experiment (train it first; "
            "the workflow does so)",
        )
    try:
        adopt_mean(model, load_model(path))  # one model, or a train.ensemble's members
    except ValueError as err:
        raise InputError(path, str(err)) from None
    log.info("encoder and mean head copied (frozen) from %s", path)
    return path


def train_experiment(
    shard_dir: str | Path,
    experiment: ExperimentSettings | dict,
    settings: TrainSettings | dict | None,
    out_dir: str | Path,
    threads: int = 1,
    workers: int | None = None,
) -> Path:
    """Train ``experiment`` (an entry of ``config['experiments']``) with ``settings`` (``config['train']``).

    Either may be its settings object or a mapping (defaults filled, bad values
    refused). The experiment's ``epochs``, ``lr``, ``scheduler`` and ``batch_size`` override
    the train settings'. Returns the path of the saved model. ``threads`` are
    the job's CPUs, shared by its ranks (:func:`~modalmerge.training.distributed.cpu_budget`).
    ``workers``: data-loader worker processes per rank (``train.num_workers``, a resource
    knob the workflow passes as ``--workers``); None takes ``settings.num_workers``, and
    when that is None too, the count ``cpu_budget`` derives. Every count gives the same
    batches in the same order (the shuffle draws in the main process).
    """
    experiment = ExperimentSettings.coerce(experiment)
    settings = experiment.training(TrainSettings.coerce(settings))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # this rank's GPU and the process group first: nothing below races between ranks
    device = resolve_device("auto", distributed.context_from_env().local_rank)
    ctx = distributed.setup(device)
    try:
        workers = settings.num_workers if workers is None else workers
        return _train(shard_dir, experiment, settings, out_dir, (threads, workers), device, ctx)
    finally:
        distributed.teardown()


def _train(shard_dir, experiment, settings, out_dir, cpus, device, ctx) -> Path:
    if not ctx.is_main:  # one log: rank 0's (the others log warnings and errors)
        logging.getLogger("modalmerge").setLevel(logging.WARNING)
    threads, wanted_workers = cpus
    torch_threads, workers = distributed.cpu_budget(threads, ctx, device)
    if wanted_workers is not None:
        if wanted_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {wanted_workers}")
        workers = wanted_workers
    torch.set_num_threads(torch_threads)
    log.info("per rank: %d torch thread(s), %d loader worker(s)", torch_threads, workers)
    refusal = ensemble_refusal(experiment.method, experiment.target)
    if settings.ensemble > 1 and refusal is not None:
        raise ValueError(f"{experiment.name}: ensemble {settings.ensemble}: {refusal}")
    torch.manual_seed(settings.seed)
    condition, target = experiment.condition, experiment.target
    tokenizer = fit_tokenizer(shard_dir) if "text" in (condition, target) else None
    datasets = {
        split: experiment_dataset(shard_dir, split, experiment, tokenizer)
        for split in ("train", "val")
    }
    run = _Run(shard_dir, experiment, settings, tokenizer, datasets, workers, device, ctx)
    if settings.ensemble == 1:
        model_path, history = run.fit(out_dir, out_dir / "model.pt", settings.seed)
    else:
        model_path, history = _train_ensemble(run, out_dir)
    if not ctx.is_main:  # under torchrun only rank 0 writes
        return model_path
    with atomic_path(out_dir / "history.csv") as tmp:
        history.to_csv(tmp, index=False)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # finished: no resume state needed
    for member, part in history.groupby("member") if "member" in history else [(None, history)]:
        name = "" if member is None else f"member {member}: "
        log.info(
            "%sbest validation loss %.4f after %d epochs", name, part["val_loss"].min(), len(part)
        )
    return model_path


def _train_ensemble(run: _Run, out_dir: Path) -> tuple[Path, pd.DataFrame]:
    """``train.ensemble`` members one after another (member k: seed + k), each kept under
    ``checkpoints/member-<k>/`` once trained, so a killed job resumes at the member it was
    training; rank 0 then writes them as one :class:`ModelEnsemble` ``model.pt``."""
    k_members, histories = run.settings.ensemble, []
    if run.ctx.is_main:  # members kept from another configuration are discarded first
        _checkpoint_dir(out_dir, run.experiment, run.settings, None)
    distributed.barrier(run.ctx)
    for k in range(k_members):
        member_dir = out_dir / "checkpoints" / f"member-{k}"
        done = member_dir / "model.pt"
        if done.is_file() and (member_dir / "history.csv").is_file():
            log.info("ensemble member %d of %d: trained before (%s)", k + 1, k_members, done)
            histories.append(pd.read_csv(member_dir / "history.csv"))
            continue
        log.info("ensemble member %d of %d (seed %d)", k + 1, k_members, run.settings.seed + k)
        _, history = run.fit(out_dir, done, run.settings.seed + k, sub=member_dir)
        if run.ctx.is_main:
            with atomic_path(member_dir / "history.csv") as tmp:
                history.to_csv(tmp, index=False)
        histories.append(history)
    model_path = out_dir / "model.pt"
    if run.ctx.is_main:
        members = [
            MultiModalModel.load(out_dir / "checkpoints" / f"member-{k}" / "model.pt")
            for k in range(k_members)
        ]
        ModelEnsemble(members).save(model_path)
    distributed.barrier(run.ctx)
    combined = pd.concat([h.assign(member=k) for k, h in enumerate(histories)], ignore_index=True)
    return model_path, combined[["member", *histories[0].columns]]


@dataclass
class _Run:
    """What every member of one train job shares: data, tokenizer, device, loaders' workers."""

    shard_dir: Path
    experiment: ExperimentSettings
    settings: TrainSettings
    tokenizer: object
    datasets: dict
    workers: int
    device: torch.device
    ctx: object

    def fit(self, out_dir, model_path, seed, sub=None) -> tuple[Path, pd.DataFrame]:
        """Train one model with ``seed`` and save it to ``model_path`` (every rank calls it).

        The torch seed is set right before the model is built (nothing between the job's
        own seeding and here draws from it: a single model's weights are as before).
        ``sub``: an ensemble member's checkpoint directory, inside the ``checkpoints/``
        that :func:`_train_ensemble` prepared (None: a single model's, prepared here)."""
        torch.manual_seed(seed)
        model = build_model(self.shard_dir, self.experiment, self.tokenizer)
        log.info("experiment %s: %s", self.experiment.name, model.config)
        source = mean_source(model, out_dir)
        if getattr(model.conditioner, "whiten", False):  # residual ROI covariance, one pass
            fit_whitening(model, _loader(self.datasets["train"], self.settings.batch_size,
                                         False, seed, 0, False))  # fmt: skip
        if getattr(model.decoder, "tangent", False):  # graph FC in the tangent space
            n = len(self.datasets["train"])
            targets = self.datasets["train"].get_batch(list(range(n)))["target"]
            model.decoder.set_tangent_reference(
                targets[..., targets.shape[-1] - targets.shape[-2] :]
            )
        pin, batch_size = self.device.type == "cuda", self.settings.batch_size
        train_loader = _loader(self.datasets["train"], batch_size, True, seed, self.workers, pin)
        val_loader = (  # validation is short: half the workers (one loader reads at a time)
            _loader(self.datasets["val"], batch_size, False, seed, self.workers // 2, pin)
            if len(self.datasets["val"])
            else None
        )
        checkpoints = out_dir / "checkpoints" if sub is None else sub
        if self.ctx.is_main and sub is None:
            _checkpoint_dir(out_dir, self.experiment, self.settings, source)
        elif self.ctx.is_main:  # inside the checkpoints/ that _train_ensemble prepared
            sub.mkdir(parents=True, exist_ok=True)
        distributed.barrier(self.ctx)
        trainer = Trainer(
            model,
            lr=self.settings.lr,
            scheduler=self.settings.scheduler,
            weight_decay=self.settings.weight_decay,
            patience=self.settings.patience,
            checkpoint_dir=checkpoints,
            device=self.device,
            seed=seed,
            progress=bool(os.environ.get("MODALMERGE_PROGRESS", "")),
        )
        history = trainer.train(train_loader, val_loader, epochs=self.settings.epochs, resume=True)
        fit_spread(
            model,
            _loader(self.datasets["val"], batch_size, False, seed, 0, False),
            n_samples=SPREAD_SAMPLES,
            seed=seed,
        )  # calibrate_spread: on the best weights
        return trainer.save_model(model_path), history  # every rank: it ends in a barrier
