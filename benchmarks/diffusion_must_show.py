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
(the bootstrap resamples subjects across cohorts, so the pooled intervals depend, in their
third decimal, on the order the runs are named: quote the command), and which of the four
targets each meets (T1 r_diff - 0.95 r_xattn above zero, T2 spread-skill in 0.8-1.2, T3 the samples'
four realism ratios in 0.8-1.25, T4 CRPS climatology - diffusion above zero; point
estimates for T2 and T3, the paired intervals for T1 and T4).

A realism ratio over subjects is the ratio of the means of its per-subject parts (the
samples' statistic over the truth's; :func:`modalmerge.evaluation.generative.unit_scores`),
with :func:`modalmerge.evaluation.intervals.ratio_of_means_ci`. Trees evaluated before
the parts were recorded, and any tree with ``--per-subject-realism`` (the definition the
rules written before that change name), use the mean of the subjects' ratios instead.

    .venv/bin/python benchmarks/diffusion_must_show.py --diffusion NAME ...

scores the diffusion experiment ``NAME`` instead of ``image_to_timeseries_diffusion``;
``--xattn NAME`` takes the deterministic cross-attention experiment ``NAME``
(e.g. a ``train.ensemble``, a diffusion model's ``mean_from`` source) instead of
``image_to_timeseries_xattn`` for T1 and the deterministic realism ratios; and

    .venv/bin/python benchmarks/diffusion_must_show.py --paired NAME_A NAME_B ROOT [ROOT ...]

compares two diffusion experiments of the same runs subject by subject (B - A, paired
bootstrap per cohort and pooled). Options may come in any order. The verdict logic
(:func:`targets`, :func:`pool`) is tested in ``tests/test_benchmark_evidence.py``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modalmerge.evaluation.generative import (
    REALISM_STATISTICS,
    realism_entries,
    realism_statistics,
)
from modalmerge.evaluation.intervals import bootstrap_ci, paired_difference, ratio_of_means_ci
from modalmerge.evaluation.summary import read_metrics
from modalmerge.stages.common import collect_split, load_experiment_model

DIFFUSION, XATTN = "image_to_timeseries_diffusion", "image_to_timeseries_xattn"


@dataclass(frozen=True)
class Options:
    """What to score: the diffusion experiment, the deterministic cross-attention
    experiment T1 and the deterministic realism ratios use, and whether T3 is the mean of
    the subjects' ratios (``--per-subject-realism``) instead of the ratio of their means."""

    diffusion: str = DIFFUSION
    xattn: str = XATTN
    per_subject: bool = False


def _ci(values) -> str:
    low, high = bootstrap_ci(values)
    return f"{np.mean(values):.3f} [{low:.3f}, {high:.3f}]"


def _ratio(
    q: dict[str, list[float]], k: str, per_subject: bool = False
) -> tuple[float, float, float]:
    """A realism ratio over subjects and its interval: the ratio of the parts' means where
    ``q`` has the parts (and ``per_subject`` is off), else the subjects' mean."""
    mine, true = q.get(f"part_{k}"), q.get(f"truth_{k}")
    if mine and true and not per_subject:
        return (float(np.mean(mine) / np.mean(true)), *ratio_of_means_ci(mine, true))
    return (float(np.mean(q[f"ratio_{k}"])), *bootstrap_ci(q[f"ratio_{k}"]))


def _ratio_cell(q: dict[str, list[float]], k: str, per_subject: bool = False) -> str:
    value, low, high = _ratio(q, k, per_subject)
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _metrics(root: Path, opts: Options) -> tuple[dict, dict]:
    """The diffusion and cross-attention experiments' ``metrics.json`` of a finished run,
    read through the project's loader and checked to score the same held-out subjects
    (SystemExit naming the run or the file otherwise)."""
    found = []
    for name in (opts.diffusion, opts.xattn):
        path = root / "eval" / name / "metrics.json"
        if not path.is_file():
            raise SystemExit(f"{root}: no eval/{name}/metrics.json (run the workflow first)")
        try:
            record = read_metrics(path)
        except ValueError as exc:  # InputError: the file and its fault, one line
            raise SystemExit(f"error: {exc}") from None
        if "per_unit" not in record:
            raise SystemExit(f"{path}: no per-subject scores (per_unit)")
        found.append(record)
    diff, xattn = found
    if diff["per_unit"]["units"] != xattn["per_unit"]["units"]:
        raise SystemExit(f"{root}: the two experiments score different subjects")
    return diff, xattn


def _xattn_realism(root: Path, units: list, split: str, xattn: str) -> dict[str, list[float]]:
    """The deterministic cross-attention model's ``split`` windows, scored like the samples:
    per subject of ``units``, the realism ratio and its parts (keys of :func:`_ratio`)."""
    model, _ = load_experiment_model(root / "models" / xattn / "model.pt")  # or an ensemble
    experiment = {"name": xattn, "condition": "image", "target": "time_series"}
    test = collect_split(root / "shards", split, experiment, model=model)
    tr = float(json.loads((root / "shards" / "manifest.json").read_text()).get("tr") or 1.0)
    out: dict[str, list[float]] = {}
    for u in units:
        idx = np.flatnonzero(np.asarray(test.subjects) == u)
        true = realism_statistics(test.target[idx], tr)
        found = realism_entries(test.prediction[idx], true, tr)
        for k in REALISM_STATISTICS:
            out.setdefault(f"ratio_{k}", []).append(found[f"realism_ratio_{k}"])
            out.setdefault(f"part_{k}", []).append(found[f"realism_{k}"])
            out.setdefault(f"truth_{k}", []).append(true[k])
    return out


def _difference_cell(d, digits: int = 3) -> str:
    return f"{d.value:.{digits}f} [{d.ci_low:.{digits}f}, {d.ci_high:.{digits}f}]"


def single(root: Path, split: str = "test", opts: Options = Options()) -> None:
    """One finished run's must-show table, with the deterministic realism ratios."""
    diff, xattn = _metrics(root, opts)
    units = diff["per_unit"]["units"]
    d, x = diff["per_unit"]["model"], xattn["per_unit"]["model"]
    climatology = diff["per_unit"]["climatology"]["crps"]
    rows = [
        ("n held-out subjects", str(len(units))),
        ("ensemble-mean r (diffusion)", _ci(d["pearson_r"])),
        ("r (deterministic cross-attention)", _ci(x["pearson_r"])),
        ("r_diffusion - 0.95 r_xattn",
         _difference_cell(paired_difference(d["pearson_r"], 0.95 * np.asarray(x["pearson_r"])))),
        ("spread-skill", _ci(d["spread_skill"])),
        ("CRPS (diffusion)", _ci(d["crps"])),
        ("CRPS (climatology)", _ci(climatology)),
        ("CRPS climatology - diffusion", _difference_cell(paired_difference(climatology, d["crps"]))),
    ]  # fmt: skip
    xattn_q = _xattn_realism(root, units, split, opts.xattn)
    group = diff["per_unit"]["group_mean"]
    for k in REALISM_STATISTICS:
        key = f"realism_ratio_{k}"
        for label, q in [
            ("samples", _quantities(d, k)),
            ("diffusion ensemble mean", _quantities(d, k, "ensemble_mean_")),
            ("cross-attention", xattn_q),
            ("group mean", _quantities(group, k)),
        ]:
            rows.append((f"{key}: {label}", _ratio_cell(q, k, opts.per_subject)))
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


def must_show(root: Path, opts: Options = Options()) -> dict[str, list[float]]:
    """Per-subject must-show quantities of one finished run."""
    diff, xattn = _metrics(root, opts)
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


def targets(q: dict[str, list[float]], per_subject: bool = False) -> dict[str, bool]:
    """Which of issue 12's four targets the per-subject quantities ``q`` meet (module
    docstring): T1 and T4 by their paired intervals, T2 and T3 by point estimates."""
    gap = paired_difference(q["r_diff"], 0.95 * np.asarray(q["r_xattn"]))
    crps = paired_difference(q["crps_clim"], q["crps"])
    return {
        "T1": gap.ci_low > 0,
        "T2": 0.8 <= np.mean(q["spread_skill"]) <= 1.2,
        "T3": all(0.8 <= _ratio(q, k, per_subject)[0] <= 1.25 for k in REALISM_STATISTICS),
        "T4": crps.ci_low > 0,
    }


def _targets_cell(met: dict[str, bool]) -> str:
    missed = [k for k, ok in met.items() if not ok]
    return f"{4 - len(missed)} of 4" + (f" (missed {', '.join(missed)})" if missed else "")


def pool(cohorts: dict[str, dict[str, list[float]]]) -> dict[str, list[float]]:
    """Every held-out subject of the cohorts together (the keys all of them have)."""
    shared = set.intersection(*(set(q) for q in cohorts.values()))
    return {k: sum((q[k] for q in cohorts.values()), []) for k in sorted(shared)}


def pooled(roots: list[str], opts: Options = Options()) -> None:
    """The must-show per cohort and over every held-out subject of ``roots``."""
    cohorts = {r: must_show(Path(r), opts) for r in roots}  # each run read once
    print(
        "| cohort | n | r_diff / r_xattn | r_diff - 0.95 r_xattn | spread-skill "
        "| CRPS clim. - diffusion | inter-ROI ratio (samples) | targets |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for label, q in [*cohorts.items(), ("pooled", pool(cohorts))]:
        gap = paired_difference(q["r_diff"], 0.95 * np.asarray(q["r_xattn"]))
        crps = paired_difference(q["crps_clim"], q["crps"])
        ratio = np.mean(q["r_diff"]) / np.mean(q["r_xattn"])
        print(f"| {label} | {len(q['r_diff'])} | {ratio:.3f} x "
              f"| {gap.value:+.3f} [{gap.ci_low:+.3f}, {gap.ci_high:+.3f}] "
              f"| {_ci(q['spread_skill'])} "
              f"| {crps.value:+.4f} [{crps.ci_low:+.4f}, {crps.ci_high:+.4f}] "
              f"| {_ratio_cell(q, 'inter_roi_correlation', opts.per_subject)} "
              f"| {_targets_cell(targets(q, opts.per_subject))} |")  # fmt: skip
    print("\n| cohort | spread scale s / mean scale a (calibrate_spread, calibrate_mean; 1 "
          "without) | samples' realism ratios: " + " / ".join(REALISM_STATISTICS)
          + " |\n|---|---|---|")  # fmt: skip
    for label, q in cohorts.items():
        ratios = " / ".join(f"{_ratio(q, k, opts.per_subject)[0]:.3f}" for k in REALISM_STATISTICS)
        print(f"| {label} | {q['spread_scale'][0]:.3f} / {q['mean_scale'][0]:.3f} | {ratios} |")


def paired(first: str, second: str, roots: list[str], opts: Options = Options()) -> None:
    """``second`` - ``first`` (two diffusion experiments of the same runs), per subject."""
    found = {
        name: {r: must_show(Path(r), Options(name, opts.xattn, opts.per_subject)) for r in roots}
        for name in (first, second)
    }
    keys = ("r_diff", "spread_skill", "crps", "ratio_inter_roi_correlation")
    print(f"{second} - {first}, paired over subjects:\n")
    print("| cohort | n | " + " | ".join(keys) + " |\n|---|---|" + "---|" * len(keys))
    for label in [*roots, "pooled"]:
        rows = roots if label == "pooled" else [label]
        cells = []
        for k in keys:
            a = sum((found[first][r][k] for r in rows), [])
            b = sum((found[second][r][k] for r in rows), [])
            d = paired_difference(b, a)
            cells.append(f"{d.value:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]")
        n = sum(len(found[first][r]["r_diff"]) for r in rows)
        print(f"| {label} | {n} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", help="finished runs; one run and an optional split "
                        "(default test) without --pooled/--paired")  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--pooled", action="store_true", help="per cohort and pooled")
    mode.add_argument("--paired", nargs=2, metavar=("NAME_A", "NAME_B"),
                      help="two diffusion experiments of the same runs, B - A")  # fmt: skip
    parser.add_argument("--diffusion", default=DIFFUSION, help="the diffusion experiment")
    parser.add_argument("--xattn", default=XATTN, help="the deterministic cross-attention one")
    parser.add_argument("--per-subject-realism", action="store_true",
                        help="T3 as the mean of the subjects' ratios")  # fmt: skip
    args = parser.parse_args(argv)
    opts = Options(args.diffusion, args.xattn, args.per_subject_realism)
    if args.pooled or args.paired:
        if not args.roots:
            parser.error("name at least one finished run")
        if args.pooled:
            pooled(args.roots, opts)
        else:
            paired(*args.paired, args.roots, opts)
    elif len(args.roots) > 2:
        parser.error("one run and an optional split; --pooled for several runs")
    else:
        root = args.roots[0] if args.roots else "results/synthetic"
        single(Path(root), args.roots[1] if len(args.roots) == 2 else "test", opts)


if __name__ == "__main__":
    main()
