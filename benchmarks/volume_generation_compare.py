"""Anatomy -> 4D BOLD: the deterministic model, the diffusion model(s) and the group mean side
by side on the same held-out subjects, from the evaluate stage's ``metrics.json`` files.

``summary.csv`` pairs each model with the group mean only; this adds the paired differences
between experiments (diffusion - cross-attention, per held-out subject) and gathers the
4D sample scores (CRPS against the same-start climatology, spread-skill, realism ratios of
the samples, of their ensemble mean, of the deterministic model and of the group mean).
Every interval: the seeded percentile bootstrap over held-out subjects
(:mod:`modalmerge.evaluation.intervals`), paired differences with the Wilcoxon p.

    .venv/bin/python benchmarks/volume_generation_compare.py results/volume_generation/eval \\
        anatomy_to_volumes_xattn anatomy_to_volumes_diffusion

The first experiment named is the reference of the differences. Works as well on a tree
written by ``validation_scores.py`` (``<out>/eval``: validation subjects).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from modalmerge.evaluation.intervals import bootstrap_ci, paired_difference, verdict
from modalmerge.evaluation.volume_series import VOLUME_REALISM


def _ci(values) -> str:
    low, high = bootstrap_ci(values)
    return f"{sum(values) / len(values):.4f} [{low:.4f}, {high:.4f}]"


def _diff(a, b, lower_is_better: bool = False) -> str:
    """``a - b`` with its interval and p; the verdict says whether ``a`` beats ``b`` (for a
    lower-is-better metric: whether the interval lies below zero)."""
    d = paired_difference(a, b)
    said = verdict(paired_difference(b, a) if lower_is_better else d)
    return f"{d.value:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}], p {d.p_wilcoxon:.4f}, {said}"


def main(eval_dir: str, reference: str, *others: str) -> None:
    records = {
        name: json.loads((Path(eval_dir) / name / "metrics.json").read_text())
        for name in (reference, *others)
    }
    units = {name: r["per_unit"]["units"] for name, r in records.items()}
    if len({tuple(u) for u in units.values()}) != 1:
        raise SystemExit(f"the experiments were scored on different subjects: {units}")
    print(f"held-out subjects: {len(units[reference])}")
    ref = records[reference]["per_unit"]
    rows = {"group_mean": ref["group_mean"]} | {
        n: r["per_unit"]["model"] for n, r in records.items()
    }
    for metric in ("pearson_r", "mse"):
        print(f"\n## {metric}")
        for name, unit in rows.items():
            print(f"{name:34s} {_ci(unit[metric])}")
        for name in (reference, *others):
            model = rows[name][metric]
            low = metric == "mse"
            print(f"{name} - group_mean: {_diff(model, rows['group_mean'][metric], low)}")
        for name in others:
            found = _diff(rows[name][metric], rows[reference][metric], metric == "mse")
            print(f"{name} - {reference}: {found}")
    for name in others:
        unit = rows[name]
        if "crps" not in unit:
            continue
        print(f"\n## samples of {name}")
        for key in ("crps", "crps_climatology", "spread_skill", "sample_diversity"):
            print(f"{key:40s} {_ci(unit[key])}")
        print(f"crps_climatology - crps: {_diff(unit['crps_climatology'], unit['crps'])}")
        for stat in VOLUME_REALISM:
            key = f"realism_ratio_{stat}"
            print(
                f"{key}: samples {_ci(unit[key])}; ensemble mean "
                f"{_ci(unit['ensemble_mean_' + key])}; {reference} {_ci(rows[reference][key])}; "
                f"group mean {_ci(rows['group_mean'][key])}"
            )


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
