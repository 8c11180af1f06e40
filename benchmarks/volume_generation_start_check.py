"""Does the group mean's edge in configs/volume_generation.yaml come from the window start?

Scores, on the test windows of a finished run, two start-agnostic "mean windows" with
the evaluate stage's volume_series metric (:mod:`modalmerge.evaluation.volume_series`):
the mean of every training window, and the training mean window of another, randomly
drawn window start. If both score r ~ 0 while the group mean at the same start scores
clearly above 0, the within-window time course is set by the task's timing, which a
model that does not read the window start cannot predict. Run on demand (not a test)::

    .venv/bin/python benchmarks/volume_generation_start_check.py results/volume_generation
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from modalmerge.evaluation.volume_series import brain_mask, window_scores
from modalmerge.settings import ExperimentSettings
from modalmerge.stages.common import collect_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results/volume_generation")
    parser.add_argument("--config", default="configs/volume_generation.yaml")
    args = parser.parse_args()
    config = yaml.safe_load(open(args.config))
    experiment = ExperimentSettings.coerce(config["experiments"][0])
    shards = args.results / "shards"
    train = collect_split(shards, "train", experiment, None)
    test = collect_split(shards, "test", experiment, None)
    mask = brain_mask(train.target)
    overall = train.target.mean(axis=0)
    starts = np.unique(train.window_start)
    rng = np.random.default_rng(0)
    found = {"every training window": [], "another start's mean window": []}
    for true, start in zip(test.target, test.window_start, strict=True):
        found["every training window"].append(window_scores(overall, true, mask)[0])
        other = rng.choice(starts[starts != start])
        mean = train.target[train.window_start == other].mean(axis=0)
        found["another start's mean window"].append(window_scores(mean, true, mask)[0])
    for name, values in found.items():
        print(f"{name}: pearson_r {np.mean(values):.4f} over {len(values)} test windows")


if __name__ == "__main__":
    main()
