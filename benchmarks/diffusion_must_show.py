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

    .venv/bin/python benchmarks/diffusion_must_show.py --pooled ROOT [ROOT ...]

pools the held-out subjects of several finished runs (independent cohorts, e.g. the
repeats of ``configs/diffusion_repeats.yaml`` and ``configs/diffusion_seed4207.yaml``):
one line per cohort with the four must-show quantities, then the same over all subjects
(the bootstrap resamples subjects across cohorts), and which of the four targets each
meets (T1 r_diff - 0.95 r_xattn above zero, T2 spread-skill in 0.8-1.2, T3 the samples'
four realism ratios in 0.8-1.25, T4 CRPS climatology - diffusion above zero; point
estimates for T2 and T3, the paired intervals for T1 and T4).

A realism ratio over subjects is the ratio of the means of its per-subject parts (the
samples' statistic over the truth's; :func:`modalmerge.evaluation.generative.unit_scores`),
with :func:`modalmerge.evaluation.intervals.ratio_of_means_ci`. Trees evaluated before
the parts were recorded, and any tree with ``--per-subject-realism`` (the definition the
rules written before that change name), use the mean of the subjects' ratios instead.

    .venv/bin/python benchmarks/diffusion_must_show.py --diffusion NAME ...

scores the diffusion experiment ``NAME`` instead of ``image_to_timeseries_diffusion``;
``--xattn NAME`` (before it) takes the deterministic cross-attention experiment ``NAME``
(e.g. a ``train.ensemble``, a diffusion model's ``mean_from`` source) instead of
``image_to_timeseries_xattn`` for T1 and the deterministic realism ratios; and

    .venv/bin/python benchmarks/diffusion_must_show.py --paired NAME_A NAME_B ROOT [ROOT ...]

compares two diffusion experiments of the same runs subject by subject (B - A, paired
bootstrap per cohort and pooled).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from modalmerge.evaluation.generative import (
    REALISM_STATISTICS,
    realism_entries,
    realism_statistics,
)
from modalmerge.evaluation.intervals import bootstrap_ci, paired_difference, ratio_of_means_ci
from modalmerge.stages.common import collect_split, load_experiment_model

DIFFUSION, XATTN = "image_to_timeseries_diffusion", "image_to_timeseries_xattn"


#: T3 as the mean of the subjects' ratios (``--per-subject-realism``), not the ratio of means
PER_SUBJECT = {"on": False}
#: the deterministic cross-attention experiment T1 and the deterministic realism ratios use
REFERENCE = {"xattn": XATTN}


def _ci(values) -> str:
    low, high = bootstrap_ci(values)
    return f"{np.mean(values):.3f} [{low:.3f}, {high:.3f}]"


def _ratio(q: dict[str, list[float]], k: str) -> tuple[float, float, float]:
    """A realism ratio over subjects and its interval: the ratio of the parts' means where
    ``q`` has the parts (and ``--per-subject-realism`` is off), else the subjects' mean."""
    mine, true = q.get(f"part_{k}"), q.get(f"truth_{k}")
    if mine and true and not PER_SUBJECT["on"]:
        return (float(np.mean(mine) / np.mean(true)), *ratio_of_means_ci(mine, true))
    return (float(np.mean(q[f"ratio_{k}"])), *bootstrap_ci(q[f"ratio_{k}"]))


def _ratio_cell(q: dict[str, list[float]], k: str) -> str:
    value, low, high = _ratio(q, k)
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _metrics(root: Path, diffusion: str = DIFFUSION) -> tuple[dict, dict]:
    """The diffusion and cross-attention experiments' ``metrics.json`` of a finished run,
    checked to score the same held-out subjects (SystemExit naming the run otherwise)."""
    found = []
    for name in (diffusion, REFERENCE["xattn"]):
        path = root / "eval" / name / "metrics.json"
        if not path.is_file():
            raise SystemExit(f"{root}: no eval/{name}/metrics.json (run the workflow first)")
        found.append(json.loads(path.read_text()))
    diff, xattn = found
    if diff["per_unit"]["units"] != xattn["per_unit"]["units"]:
        raise SystemExit(f"{root}: the two experiments score different subjects")
    return diff, xattn


def main(root: str = "results/synthetic", split: str = "test", diffusion: str = DIFFUSION) -> None:
    root = Path(root)
    diff, xattn = _metrics(root, diffusion)
    units = diff["per_unit"]["units"]
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
    xattn_name = REFERENCE["xattn"]  # one model or a train.ensemble (its mean prediction)
    model, _ = load_experiment_model(root / "models" / xattn_name / "model.pt")
    experiment = {"name": xattn_name, "condition": "image", "target": "time_series"}
    test = collect_split(root / "shards", split, experiment, model=model)
    tr = float(json.loads((root / "shards" / "manifest.json").read_text()).get("tr") or 1.0)
    xattn_q: dict[str, list[float]] = {}
    for u in units:
        idx = np.flatnonzero(np.asarray(test.subjects) == u)
        true = realism_statistics(test.target[idx], tr)
        found = realism_entries(test.prediction[idx], true, tr)
        for k in REALISM_STATISTICS:
            xattn_q.setdefault(f"ratio_{k}", []).append(found[f"realism_ratio_{k}"])
            xattn_q.setdefault(f"part_{k}", []).append(found[f"realism_{k}"])
            xattn_q.setdefault(f"truth_{k}", []).append(true[k])
    group = diff["per_unit"]["group_mean"]
    for k in REALISM_STATISTICS:
        key = f"realism_ratio_{k}"
        rows.append((f"{key}: samples", _ratio_cell(_quantities(d, k), k)))
        rows.append((f"{key}: diffusion ensemble mean",
                     _ratio_cell(_quantities(d, k, "ensemble_mean_"), k)))  # fmt: skip
        rows.append((f"{key}: cross-attention", _ratio_cell(xattn_q, k)))
        rows.append((f"{key}: group mean", _ratio_cell(_quantities(group, k), k)))
    for key in ("fc_sample_true", "fc_sample_group", "fc_true_group", "sample_fc_top1"):
        rows.append((key, _ci(d[key])))
    rows.append(("fc_top1 of the ensemble mean", _ci(d["fc_top1"])))
    print("| quantity | mean [95% CI over subjects] |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def _quantities(units: dict, k: str, prefix: str = "") -> dict[str, list[float]]:
    """One predictor's per-subject realism ratio of statistic ``k`` and, where recorded,
    its parts, under the keys :func:`_ratio` reads."""
    out = {f"ratio_{k}": units[f"{prefix}realism_ratio_{k}"]}
    truth = units.get(f"{prefix}realism_truth_{k}", units.get(f"realism_truth_{k}"))
    if f"{prefix}realism_{k}" in units and truth is not None:
        out.update({f"part_{k}": units[f"{prefix}realism_{k}"], f"truth_{k}": truth})
    return out


def _must_show(root: Path, diffusion: str = DIFFUSION) -> dict[str, list[float]]:
    """Per-subject must-show quantities of one finished run."""
    diff, xattn = _metrics(root, diffusion)
    d = diff["per_unit"]["model"]
    return {
        "r_diff": d["pearson_r"],
        "r_xattn": xattn["per_unit"]["model"]["pearson_r"],
        "spread_skill": d["spread_skill"],
        "crps": d["crps"],
        "crps_clim": diff["per_unit"]["climatology"]["crps"],
        **{key: v for k in REALISM_STATISTICS for key, v in _quantities(d, k).items()},
        "spread_scale": [diff.get("generative", {}).get("spread_scale", 1.0)],
        "mean_scale": [diff.get("generative", {}).get("mean_scale", 1.0)],
    }


def _targets(q: dict[str, list[float]], gap, crps) -> str:
    """Which must-show targets the per-subject quantities ``q`` meet (module docstring);
    ``gap``, ``crps``: the paired differences r_diff - 0.95 r_xattn and CRPS clim. - model."""
    met = {
        "T1": gap.ci_low > 0,
        "T2": 0.8 <= np.mean(q["spread_skill"]) <= 1.2,
        "T3": all(0.8 <= _ratio(q, k)[0] <= 1.25 for k in REALISM_STATISTICS),
        "T4": crps.ci_low > 0,
    }
    missed = [k for k, ok in met.items() if not ok]
    return f"{4 - len(missed)} of 4" + (f" (missed {', '.join(missed)})" if missed else "")


def pooled(roots: list[str], diffusion: str = DIFFUSION) -> None:
    """The must-show per cohort and over every held-out subject of ``roots``."""
    cohorts = {r: _must_show(Path(r), diffusion) for r in roots}  # each run read once
    shared = set.intersection(*(set(q) for q in cohorts.values()))  # parts: where all have them
    every = {k: sum((q[k] for q in cohorts.values()), []) for k in sorted(shared)}
    print(
        "| cohort | n | r_diff / r_xattn | r_diff - 0.95 r_xattn | spread-skill "
        "| CRPS clim. - diffusion | inter-ROI ratio (samples) | targets |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for label, q in [*cohorts.items(), ("pooled", every)]:
        gap = paired_difference(q["r_diff"], 0.95 * np.asarray(q["r_xattn"]))
        crps = paired_difference(q["crps_clim"], q["crps"])
        ratio = np.mean(q["r_diff"]) / np.mean(q["r_xattn"])
        print(f"| {label} | {len(q['r_diff'])} | {ratio:.3f} x "
              f"| {gap.value:+.3f} [{gap.ci_low:+.3f}, {gap.ci_high:+.3f}] "
              f"| {_ci(q['spread_skill'])} "
              f"| {crps.value:+.4f} [{crps.ci_low:+.4f}, {crps.ci_high:+.4f}] "
              f"| {_ratio_cell(q, 'inter_roi_correlation')} | {_targets(q, gap, crps)} |")  # fmt: skip
    print("\n| cohort | spread scale s / mean scale a (calibrate_spread, calibrate_mean; 1 "
          "without) | samples' realism ratios: " + " / ".join(REALISM_STATISTICS)
          + " |\n|---|---|---|")  # fmt: skip
    for label, q in cohorts.items():
        ratios = " / ".join(f"{_ratio(q, k)[0]:.3f}" for k in REALISM_STATISTICS)
        print(f"| {label} | {q['spread_scale'][0]:.3f} / {q['mean_scale'][0]:.3f} | {ratios} |")


def paired(first: str, second: str, roots: list[str]) -> None:
    """``second`` - ``first`` (two diffusion experiments of the same runs), per subject."""
    found = {name: {r: _must_show(Path(r), name) for r in roots} for name in (first, second)}
    keys = ("r_diff", "spread_skill", "crps", "ratio_inter_roi_correlation")
    print(f"{second} - {first}, paired over subjects:\n")
    print("| cohort | n | " + " | ".join(keys) + " |\n|---|---|" + "---|" * len(keys))
    labels = [*roots, "pooled"]
    for label in labels:
        rows = roots if label == "pooled" else [label]
        cells = []
        for k in keys:
            a = sum((found[first][r][k] for r in rows), [])
            b = sum((found[second][r][k] for r in rows), [])
            d = paired_difference(b, a)
            cells.append(f"{d.value:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]")
        n = sum(len(found[first][r]["r_diff"]) for r in rows)
        print(f"| {label} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    args, name = sys.argv[1:], DIFFUSION
    if "--per-subject-realism" in args:
        PER_SUBJECT["on"], args = True, [a for a in args if a != "--per-subject-realism"]
    if args[:1] == ["--xattn"]:
        REFERENCE["xattn"], args = args[1], args[2:]
    if args[:1] == ["--diffusion"]:
        name, args = args[1], args[2:]
    if args[:1] == ["--pooled"]:
        pooled(args[1:], name)
    elif args[:1] == ["--paired"]:
        paired(args[1], args[2], args[3:])
    else:
        main(*args, diffusion=name)
