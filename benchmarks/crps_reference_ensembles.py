"""Where does the diffusion model's CRPS stand? Reference ensembles around the same mean.

Issue 12 asks the diffusion model's samples to beat a climatological ensemble (the
training subjects' windows at the same start) in CRPS. The default diffusion model is a
residual one: its ensemble mean is the cross-attention model's prediction (the frozen
mean head) and the denoiser draws the residual. This script separates the two parts of
the CRPS: it scores, per held-out subject, ensembles that share the cross-attention
model's prediction as their centre but draw the residual by simple, non-learned rules.
If such an ensemble beats the climatology and the diffusion samples do not, the learned
residual is the part that loses; if none of them beats it, the mean head (what the
anatomy tells about the BOLD) is the limit, and no residual sampler can reach the target.

Ensembles, each scored by the evaluate stage's fair CRPS
(:func:`modalmerge.evaluation.generative.crps_ensemble`), averaged per held-out window,
then per subject:

- ``climatology``: the evaluate stage's (training windows at the same start);
- ``diffusion``: the diffusion experiment's per-subject CRPS read from its
  ``metrics.json`` (the workflow's own samples; with ``--split val`` none);
- ``shifted_climatology``: the climatology re-centred on the model: member ``j`` =
  prediction + (training window ``j`` − mean training window), at the same start. Its
  spread is the training subjects' spread about the group mean, which no model fitted;
- ``training_residuals``: prediction + the training subjects' residuals (truth −
  prediction, in sample) at the same start: a residual bootstrap of the very residuals the
  denoiser was trained on, so it shows what the denoiser's draws could reach without
  learning anything beyond them;
- ``held_out_residuals``: prediction + the residuals (truth − prediction) of held-out
  subjects at the same start: for ``--split test`` the validation subjects'; for
  ``--split val`` the other validation subjects' (leave one subject out);
- ``training_gaussian``: prediction + independent normal draws whose mean and SD per
  (volume in window, ROI) are those of the training residuals at the same start,
  ``--samples`` members, seeded: the same two moments as ``training_residuals``, but
  estimated and drawn from, as any fitted sampler must. Exact draws of a distribution
  (the climatology, the residual bootstraps) score its own CRPS under the fair estimator
  at any ensemble size; a distribution refitted to 45 draws pays for the estimate (about
  1.4 % for a normal one; tests/test_evaluation_generative.py).

Re-centring a set of members on its own mean makes them dependent, which the fair
estimator (built for independent draws) rewards: by about 5 % at 10 members and 1.1 % at
45 (simulated with normal draws; tests/test_evaluation_generative.py). The residual sets
are therefore used as they are; ``shifted_climatology`` is re-centred by its definition, so
its CRPS is optimistic by about 1 %.

Each is compared with the climatology by the paired per-subject difference
(climatology − ensemble: above zero = the ensemble beats it) and its seeded bootstrap
interval, and the diffusion samples with each reference (reference − diffusion: above zero
= the diffusion beats it). With several roots (fresh cohorts) each gets its table and a
last one pools their subjects. Reads no test subject with ``--split val``.

    .venv/bin/python benchmarks/crps_reference_ensembles.py results/synthetic [--split val]
    .venv/bin/python benchmarks/crps_reference_ensembles.py --config configs/diffusion_whiten.yaml \
        results/diffusion_whiten results/diffusion_whiten/rep-1 results/diffusion_whiten/rep-2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from modalmerge.evaluation.generative import crps_ensemble
from modalmerge.evaluation.intervals import bootstrap_ci, paired_difference
from modalmerge.stages.common import collect_split, load_experiment_model

DIFFUSION, XATTN = "image_to_timeseries_diffusion", "image_to_timeseries_xattn"


def _experiment(config: Path, name: str) -> dict:
    entries = yaml.safe_load(config.read_text())["experiments"]
    found = [e for e in entries if e["name"] == name]
    if not found:
        raise SystemExit(f"{config}: no experiment named {name!r}")
    return found[0]


def _at_start(starts: np.ndarray, start: int) -> np.ndarray:
    rows = np.flatnonzero(starts == start)
    if len(rows) < 2:
        raise SystemExit(f"fewer than 2 reference windows start at volume {start}")
    return rows


def _per_subject(values: np.ndarray, subjects: list[str], units: list[str]) -> np.ndarray:
    subjects_arr = np.asarray(subjects)
    return np.array([values[subjects_arr == u].mean() for u in units])


def reference_crps(train, calib, held, samples: int, seed: int, leave_one_out: bool) -> dict:
    """Per-window CRPS of each reference ensemble on ``held`` (SplitArrays with
    ``prediction``); ``calib`` gives the held-out residuals (``leave_one_out``: ``calib`` is
    ``held`` itself and a subject's own windows are left out of its residuals)."""
    rng = np.random.default_rng(seed)
    residual = calib.target.astype(np.float64) - calib.prediction
    calib_subjects = np.asarray(calib.subjects)
    out: dict[str, list[float]] = {
        "climatology": [],
        "shifted_climatology": [],
        "training_residuals": [],
        "held_out_residuals": [],
        "training_gaussian": [],
    }
    for i, (start, truth, centre) in enumerate(
        zip(held.window_start, held.target, held.prediction, strict=True)
    ):
        truth = truth.astype(np.float64)
        at = _at_start(train.window_start, start)
        clim = train.target[at].astype(np.float64)
        out["climatology"].append(float(crps_ensemble(clim, truth).mean()))
        shifted = centre + (clim - clim.mean(axis=0))
        out["shifted_climatology"].append(float(crps_ensemble(shifted, truth).mean()))
        own = clim - train.prediction[at]
        out["training_residuals"].append(float(crps_ensemble(centre + own, truth).mean()))
        noise = rng.standard_normal((samples, *truth.shape))
        draws = centre + own.mean(axis=0) + own.std(axis=0, ddof=1) * noise
        out["training_gaussian"].append(float(crps_ensemble(draws, truth).mean()))
        rows = np.flatnonzero(calib.window_start == start)
        if leave_one_out:
            rows = rows[calib_subjects[rows] != held.subjects[i]]
        if len(rows) < 2:
            raise SystemExit(f"fewer than 2 held-out residual windows start at volume {start}")
        res = residual[rows]
        out["held_out_residuals"].append(float(crps_ensemble(centre + res, truth).mean()))
    return {k: np.asarray(v) for k, v in out.items()}


def per_subject_crps(root: Path, args) -> tuple[list[str], dict[str, np.ndarray]]:
    """Per held-out subject CRPS of every ensemble for one finished run."""
    shards = root / "shards"
    experiment = _experiment(args.config, args.xattn)
    model, tokenizer = load_experiment_model(root / "models" / args.xattn / "model.pt")
    train = collect_split(shards, "train", experiment, tokenizer, model=model)
    val = collect_split(shards, "val", experiment, tokenizer, model=model)
    held = (
        val
        if args.split == "val"
        else collect_split(shards, "test", experiment, tokenizer, model=model)
    )
    units = sorted(set(held.subjects))
    per_window = reference_crps(
        train, val, held, args.samples, args.seed, leave_one_out=args.split == "val"
    )
    per_unit = {k: _per_subject(v, held.subjects, units) for k, v in per_window.items()}
    metrics = root / "eval" / args.diffusion / "metrics.json"
    if args.split == "test" and metrics.exists():
        record = json.loads(metrics.read_text())["per_unit"]
        if record["units"] != units:
            raise SystemExit(f"{metrics}: its held-out units differ from the shards' test split")
        per_unit["diffusion"] = np.asarray(record["model"]["crps"])
        written = np.asarray(record["climatology"]["crps"])
        if not np.allclose(written, per_unit["climatology"], rtol=1e-6, atol=1e-9):
            raise SystemExit(f"{metrics}: its climatology CRPS differs from this script's")
    return units, per_unit


def _table(title: str, per_unit: dict[str, np.ndarray]) -> None:
    print(title)
    print(f"{'ensemble':<20} {'CRPS [95 % CI]':<26} {'climatology − ensemble':<34} p_wilcoxon")
    for name, values in per_unit.items():
        low, high = bootstrap_ci(values)
        line = f"{name:<20} {values.mean():.4f} [{low:.4f}, {high:.4f}]"
        if name != "climatology":
            d = paired_difference(per_unit["climatology"], values)
            line += f"   {d.value:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]  {d.p_wilcoxon:.2g}"
        print(line)
    if "diffusion" in per_unit:
        print("reference − diffusion (above zero: the diffusion samples beat the reference)")
        for name, values in per_unit.items():
            if name != "diffusion":
                d = paired_difference(values, per_unit["diffusion"])
                print(f"  {name:<20} {d.value:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", type=Path, nargs="+", help="finished runs, e.g. results/synthetic")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--xattn", default=XATTN, help="the deterministic (mean head) model")
    parser.add_argument("--diffusion", default=DIFFUSION)
    parser.add_argument("--samples", type=int, default=64, help="training_gaussian members")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the per-subject values as JSON")
    args = parser.parse_args()
    runs = {str(root): per_subject_crps(root, args) for root in args.roots}
    for root, (units, per_unit) in runs.items():
        _table(f"{root} ({args.split}, n = {len(units)} subjects)", per_unit)
    if len(runs) > 1:
        shared = set.intersection(*(set(p) for _, p in runs.values()))
        names = [k for k in next(iter(runs.values()))[1] if k in shared]
        pooled = {k: np.concatenate([p[k] for _, p in runs.values()]) for k in names}
        _table(f"pooled ({args.split}, n = {len(pooled['climatology'])} subjects)", pooled)
    if args.out:
        record = {
            root: {"units": units, **{k: v.tolist() for k, v in per_unit.items()}}
            for root, (units, per_unit) in runs.items()
        }
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
