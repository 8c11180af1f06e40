"""CPU training throughput of :class:`~modalmerge.training.trainer.Trainer`, against a bare loop.

For each configuration, the same model and data are trained by ``Trainer.train``
and by a reference loop written out by hand (forward, loss, backward, clip,
AdamW step: the least any trainer must do), alternating in the same process so
that both see the same machine load. The ratio Trainer / reference is the
figure to compare across machines; samples/s are reported as measured.
Run on demand (not a test)::

    .venv/bin/python benchmarks/bench_training.py --threads 2 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from modalmerge.models import MultiModalModel
from modalmerge.training.losses import make_loss
from modalmerge.training.trainer import Trainer

CONFIGS = {
    # the seed configuration of the design: image -> time series, resnet50, 512 / 16 heads
    "seed": dict(
        condition_type="image",
        target_type="time_series",
        condition_encoder="resnet50",
        target_decoder="transformer",
        embedding_dim=512,
        num_attention_heads=16,
        condition_shape=(1, 64, 64, 64),
        target_shape=(50, 16),
    ),
    # a small model for quick experiments
    "small": dict(
        condition_type="image",
        target_type="time_series",
        condition_encoder="cnn",
        target_decoder="transformer",
        embedding_dim=64,
        num_attention_heads=4,
        condition_shape=(1, 32, 32, 32),
        target_shape=(50, 16),
        encoder_options={"channels": 8, "n_blocks": 3},
    ),
}


class RandomPairs(Dataset):
    """``n`` random (condition, target) pairs of the given shapes, held in memory."""

    def __init__(self, condition_shape, target_shape, n: int):
        g = torch.Generator().manual_seed(0)
        self.condition = torch.randn(n, *condition_shape, generator=g)
        self.target = torch.randn(n, *target_shape, generator=g)

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int) -> dict:
        return {"condition": self.condition[i], "target": self.target[i]}


def reference_epoch(model: nn.Module, loader: DataLoader) -> float:
    """Train one epoch with a bare loop; return seconds."""
    loss_fn = make_loss(model.target_type)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    began = time.perf_counter()
    for batch in loader:
        output = model(batch["condition"], target=batch["target"])
        loss = loss_fn(output.prediction, batch["target"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return time.perf_counter() - began


def trainer_epoch(model: nn.Module, loader: DataLoader) -> float:
    """Train one epoch with Trainer (no validation, no checkpoint); return seconds."""
    trainer = Trainer(model, lr=1e-4, progress=False, device="cpu")
    began = time.perf_counter()
    trainer.train(loader, None, epochs=1)
    return time.perf_counter() - began


def bench(name: str, batch_size: int, batches: int, repeats: int) -> dict:
    """Median samples/s of Trainer and of the reference loop for config ``name``."""
    torch.manual_seed(0)
    model = MultiModalModel(**CONFIGS[name])
    n = batch_size * batches
    loader = DataLoader(
        RandomPairs(model.condition_shape, model.target_shape, n),
        batch_size=batch_size,
        shuffle=True,
    )
    reference_epoch(
        model,
        DataLoader(
            RandomPairs(model.condition_shape, model.target_shape, batch_size),
            batch_size=batch_size,
        ),
    )
    ref, tr = [], []
    for i in range(repeats):  # alternate, swapping the order, so both see the same load
        for run in (reference_epoch, trainer_epoch)[:: 1 if i % 2 == 0 else -1]:
            (ref if run is reference_epoch else tr).append(n / run(model, loader))
    params = sum(p.numel() for p in model.parameters())
    return {
        "config": name,
        "params_M": params / 1e6,
        "trainer_sps": statistics.median(tr),
        "reference_sps": statistics.median(ref),
        "ratio": statistics.median(t / r for t, r in zip(tr, ref, strict=True)),
    }


def main(argv: list[str] | None = None) -> None:
    """Print samples/s of Trainer and of the reference loop, and their ratio, per config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["small", "seed"], choices=list(CONFIGS))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=3, help="batches per timed epoch")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed epochs")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"CPU training, batch {args.batch_size} x {args.batches} batches, "
        f"{args.repeats} repeats, {args.threads} thread(s), torch {torch.__version__}"
    )
    print(
        f"{'config':<8}{'params M':>10}{'Trainer samples/s':>19}{'reference samples/s':>21}{'ratio':>8}"
    )
    for name in args.configs:
        row = bench(name, args.batch_size, args.batches, args.repeats)
        print(
            f"{row['config']:<8}{row['params_M']:>10.2f}{row['trainer_sps']:>19.2f}"
            f"{row['reference_sps']:>21.2f}{row['ratio']:>8.2f}"
        )


if __name__ == "__main__":
    main()
