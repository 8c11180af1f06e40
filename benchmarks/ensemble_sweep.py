"""Choose a diffusion experiment's samples per window S and DDIM steps on VALIDATION data.

For each number of DDIM steps, draws the largest S once per validation window (the
evaluate stage's ``draw_samples``, seeded as in the workflow) and scores the first
S of them for every S asked, with the evaluate stage's own code (whole-run
ensemble-mean r, CRPS against the climatological ensemble, spread-skill, realism
ratios) on the validation split: the test subjects are never read. The first S of
S_max samples are distributed as S samples drawn alone (each sample's initial noise
is its own draw), so one drawing serves every S. Prints one table row per (steps, S)
with the paired difference r - 0.95 r_xattn when ``--reference`` names the
deterministic model's validation ``metrics.json`` (``validation_scores.py --reuse``).

    .venv/bin/python benchmarks/ensemble_sweep.py --shards results/synthetic/shards \\
        --candidates cand.yaml --name D45 --model /tmp/val/models/D45/model.pt \\
        --steps 5 10 20 --samples 16 32 64 --out /tmp/sweep [--guidance 0.5] [--eta 1] \\
        --reference /tmp/val/eval/image_to_timeseries_xattn/metrics.json
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

import numpy as np
import yaml

import modalmerge.stages.evaluate as evaluate_stage
import modalmerge.stages.evaluate_samples as evaluate_samples
from modalmerge.evaluation.intervals import bootstrap_ci, paired_difference


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _AtSteps:
    """A generative model whose ``sample`` runs ``steps`` DDIM steps (at ``guidance``, or the
    model's own guidance scale when None, and DDIM ``eta``: 0 deterministic, 1 DDPM-like)."""

    def __init__(self, model, steps: int, guidance: float | None = None, eta: float = 0.0):
        self.model, self.steps, self.guidance, self.eta = model, steps, guidance, eta

    def sample(self, *args, **kwargs):
        return self.model.sample(
            *args, steps=self.steps, guidance=self.guidance, eta=self.eta, **kwargs
        )


def _ci(values) -> str:
    low, high = bootstrap_ci(values)
    return f"{np.mean(values):.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", required=True)
    parser.add_argument("--candidates", required=True, help="YAML list of experiments: entries")
    parser.add_argument("--name", required=True, help="the candidate scored")
    parser.add_argument("--model", required=True, help="its trained model.pt")
    parser.add_argument("--steps", type=int, nargs="+", required=True)
    parser.add_argument("--samples", type=int, nargs="+", required=True)
    parser.add_argument("--seed", type=int, default=0, help="evaluate.sample_seed")
    parser.add_argument(
        "--guidance", type=float, help="classifier-free guidance scale (default: the model's)"
    )
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta (the workflow's: 0)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--reference", help="the cross-attention model's validation metrics.json")
    args = parser.parse_args()
    experiment = next(
        e for e in yaml.safe_load(Path(args.candidates).read_text()) if e["name"] == args.name
    )
    reference = None
    if args.reference:
        reference = json.loads(Path(args.reference).read_text())["per_unit"]
    original = evaluate_samples.draw_samples
    s_max = max(args.samples)
    rows = []
    for steps in args.steps:
        drawn: dict = {}

        def draw(model, split, n_samples, seed, batch_size=16, _steps=steps, _drawn=drawn):
            if "samples" not in _drawn:
                start = _cpu()
                _drawn["samples"], _drawn["attention"] = original(
                    _AtSteps(model, _steps, args.guidance, args.eta), split, s_max, seed, batch_size
                )
                _drawn["cpu"] = _cpu() - start
            return _drawn["samples"][:, :n_samples], _drawn["attention"]

        evaluate_samples.draw_samples = draw
        try:
            for s in sorted(args.samples):
                path = Path(args.out) / f"steps{steps}_S{s}" / "metrics.json"
                start = _cpu()
                record = evaluate_stage.evaluate_experiment(
                    args.model,
                    args.shards,
                    experiment,
                    {"samples": s, "sample_seed": args.seed},
                    path,
                    path.with_suffix(".npz"),
                    split="val",
                )
                scoring = _cpu() - start
                rows.append(_row(record, steps, s, drawn["cpu"] * s / s_max, scoring, reference))
                print(rows[-1], flush=True)
        finally:
            evaluate_samples.draw_samples = original
    header = (
        "| steps | S | ens.-mean r | r - 0.95 r_xattn | spread-skill | CRPS | "
        "CRPS clim. - model | slope ratio | inter-ROI r ratio | sampling CPU s (S of S_max) |"
    )
    print(header + "\n|" + "---|" * 10)
    for row in rows:
        print(row)


def _row(record, steps, s, sampling_cpu, scoring_cpu, reference) -> str:
    unit = record["per_unit"]
    model = unit["model"]
    gap = ""
    if reference is not None:
        assert reference["units"] == unit["units"], "reference scores other subjects"
        d = paired_difference(
            model["pearson_r"], 0.95 * np.asarray(reference["model"]["pearson_r"])
        )
        gap = f"{d.value:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"
    c = paired_difference(unit["climatology"]["crps"], model["crps"])
    return (
        f"| {steps} | {s} | {_ci(model['pearson_r'])} | {gap} | {_ci(model['spread_skill'])} | "
        f"{np.mean(model['crps']):.4f} | {c.value:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}] | "
        f"{np.mean(model['realism_ratio_spectral_slope']):.3f} | "
        f"{np.mean(model['realism_ratio_inter_roi_correlation']):.3f} | "
        f"{sampling_cpu:.1f} (+{scoring_cpu:.1f} scoring) |"
    )


if __name__ == "__main__":
    main()
