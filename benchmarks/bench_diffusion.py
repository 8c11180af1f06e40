"""Diffusion: training and sampling throughput on CPU, and DDIM steps against CRPS.

    # throughput of the default experiment's model (fresh weights), 1 torch thread
    .venv/bin/python benchmarks/bench_diffusion.py speed
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


def _timed(fn, repeats=5, warmup=2) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), _cpu()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(_cpu() - c)
    return statistics.median(walls), statistics.median(cpus)


def speed(batch: int = 16) -> None:
    torch.set_num_threads(1)
    config = yaml.safe_load(Path("config.yaml").read_text())
    exp = next(e for e in config["experiments"] if e["name"] == EXPERIMENT)
    torch.manual_seed(0)
    model = MultiModalModel(
        condition_type="image", target_type="time_series", condition_encoder=exp["encoder"],
        target_decoder=exp["decoder"], embedding_dim=exp["embedding_dim"],
        num_attention_heads=exp["heads"], conditioning="diffusion",
        condition_shape=(1, 18, 22, 18), target_shape=(50, 16),
        encoder_options=exp["encoder_options"], decoder_options=exp["decoder_options"],
        conditioning_options=exp["method_options"],
    )  # fmt: skip
    x, y = torch.randn(batch, 1, 18, 22, 18), torch.randn(batch, 50, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step():
        terms = model(x, target=y).prediction
        loss = (terms.predicted - terms.wanted).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.eval()
    tokens, mask = model.encode(x)

    @torch.no_grad()
    def denoise():
        model.decoder(y, torch.full((batch,), 500), tokens, mask)

    model.train()
    tw, tc = _timed(train_step)
    model.eval()
    sw, sc = _timed(denoise)
    print(f"parameters: {model.n_parameters()}; batch {batch}; 1 torch thread")
    print(f"training: {batch / tw:.1f} windows/s wall ({tw:.3f} s/step, {tc:.3f} CPU s)")
    print(f"denoiser: {batch / sw:.1f} window-steps/s wall ({sw:.4f} s, {sc:.4f} CPU s)")
    steps = exp["method_options"].get("sample_steps", 20)
    print(f"sampling at {steps} steps: {batch / sw / steps:.1f} samples/s wall")


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
    sub.add_parser("speed")
    curve = sub.add_parser("steps")
    curve.add_argument("model")
    curve.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5, 10, 20, 50])
    curve.add_argument("--samples", type=int, default=8)
    curve.add_argument("--shards", default="results/synthetic/shards")
    curve.add_argument("--seed", type=int, default=0)
    curve.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    args = parser.parse_args()
    if args.what == "speed":
        speed()
    else:
        steps_curve(args.model, args.steps, args.samples, args.shards, args.seed, args.guidance)


if __name__ == "__main__":
    main()
