"""Diffusion: training and sampling throughput on CPU, and DDIM steps against CRPS.

    # throughput of the default experiment's model (fresh weights), 1 torch thread
    .venv/bin/python benchmarks/bench_diffusion.py speed
    # on a GPU, fp32 and bf16 autocast, the GPU config's wider denoiser
    python3 benchmarks/bench_diffusion.py speed --device cuda --batch 64 --config configs/gpu.yaml
    # steps vs CRPS, spread-skill and ensemble-mean r on the VALIDATION split of a
    # trained model (choose sample_steps here, never on test)
    .venv/bin/python benchmarks/bench_diffusion.py steps \\
        results/synthetic/models/image_to_timeseries_diffusion/model.pt --steps 1 2 5 10 20 50

Throughput: one optimizer step of a batch of 16 windows (forward, backward, AdamW), and
one denoiser evaluation of 16 windows (one DDIM step without guidance; guidance
doubles it), each the median of 5 timed repeats after 2 warm-ups, wall and process CPU
seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from modalmerge.evaluation.generative import crps_ensemble, spread_skill
from modalmerge.evaluation.metrics import pearson_per_roi
from modalmerge.models import MultiModalModel
from modalmerge.stages.common import collect_split, load_experiment_model
from modalmerge.stages.evaluate_samples import draw_samples

EXPERIMENT = "image_to_timeseries_diffusion"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(fn, device: torch.device, repeats=5, warmup=2) -> tuple[float, float]:
    """Median wall and process-CPU seconds of ``fn``; on CUDA each call is synchronised."""

    def call():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        call()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), _cpu()
        call()
        walls.append(time.perf_counter() - w)
        cpus.append(_cpu() - c)
    return statistics.median(walls), statistics.median(cpus)


def _model(config: str) -> tuple[MultiModalModel, dict]:
    """The diffusion experiment of ``config`` with fresh weights, at the default shapes."""
    experiments = yaml.safe_load(Path(config).read_text())["experiments"]
    exp = next(e for e in experiments if e["name"] == EXPERIMENT)
    torch.manual_seed(0)
    model = MultiModalModel(
        condition_type="image", target_type="time_series", condition_encoder=exp["encoder"],
        target_decoder=exp["decoder"], embedding_dim=exp["embedding_dim"],
        num_attention_heads=exp["heads"], conditioning="diffusion",
        condition_shape=(1, 18, 22, 18), target_shape=(50, 16),
        encoder_options=exp["encoder_options"], decoder_options=exp["decoder_options"],
        conditioning_options=exp["method_options"],
    )  # fmt: skip
    return model, exp


def _throughput(model, opt, x, y, bf16: bool):
    """Timed training steps and denoiser evaluations (one DDIM step, no guidance) of a batch,
    under bf16 autocast or in fp32."""
    dev = x.device

    def train_step():
        with torch.autocast(dev.type, torch.bfloat16, enabled=bf16):
            terms = model(x, target=y).prediction
            loss = (terms.predicted.float() - terms.wanted.float()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.eval()
    with torch.no_grad():
        tokens, mask = model.encode(x)
    steps = torch.full((len(x),), 500, device=dev)

    @torch.no_grad()
    def denoise():
        with torch.autocast(dev.type, torch.bfloat16, enabled=bf16):
            model.decoder(y, steps, tokens, mask)

    model.train()
    training = _timed(train_step, dev)
    model.eval()
    return training, _timed(denoise, dev)


def speed(batch: int = 16, device: str = "cpu", config: str = "config.yaml") -> None:
    """Training and denoiser throughput; on CUDA in fp32 and under bf16 autocast (what the
    Trainer uses on GPUs with native bf16), with the ratio bf16 / fp32."""
    dev = torch.device(device)
    if dev.type == "cpu":
        torch.set_num_threads(1)
    model, exp = _model(config)
    model.to(dev)
    x = torch.randn(batch, 1, 18, 22, 18, device=dev)
    y = torch.randn(batch, 50, 16, device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps = exp["method_options"].get("sample_steps", 20)
    where = "1 torch thread" if dev.type == "cpu" else torch.cuda.get_device_name(dev)
    print(f"parameters: {model.n_parameters()}; batch {batch}; {config}; {where}")
    rates = {}
    for precision in ["fp32"] if dev.type == "cpu" else ["fp32", "bf16"]:
        (tw, tc), (sw, sc) = _throughput(model, opt, x, y, precision == "bf16")
        rates[precision] = (batch / tw, batch / sw)
        print(
            f"{precision} training: {batch / tw:.1f} windows/s wall ({tw:.4f} s/step, {tc:.3f} CPU s)"
        )
        print(
            f"{precision} denoiser: {batch / sw:.1f} window-steps/s wall ({sw:.4f} s, {sc:.4f} CPU s)"
        )
        print(f"{precision} sampling at {steps} steps: {batch / sw / steps:.1f} samples/s wall")
    if "bf16" in rates:
        (t32, d32), (t16, d16) = rates["fp32"], rates["bf16"]
        print(f"bf16 / fp32 throughput: training {t16 / t32:.2f} x, denoiser {d16 / d32:.2f} x")


def steps_curve(
    model_path: str, steps: list[int], samples: int, shards: str, seed: int, guidance: list[float]
) -> None:
    torch.set_num_threads(1)
    model, _ = load_experiment_model(model_path)
    experiment = {"name": EXPERIMENT, "condition": "image", "target": "time_series"}
    val = collect_split(shards, "val", experiment)
    print("| DDIM steps | guidance | CRPS | spread-skill | ensemble-mean r | sampling s |")
    print("|---|---|---|---|---|---|")
    rows = []
    for g in guidance:
        for n in steps:
            rows.append(_point(model, val, samples, seed, n, g))
    print(json.dumps(rows))


def _point(model, val, samples: int, seed: int, n: int, g: float) -> dict:
    """Sample the validation windows at ``n`` steps and guidance ``g``; print one row."""
    model.conditioner.sample_steps = model.conditioner.check_steps(n)
    model.conditioner.guidance = g
    t = time.perf_counter()
    drawn, _ = draw_samples(model, val, samples, seed)
    seconds = time.perf_counter() - t
    crps = float(crps_ensemble(np.moveaxis(drawn, 1, 0), val.target).mean())
    ss = spread_skill(np.moveaxis(drawn, 1, 0), val.target)
    r = float(pearson_per_roi(drawn.mean(axis=1), val.target).mean())
    print(f"| {n} | {g} | {crps:.4f} | {ss:.3f} | {r:.3f} | {seconds:.1f} |", flush=True)
    return {"steps": n, "guidance": g, "crps": crps, "spread_skill": ss, "r": r, "s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    fast = sub.add_parser("speed")
    fast.add_argument("--device", default="cpu", help="cpu or cuda")
    fast.add_argument("--batch", type=int, default=16)
    fast.add_argument("--config", default="config.yaml", help="e.g. configs/gpu.yaml")
    curve = sub.add_parser("steps")
    curve.add_argument("model")
    curve.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5, 10, 20, 50])
    curve.add_argument("--samples", type=int, default=8)
    curve.add_argument("--shards", default="results/synthetic/shards")
    curve.add_argument("--seed", type=int, default=0)
    curve.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    args = parser.parse_args()
    if args.what == "speed":
        speed(args.batch, args.device, args.config)
    else:
        steps_curve(args.model, args.steps, args.samples, args.shards, args.seed, args.guidance)


if __name__ == "__main__":
    main()
