"""Choose experiments on VALIDATION data: train candidates on existing shards, score the val split.

Each candidate (an ``experiments:`` entry in a YAML list) is trained with the
``train:`` section of ``--config`` (the train stage's code; its early stopping
reads the validation loss, as in the workflow) and scored by the evaluate
stage's code with the validation split in place of the test split, so the test
subjects are never looked at. The records and a ``summary.csv`` (intervals,
paired differences, verdicts) go to ``--out``.

    .venv/bin/python benchmarks/validation_scores.py --shards results/synthetic/shards \\
        --config config.yaml --candidates candidates.yaml --out /tmp/val

``--reuse`` scores models already in ``--out/models/<name>/model.pt`` (e.g. the
default run's cross-attention model) without training them again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

import modalmerge.stages.evaluate as evaluate_stage
from modalmerge.evaluation.summary import summarize
from modalmerge.stages.train import train_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", required=True)
    parser.add_argument("--config", required=True, help="config.yaml: its train: section")
    parser.add_argument("--candidates", required=True, help="YAML list of experiments: entries")
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="score a candidate's --out/models/<name>/model.pt when it exists instead of training",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="generative candidates: samples per window (default: evaluate.samples' default)",
    )
    args = parser.parse_args()
    train = yaml.safe_load(Path(args.config).read_text())["train"]
    candidates = yaml.safe_load(Path(args.candidates).read_text())
    out = Path(args.out)
    metrics = []
    for experiment in candidates:
        model_dir = out / "models" / experiment["name"]
        if not (args.reuse and (model_dir / "model.pt").exists()):
            train_experiment(args.shards, experiment, train, model_dir, threads=1)
        path = out / "eval" / experiment["name"] / "metrics.json"
        evaluate_stage.evaluate_experiment(
            model_dir / "model.pt",
            args.shards,
            experiment,
            {} if args.samples is None else {"samples": args.samples},
            path,
            path.with_suffix(".npz"),
            split="val",
        )
        metrics.append(path)
    summarize(metrics, out / "summary.csv")
    print(out / "summary.csv")


if __name__ == "__main__":
    main()
