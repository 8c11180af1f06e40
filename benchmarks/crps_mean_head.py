"""Does the residual diffusion model's CRPS against the climatology follow its mean head?

The default diffusion model draws ``a mu + s r``: ``mu`` is the frozen cross-attention
model's prediction, ``r`` the denoiser's residual draws. The climatology it is scored
against is the training subjects' windows at the same start, centred on the group-mean
window. If the draws were normal with the right spread around each centre, the CRPS would
be proportional to the RMSE of the centre, so the relative CRPS gain of the model over the
climatology would be about ``1 - sqrt(MSE(mu) / MSE(group mean))``: fixed by how much the
mean head beats the group mean, whatever the denoiser does.

This reads only ``metrics.json`` of workflow trees that were evaluated (no model is run):
per held-out subject, the cross-attention experiment's ``mse`` of the model and of the
group mean, and the diffusion experiment's ``crps`` of the model and of the climatology.
Per tree it prints the mean head's MSE ratio (a ratio of the subjects' means, with its
seeded bootstrap interval), the gain that ratio predicts, the observed relative CRPS gain
and the paired CRPS difference climatology − model with its interval, and the correlation
over subjects of observed and predicted gains. Pooled over the trees, the least-squares
line ``observed = alpha + beta * predicted`` over subjects, and the MSE ratio at which it
crosses zero (the pooled interval depends, in its third decimal, on the order the trees are
named: the seeded bootstrap draws subject indices). It chooses nothing: the trees' test
subjects were all read before.

How far could a mean head go? Per subject, the **rescaled oracle**: the processed
noise-free run (the evaluate stage's ``oracle`` in the cross-attention experiment's
``predictions.npz``: what the subject's truth determines of its observed run) with one
slope and intercept per ROI fitted by least squares to that subject's observed series.
The fit is needed because the noise-free run is z-scored by its own SD, so its scale is
not the observed run's (its raw MSE is above the group mean's); with 2 parameters per
150 volumes it estimates the MSE of the conditional mean given the subject, optimistic by
about 2/150. Per tree the table gives its MSE ratio to the group mean and the share of
that possible gain the mean head reached, ``(1 - ratio(mu)) / (1 - ratio(oracle))``.

    .venv/bin/python benchmarks/crps_mean_head.py \\
        results/diffusion_meancal{,/rep-1,/rep-2}:image_to_timeseries_diffusion_meancal
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from modalmerge.evaluation.intervals import paired_difference, ratio_of_means_ci
from modalmerge.evaluation.summary import read_metrics
from modalmerge.io import InputError, load_arrays

XATTN = "image_to_timeseries_xattn"
DIFFUSION = "image_to_timeseries_diffusion"


def subject_gains(root: Path, diffusion: str, xattn: str) -> dict[str, np.ndarray]:
    """Per held-out subject: MSE of the mean head and of the group mean, CRPS of the
    diffusion model and of the climatology; InputError naming a missing or broken
    ``metrics.json``, ValueError naming the tree if the two score other subjects."""
    records = {}
    for name in (xattn, diffusion):  # InputError naming a missing or broken file
        records[name] = read_metrics(root / "eval" / name / "metrics.json")["per_unit"]
    mean_head, model = records[xattn], records[diffusion]
    if mean_head["units"] != model["units"]:
        raise ValueError(f"{root}: {xattn} and {diffusion} score other held-out subjects")
    found = {
        "mse_model": mean_head["model"]["mse"],
        "mse_group": mean_head["group_mean"]["mse"],
        "crps_model": model["model"]["crps"],
        "crps_climatology": model["climatology"]["crps"],
        "mse_oracle": rescaled_oracle_mse(root / "eval" / xattn / "predictions.npz"),
    }
    return {key: np.asarray(values, dtype=np.float64) for key, values in found.items()}


def rescaled_oracle_mse(path: Path) -> np.ndarray:
    """Per subject, the MSE of the oracle rescaled per ROI to the subject's observed series
    by least squares (module docstring); InputError naming ``path`` when it holds no
    ``oracle`` (real data) or its arrays disagree in shape."""
    arrays = load_arrays(path)
    if "oracle" not in arrays or "target" not in arrays:
        raise InputError(path, "no 'oracle' and 'target' arrays: a synthetic cohort's "
                         "time-series evaluation writes them")  # fmt: skip
    y, m = arrays["target"].astype(np.float64), arrays["oracle"].astype(np.float64)
    if y.shape != m.shape or y.ndim != 3:
        raise InputError(path, f"target {y.shape} and oracle {m.shape} are not one "
                         "(subjects, volumes, ROIs) shape")  # fmt: skip
    yc, mc = y - y.mean(axis=1, keepdims=True), m - m.mean(axis=1, keepdims=True)
    power = (mc**2).sum(axis=1, keepdims=True)
    slope = np.divide((mc * yc).sum(axis=1, keepdims=True), power, where=power > 0,
                      out=np.zeros_like(power))  # fmt: skip
    return ((yc - slope * mc) ** 2).mean(axis=(1, 2))


def predicted_gain(g: dict[str, np.ndarray]) -> np.ndarray:
    """Per subject, ``1 - sqrt(MSE(mu) / MSE(group mean))``: the normal-draws prediction."""
    return 1 - np.sqrt(g["mse_model"] / g["mse_group"])


def observed_gain(g: dict[str, np.ndarray]) -> np.ndarray:
    """Per subject, ``1 - CRPS(model) / CRPS(climatology)``."""
    return 1 - g["crps_model"] / g["crps_climatology"]


def row(label: str, g: dict[str, np.ndarray]) -> str:
    """One table row (module docstring)."""
    ratio = g["mse_model"].mean() / g["mse_group"].mean()
    low, high = ratio_of_means_ci(g["mse_model"], g["mse_group"])
    diff = paired_difference(g["crps_climatology"], g["crps_model"])
    gain = 1 - g["crps_model"].mean() / g["crps_climatology"].mean()
    r = np.corrcoef(predicted_gain(g), observed_gain(g))[0, 1]
    oracle = g["mse_oracle"].mean() / g["mse_group"].mean()
    return (f"| {label} | {len(g['mse_model'])} | {ratio:.3f} [{low:.3f}, {high:.3f}] "
            f"| {1 - np.sqrt(ratio):+.3f} | {gain:+.3f} | {diff.value:+.4f} "
            f"[{diff.ci_low:+.4f}, {diff.ci_high:+.4f}] | {r:.2f} | {oracle:.3f} "
            f"| {(1 - ratio) / (1 - oracle):.2f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "trees", nargs="+", help="workflow trees (results/<name>[/rep-k]), each optionally "
        "with ':<diffusion experiment>'",
    )  # fmt: skip
    parser.add_argument("--xattn", default=XATTN, help="the mean head's experiment")
    args = parser.parse_args(argv)
    print("| tree | n | MSE(mu) / MSE(group mean) | predicted CRPS gain | observed CRPS gain "
          "| CRPS climatology − model | r over subjects | rescaled oracle MSE ratio "
          "| share of the oracle's gain |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    pooled: dict[str, list] = {}
    for tree in args.trees:
        root, _, name = tree.partition(":")
        g = subject_gains(Path(root), name or DIFFUSION, args.xattn)
        print(row(tree, g))
        for key, values in g.items():
            pooled.setdefault(key, []).append(values)
    g = {key: np.concatenate(values) for key, values in pooled.items()}
    print(row("pooled", g))
    beta, alpha = np.polyfit(predicted_gain(g), observed_gain(g), 1)
    zero = -alpha / beta
    print(
        f"\nover subjects: observed = {alpha:+.4f} + {beta:.3f} x predicted; zero at a "
        f"predicted gain of {zero:+.4f}, an MSE ratio of {(1 - zero) ** 2:.3f}"
    )
    oracle = g["mse_oracle"].mean() / g["mse_group"].mean()
    print(
        f"a mean head as good as the rescaled oracle (pooled MSE ratio {oracle:.3f}) would "
        f"gain {alpha + beta * (1 - np.sqrt(oracle)):+.3f} of the climatology's CRPS on the line"
    )


if __name__ == "__main__":
    main()
