"""GPU training throughput: the chosen mixed precision (+ torch.compile) against fp32 eager.

Trains the image -> time-series model with :class:`~modalmerge.training.trainer.Trainer` on
CUDA, in one process, twice in turn: first as the train stage would on this GPU (autocast in
the precision :func:`~modalmerge.training.device.select_precision` picks, bf16 on compute
capability >= 8.0, fp16 + GradScaler below; ``torch.compile`` unless ``--no-compile``), then
in fp32 eager (no autocast, no compile, TF32 off). Both see the same model initialisation
and the same in-memory random data; samples/s are measured after a warm-up epoch (which
also compiles) with the GPU synchronised, and the ratio fast / fp32 is the figure to carry
across machines. Exits with status 1 and a message on a machine without CUDA. Run on a GPU
node (not a test)::

    .venv/bin/python benchmarks/bench_train_gpu.py                      # the seed model
    .venv/bin/python benchmarks/bench_train_gpu.py --config workflow --batch-size 16

Configurations: ``seed`` (the design's seed model: resnet50 encoder, embedding 512,
16 heads; image (1, 64, 64, 64) -> series (50, 16)) and ``workflow`` (config.yaml's
``image_to_timeseries_xattn``: cnn encoder with 8 channels, embedding 64, 4 heads, same
shapes).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import CONFIGS as TRAINING_CONFIGS  # noqa: E402
from bench_training import RandomPairs  # noqa: E402

CONFIGS = {
    "seed": TRAINING_CONFIGS["seed"],  # the design's resnet50, 512 / 16 heads
    "workflow": dict(
        condition_type="image",
        target_type="time_series",
        condition_encoder="cnn",
        target_decoder="transformer",
        embedding_dim=64,
        num_attention_heads=4,
        condition_shape=(1, 64, 64, 64),
        target_shape=(50, 16),
        encoder_options={"channels": 8},
        decoder_options={"query": "roi"},
    ),
}


def _run(config: dict, data, args, amp: str, compile_: bool) -> dict:
    from modalmerge.models import MultiModalModel
    from modalmerge.training.trainer import Trainer

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 eager means fp32, not TF32
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = MultiModalModel(**config)
    trainer = Trainer(model, lr=1e-4, amp=amp, compile=compile_, progress=False, seed=0)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, pin_memory=True)
    trainer.train(loader, epochs=1)  # warm-up: cuDNN autotuning, compilation
    torch.cuda.synchronize()
    began = time.perf_counter()
    history = trainer.train(loader, epochs=args.epochs)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    return {
        "precision": trainer.precision,
        "compile": compile_,
        "samples_per_s": len(data) * args.epochs / seconds,
        "seconds": seconds,
        "final_train_loss": float(history["train_loss"].iloc[-1]),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="seed")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--samples", type=int, default=256, help="samples per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (after 1 warm-up)")
    parser.add_argument("--amp", default="auto", help="precision of the fast run (auto/bf16/fp16)")
    parser.add_argument("--no-compile", action="store_true", help="fast run without torch.compile")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        build = torch.version.cuda or "none (a CPU-only build)"
        print(
            f"bench_train_gpu: no CUDA device here (torch {torch.__version__}, CUDA build: "
            f"{build}); run it on a GPU node with a CUDA build of torch",
            file=sys.stderr,
        )
        return 1
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = CONFIGS[args.config]
    data = RandomPairs(config["condition_shape"], config["target_shape"], args.samples)
    fast = _run(config, data, args, args.amp, not args.no_compile)
    torch.cuda.reset_peak_memory_stats()
    fp32 = _run(config, data, args, "off", False)
    report = {
        "gpu": torch.cuda.get_device_name(),
        "capability": ".".join(map(str, torch.cuda.get_device_capability())),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "config": args.config,
        "batch_size": args.batch_size,
        "samples": args.samples,
        "epochs": args.epochs,
        "fast": fast,
        "fp32_eager": fp32,
        "speedup": fast["samples_per_s"] / fp32["samples_per_s"],
    }
    print(json.dumps(report, indent=2))
    print(
        f"| {report['gpu']} | {args.config} | {args.batch_size} "
        f"| {fast['precision']}{' + compile' if fast['compile'] else ''} "
        f"{fast['samples_per_s']:.1f} | fp32 eager {fp32['samples_per_s']:.1f} "
        f"| {report['speedup']:.2f}x |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
