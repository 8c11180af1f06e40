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
    arrays = np.load(root / "eval" / diffusion / "predictions.npz")
    others = {k: arrays[k] for k in scores if k != "model" and k in arrays}
    if xattn is not None:
        pred = np.load(root / "eval" / XATTN / "predictions.npz")
        value = mmd(pred["prediction"], arrays["target"], found["bandwidth"])
        print(f"| xattn (deterministic) | {value:.4f} |")
        others["xattn"] = pred["prediction"]
    _mmd_subsets(arrays, others, found["bandwidth"])


def _mmd_subsets(arrays, others: dict, bandwidth: float, n_sets: int = 1000) -> None:
    """MMD²(one sample per subject) − MMD²(a deterministic predictor) on random halves of
    the held-out subjects (drawn without replacement: a bootstrap with replacement would
    duplicate images, which biases MMD), 2.5-97.5 percentiles: a conservative interval
    (half the subjects). Needs every held-out subject's kept samples in predictions.npz."""
    samples, subjects = arrays["samples"], arrays["sample_subjects"].tolist()
    keys = arrays["subjects"].tolist()
    if sorted(subjects) != sorted(keys):
        print("(interval skipped: predictions.npz keeps the samples of only some subjects)")
        return
    order = [subjects.index(k) for k in keys]  # samples in the order of the per-subject arrays
    samples, real = samples[order], arrays["target"]
    rng = np.random.default_rng(0)
    half = len(keys) // 2
    diffs = {name: [] for name in others}
    for _ in range(n_sets):
        pick = rng.choice(len(keys), half, replace=False)
        gen = np.mean(
            [mmd(samples[pick, s], real[pick], bandwidth) for s in range(samples.shape[1])]
        )
        for name, images in others.items():
            diffs[name].append(gen - mmd(np.asarray(images)[pick], real[pick], bandwidth))
    print(f"\nMMD² samples − predictor on {n_sets} random halves ({half} subjects), 95 % range:")
    for name, d in diffs.items():
        low, high = np.percentile(d, [2.5, 97.5])
        print(f"| {name} | {np.mean(d):+.4f} [{low:+.4f}, {high:+.4f}] |")


if __name__ == "__main__":
    main(*sys.argv[1:])
