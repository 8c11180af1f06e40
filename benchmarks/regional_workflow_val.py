"""The workflow's own training (``train_experiment``) of a regional config's first experiment,
scored on the VALIDATION subjects as ``benchmarks/regional_fit.py`` scores its fits.

Checks that the workflow runs the procedure chosen with ``regional_fit.py`` (docs/benchmarks.md,
"Absolute-time read-out"): trains ``experiments[0]`` of ``--config`` (its ``train:`` section
and overrides, optionally ``--scheduler``) on ``<root>/shards`` into ``--out``, then prints the
per-epoch history and the validation MSE and ``planted_link_top1`` (attention of the returned
model, mean over samples and heads, with its permutation null), each link's hit or miss and
peak and margin (the weight on the source minus the best other region), the smallest
margin, the hits per head, and saves that attention per head as ``<split>_attention.npy`` in
``--save-to`` (default ``--out``); ``--score-only`` scores the model already in ``--out``; ``--split test`` scores the test
subjects instead (only for settings already frozen and reported, e.g. a second training seed)::

    nice -n 10 .venv/bin/python benchmarks/regional_workflow_val.py results/regional_tune \\
        --config configs/regional_abs14.yaml --out /tmp/wf_val
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from regional_fit import split  # noqa: E402

from modalmerge.evaluation.planted import planted_link_attention  # noqa: E402
from modalmerge.models import load_model  # noqa: E402
from modalmerge.settings import ExperimentSettings, TrainSettings  # noqa: E402
from modalmerge.stages.train import train_experiment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scheduler", default=None, help="overrides the config's")
    parser.add_argument(
        "--score-only", action="store_true", help="score the model already in --out, no training"
    )
    parser.add_argument("--save-to", type=Path, default=None, help="where val_attention.npy goes")
    parser.add_argument(
        "--split", default="val", help="the subjects scored (test only for a frozen, reported run)"
    )
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    train = config["train"] | ({"scheduler": args.scheduler} if args.scheduler else {})
    experiment = ExperimentSettings.from_dict(config["experiments"][0])
    began = time.time()
    if args.score_only:
        path = args.out / "model.pt"
    else:
        path = train_experiment(
            args.root / "shards", experiment, TrainSettings.from_dict(train), args.out
        )
    if (args.out / "history.csv").exists():  # absent beside a model ensemble_members.py kept
        print(pd.read_csv(args.out / "history.csv").to_string(index=False))
    if not args.score_only:
        cpu = sum(os.times()[:4])
        print(f"trained in {time.time() - began:.0f} s wall, {cpu:.0f} s cpu (user+sys)")
    model = load_model(path)  # one model or a train.ensemble (mean attention over members)
    model.eval()
    xv, yv, ov = split(args.root, args.split)
    links = pd.read_csv(args.root / "raw" / "planted_links.tsv", sep="\t")
    with torch.no_grad():
        out = [model(xv[i], time_offset=ov[i], return_attention=True)
               for i in torch.arange(len(xv)).split(64)]  # fmt: skip
        mse = torch.cat([((o.prediction - yv[i]) ** 2).mean((1, 2))
                         for o, i in zip(out, torch.arange(len(xv)).split(64), strict=True)])  # fmt: skip
        heads = torch.cat([o.attention for o in out]).mean(dim=0).numpy()
    labels = np.arange(1, yv.shape[2] + 1)
    scores, record = planted_link_attention(heads.mean(0), labels, links)
    print(f"{args.split} MSE {float(mse.mean()):.4f} planted_link_top1 {scores['planted_link_top1']:.3f} "
          f"null {scores['planted_link_top1_null']:.3f}")  # fmt: skip
    for link in record["links"]:
        verdict = "hit" if link["peak_label"] == link["source_label"] else "miss"
        print(f"  {verdict:4s} {link['target_label']} <- {link['source_label']} "
              f"(peak {link['peak_label']}, weight on source {link['attention_on_source']:.3f}, "
              f"margin {link['margin']:+.3f} over region {link['runner_up_label']})")  # fmt: skip
    weakest = min(link["margin"] for link in record["links"])
    print(f"smallest margin (weight on the source minus the best other region): {weakest:+.3f}")
    per_head = [planted_link_attention(h, labels, links)[0]["planted_link_top1"] for h in heads]
    print("hits per head", [round(v * len(record["links"])) for v in per_head])
    # (heads, target ROIs, regions), for diagnosis
    (args.save_to or args.out).mkdir(parents=True, exist_ok=True)
    np.save((args.save_to or args.out) / f"{args.split}_attention.npy", heads)


if __name__ == "__main__":
    main()
