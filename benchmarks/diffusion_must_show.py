"""The must-show numbers of the diffusion experiment (issue 12) on held-out test subjects.

Reads a finished default run (``make run``): the diffusion experiment's and the
deterministic cross-attention experiment's ``metrics.json``, and the cross-attention
model itself, whose test-window predictions get the same realism ratios as the samples.
Every interval is the seeded percentile bootstrap over held-out subjects
(:mod:`modalmerge.evaluation.intervals`).

    .venv/bin/python benchmarks/diffusion_must_show.py [results/synthetic] [split]

``split`` (default ``test``): the split whose windows the cross-attention model's
realism ratios are taken on; ``val`` for a tree written by ``validation_scores.py``
(whose metrics are on the validation subjects), to choose settings without the test
subjects.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from modalmerge.evaluation.generative import REALISM_STATISTICS, realism_ratios
from modalmerge.evaluation.intervals import bootstrap_ci, paired_difference
from modalmerge.stages.common import collect_split, load_experiment_model

DIFFUSION, XATTN = "image_to_timeseries_diffusion", "image_to_timeseries_xattn"


def _ci(values) -> str:
    low, high = bootstrap_ci(values)
    return f"{np.mean(values):.3f} [{low:.3f}, {high:.3f}]"


def main(root: str = "results/synthetic", split: str = "test") -> None:
    root = Path(root)
    diff = json.loads((root / "eval" / DIFFUSION / "metrics.json").read_text())
    xattn = json.loads((root / "eval" / XATTN / "metrics.json").read_text())
    units = diff["per_unit"]["units"]
    assert units == xattn["per_unit"]["units"], "the two experiments score different subjects"
    d, x = diff["per_unit"]["model"], xattn["per_unit"]["model"]
    rows = [("n held-out subjects", str(len(units)))]
    rows.append(("ensemble-mean r (diffusion)", _ci(d["pearson_r"])))
    rows.append(("r (deterministic cross-attention)", _ci(x["pearson_r"])))
    gap = paired_difference(d["pearson_r"], 0.95 * np.asarray(x["pearson_r"]))
    rows.append(
        ("r_diffusion - 0.95 r_xattn", f"{gap.value:.3f} [{gap.ci_low:.3f}, {gap.ci_high:.3f}]")
    )
    rows.append(("spread-skill", _ci(d["spread_skill"])))
    rows.append(("CRPS (diffusion)", _ci(d["crps"])))
    rows.append(("CRPS (climatology)", _ci(diff["per_unit"]["climatology"]["crps"])))
    c = paired_difference(diff["per_unit"]["climatology"]["crps"], d["crps"])
    rows.append(
        ("CRPS climatology - diffusion", f"{c.value:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]")
    )
    # the deterministic cross-attention model's test windows, scored like the samples
    model, _ = load_experiment_model(root / "models" / XATTN / "model.pt")
    experiment = {"name": XATTN, "condition": "image", "target": "time_series"}
    test = collect_split(root / "shards", split, experiment, model=model)
    tr = float(json.loads((root / "shards" / "manifest.json").read_text()).get("tr") or 1.0)
    per_subject = {k: [] for k in REALISM_STATISTICS}
    for u in units:
        idx = np.flatnonzero(np.asarray(test.subjects) == u)
        found = realism_ratios(test.prediction[idx], test.target[idx], tr)
        for k in REALISM_STATISTICS:
            per_subject[k].append(found[f"realism_ratio_{k}"])
    for k in REALISM_STATISTICS:
        key = f"realism_ratio_{k}"
        rows.append((f"{key}: samples", _ci(d[key])))
        rows.append((f"{key}: diffusion ensemble mean", _ci(d[f"ensemble_mean_{key}"])))
        rows.append((f"{key}: cross-attention", _ci(per_subject[k])))
        rows.append((f"{key}: group mean", _ci(diff["per_unit"]["group_mean"][key])))
    for key in ("fc_sample_true", "fc_sample_group", "fc_true_group", "sample_fc_top1"):
        rows.append((key, _ci(d[key])))
    rows.append(("fc_top1 of the ensemble mean", _ci(d["fc_top1"])))
    print("| quantity | mean [95% CI over subjects] |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
