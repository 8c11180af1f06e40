"""Choose ``shard.window`` of ``configs/real_demo.yaml`` on the VALIDATION block, never test.

For each window in ``--windows`` the real_demo workflow runs up to the trained
models under ``results/real_demo_sweep/`` (everything but ``shard.window`` and
``dataset.name`` as in the config; with a fixed ``shard.gap`` the blocks, and so
the preprocessed run, are the same for every window), then each experiment is
scored on the validation block by the evaluate stage's own code
(``evaluate_experiment(split="val")``). The window with the highest validation
Pearson r of the cross-attention experiment is chosen; the test block is never
read. Output: ``results/real_demo_sweep/window_sweep.csv`` and a table on stdout.
Run on demand (not a test; about 1-3 min per window on 2 cores)::

    nice -n 10 .venv/bin/python benchmarks/real_demo_window_sweep.py --windows 2 5 10 20
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import yaml

from modalmerge.stages.evaluate import evaluate_experiment

ROOT = Path(__file__).resolve().parents[1]
NAME = "real_demo_sweep"
CHOOSE_BY = "left_to_right_xattn"


def run_window(config: dict, window: int, cores: int) -> Path:
    """Train every experiment of ``config`` with ``shard.window = window``; the results dir."""
    config = {**config, "dataset": {**config["dataset"], "name": NAME}}
    config["shard"] = {**config["shard"], "window": window}
    results = ROOT / "results" / NAME
    path = results / "plan" / f"sweep-window-{window}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    models = [f"results/{NAME}/models/{e['name']}/model.pt" for e in config["experiments"]]
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    subprocess.run(
        [str(ROOT / ".venv/bin/snakemake"), "--cores", str(cores), "--configfile", str(path),
         "--profile", "workflow/profiles/default", *models],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    return results


def score_on_val(config: dict, results: Path, window: int) -> list[dict]:
    """Each experiment's validation-block scores (model and ridge) with this window."""
    rows = []
    for experiment in config["experiments"]:
        out = results / "sweep" / f"window-{window}" / experiment["name"]
        record = evaluate_experiment(
            results / "models" / experiment["name"] / "model.pt",
            results / "shards",
            experiment,
            config["evaluate"],
            out / "metrics.json",
            out / "predictions.npz",
            split="val",
        )
        scores = record["scores"]
        rows.append(
            {
                "window": window,
                "experiment": experiment["name"],
                "val_r_model": round(scores["model"]["pearson_r"], 4),
                "val_r_ridge": round(scores["ridge"]["pearson_r"], 4),
                "val_r_group_mean": round(scores["group_mean"]["pearson_r"], 4),
                "val_homolog_top1": scores["model"].get("homolog_attention_fraction", ""),
                "n_parameters": record["n_parameters"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "real_demo.yaml"))
    parser.add_argument("--windows", type=int, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    rows = []
    for window in args.windows:
        rows += score_on_val(config, run_window(config, window, args.cores), window)
        print(rows[-2:], file=sys.stderr, flush=True)
    out = ROOT / "results" / NAME / "window_sweep.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    best = max((r for r in rows if r["experiment"] == CHOOSE_BY), key=lambda r: r["val_r_model"])
    print("| window | experiment | val r model | val r ridge | val r mean window | val homolog top-1 "
          "| parameters |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r.values()) + " |")
    print(f"chosen window (highest validation r of {CHOOSE_BY}): {best['window']}  ({out})")


if __name__ == "__main__":
    main()
