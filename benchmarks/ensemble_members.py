"""Each member of a ``train.ensemble`` model scored alone, beside the ensemble.

The workflow reports the ensemble (mean prediction, mean attention). How much one fit
would have said is the other half of the evidence: this script splits
``results/<name>/models/<experiment>/model.pt`` into its members, scores each with the
package's own ``evaluate_experiment`` (the evaluate rule's function, same settings, same
truth, same test split) into a scratch folder, and prints per fit the primary score and,
on a planted cohort, ``planted_link_top1`` with its null and each link's hit or miss.
No training; reads only the trained ensemble, the shards and the truth::

    .venv/bin/python benchmarks/ensemble_members.py configs/regional_abs16.yaml \\
        --experiment regions_xattn --scratch /tmp/members
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from modalmerge.io import InputError
from modalmerge.models import ModelEnsemble, load_model
from modalmerge.stages.evaluate import evaluate_experiment


def score(model_path: Path, root: Path, config: dict, experiment: dict, out: Path) -> dict:
    """``evaluate_experiment`` of one model file, as the evaluate rule calls it."""
    out.mkdir(parents=True, exist_ok=True)
    return evaluate_experiment(
        model_path, root / "shards", experiment, config.get("evaluate") or {},
        out / "metrics.json", out / "predictions.npz", truth_dir=root / "truth",
        preprocess=config.get("preprocess") or {}, parcellate=config.get("parcellate") or {},
    )  # fmt: skip


def line(name: str, record: dict) -> str:
    scores = record["scores"]["model"]
    text = f"{name}: r {scores.get('pearson_r', float('nan')):.4f}"
    if "planted_link_top1" in scores:
        links = record["planted_links"]["links"]
        missed = [x for x in links if x["peak_label"] != x["source_label"]]
        hits = len(links) - len(missed)
        misses = [
            f"{x['target_label']}<-{x['source_label']} (peak {x['peak_label']})" for x in missed
        ]
        text += (
            f", planted_link_top1 {scores['planted_link_top1']:.3f} ({hits} of {len(links)}),"
            f" null {scores['planted_link_top1_null']:.3f}; misses: {', '.join(misses) or 'none'}"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--scratch", type=Path, required=True, help="members' files and scores")
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    root = Path("results") / config["dataset"]["name"]
    entries = {e["name"]: e for e in config["experiments"]}
    if args.experiment not in entries:
        raise SystemExit(f"{args.config}: no experiment {args.experiment!r}")
    experiment = entries[args.experiment]
    path = root / "models" / args.experiment / "model.pt"
    ensemble = load_model(path)
    if not isinstance(ensemble, ModelEnsemble):
        raise InputError(path, "a single model, not an ensemble (train.ensemble: 1)")
    for k, member in enumerate(ensemble.members):
        member_path = member.save(args.scratch / f"member-{k}" / "model.pt")
        print(line(f"member {k}", score(member_path, root, config, experiment, member_path.parent)))
    workflow = json.loads((root / "eval" / args.experiment / "metrics.json").read_text())
    print(line(f"ensemble of {len(ensemble)} (the workflow's metrics.json)", workflow))


if __name__ == "__main__":
    main()
