"""The image-target diffusion experiment (issue 12 item 3, images) on held-out test subjects.

Reads a finished run of ``configs/image_diffusion.yaml``: the diffusion experiment's and
the deterministic cross-attention experiment's ``metrics.json`` and ``predictions.npz``.
Prints, per predictor, SSIM and PSNR (mean and 95 % seeded bootstrap interval over held-out
subjects), the paired differences of the diffusion model's sample mean against the
deterministic model and the baselines, the diversity between samples, and the image MMD of
every predictor at the diffusion evaluation's bandwidth (the deterministic model's is
computed here from its per-subject predictions, against the same real held-out images).

    .venv/bin/python benchmarks/image_diffusion_report.py [results/image_diffusion] [split]

``split`` (default ``test``) only labels the output: a tree written by
``validation_scores.py`` holds validation-subject metrics under the same names.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from modalmerge.evaluation.generative import mmd
from modalmerge.evaluation.intervals import bootstrap_ci, paired_difference

DIFFUSION, XATTN = "timeseries_to_image_diffusion", "timeseries_to_image_xattn"


def _ci(values) -> str:
    low, high = bootstrap_ci(values)
    return f"{np.mean(values):.4f} [{low:.4f}, {high:.4f}]"


def _diff(a, b) -> str:
    d = paired_difference(a, b)
    verdict = "beats" if d.ci_low > 0 else ("worse" if d.ci_high < 0 else "no difference shown")
    return f"{d.value:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}] ({verdict})"


def main(root: str = "results/image_diffusion", split: str = "test", diffusion=DIFFUSION) -> None:
    root = Path(root)
    diff = json.loads((root / "eval" / diffusion / "metrics.json").read_text())
    units = diff["per_unit"]["units"]
    per_unit = {k: v for k, v in diff["per_unit"].items() if k != "units"}
    xattn_path = root / "eval" / XATTN / "metrics.json"
    xattn = json.loads(xattn_path.read_text()) if xattn_path.exists() else None
    if xattn is not None:
        assert xattn["per_unit"]["units"] == units, "the experiments score different subjects"
        per_unit = {"diffusion": per_unit.pop("model"), "xattn": xattn["per_unit"]["model"],
                    **per_unit}  # fmt: skip
    else:
        per_unit = {"diffusion": per_unit.pop("model"), **per_unit}
    print(f"{split} subjects: {len(units)}")
    print("| predictor | SSIM | PSNR (dB) |")
    print("|---|---|---|")
    for name, m in per_unit.items():
        print(f"| {name} | {_ci(m['ssim'])} | {_ci(m['psnr'])} |")
    print("\npaired differences, diffusion sample mean - other (95 % CI)")
    print("| other | SSIM | PSNR (dB) |")
    print("|---|---|---|")
    d = per_unit["diffusion"]
    for name, m in per_unit.items():
        if name != "diffusion":
            print(f"| {name} | {_diff(d['ssim'], m['ssim'])} | {_diff(d['psnr'], m['psnr'])} |")
    if xattn is not None:
        x = per_unit["xattn"]
        for name, m in per_unit.items():
            if name not in ("diffusion", "xattn"):
                print(f"xattn - {name}: SSIM {_diff(x['ssim'], m['ssim'])}")
    scores = diff["scores"]
    print(f"\nsample diversity: {_ci(d['sample_diversity'])}")
    found = diff["image_mmd"]
    model = scores["model"]
    print(f"\nimage MMD^2 (Gaussian kernel, bandwidth {found['bandwidth']:.3f} = "
          f"{found['bandwidth_rule']}; {found['n_real_test']} real held-out images)")  # fmt: skip
    print("| set | MMD^2 |")
    print("|---|---|")
    print(f"| real training vs real held-out (reference) | {model['image_mmd_reference']:.4f} |")
    sets = f"mean ± SD over {found['n_sets']} sets"
    print(f"| diffusion: one sample per subject ({sets}) | {model['image_mmd']:.4f} ± "
          f"{model['image_mmd_sd']:.4f} |")  # fmt: skip
    print(f"| diffusion: sample mean | {model['image_mmd_sample_mean']:.4f} |")
    for name, s in scores.items():
        if name != "model" and "image_mmd" in s:
            print(f"| {name} | {s['image_mmd']:.4f} |")
    if xattn is not None:
        pred = np.load(root / "eval" / XATTN / "predictions.npz")
        real = np.load(root / "eval" / diffusion / "predictions.npz")["target"]
        value = mmd(pred["prediction"], real, found["bandwidth"])
        print(f"| xattn (deterministic) | {value:.4f} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
