"""The scripts whose output the evidence in docs/benchmarks.md quotes: the pooled
must-show of the diffusion experiment (``benchmarks/diffusion_must_show.py``) and the
pooled paired comparison of two experiments (``benchmarks/paired_pooled.py``).

Their inputs are ``metrics.json`` files written by the project's own writer
(:func:`modalmerge.evaluation.summary.write_metrics`, which checks the schema the
evaluate stage writes), laid out as a workflow tree: ``<tree>/eval/<experiment>/``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from modalmerge.evaluation.generative import REALISM_STATISTICS
from modalmerge.evaluation.summary import write_metrics

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DIFFUSION, XATTN = "image_to_timeseries_diffusion", "image_to_timeseries_xattn"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"benchmark_{name}"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


must_show = _script("diffusion_must_show")
paired_pooled = _script("paired_pooled")


def _write(tree: Path, name: str, units: list[str], model: dict, **predictors) -> Path:
    per_unit = {"units": units, "model": model, **predictors}
    record = {
        "experiment": name,
        "condition": "image",
        "target": "time_series",
        "method": "diffusion" if name == DIFFUSION else "cross_attention",
        "n_test_subjects": len(units),
        "scores": {"model": {k: float(np.mean(v)) for k, v in model.items()}},
        "per_unit": per_unit,
    }
    return write_metrics(tree / "eval" / name / "metrics.json", record)


def _cohort(tree: Path, prefix: str, *, crps_gain, r_xattn=0.5, inter_roi=(1.0, 1.0)):
    """A finished run's two experiments: per subject the diffusion model's r at 0.99 x the
    cross-attention model's, spread-skill 1, the climatology's CRPS ``crps_gain`` above the
    model's, and the samples' realism parts over the truth's (the inter-ROI pair given)."""
    n = len(crps_gain)
    units = [f"{prefix}-{i:02d}" for i in range(n)]
    r_x = np.full(n, r_xattn) + np.linspace(-0.05, 0.05, n)
    crps = np.full(n, 0.17)
    model = {
        "pearson_r": list(0.99 * r_x),
        "spread_skill": [1.0] * n,
        "crps": list(crps),
    }
    for k in REALISM_STATISTICS:
        mine, truth = inter_roi if k == "inter_roi_correlation" else (1.0, 1.0)
        model[f"realism_{k}"] = [mine] * n if np.isscalar(mine) else list(mine)
        model[f"realism_truth_{k}"] = [truth] * n if np.isscalar(truth) else list(truth)
        ratios = np.asarray(model[f"realism_{k}"]) / np.asarray(model[f"realism_truth_{k}"])
        model[f"realism_ratio_{k}"] = list(ratios)
    climatology = {"crps": list(crps + np.asarray(crps_gain))}
    _write(tree, DIFFUSION, units, model, climatology=climatology)
    _write(tree, XATTN, units, {"pearson_r": list(r_x), "mse": [0.09] * n})
    return tree


def _rows(text: str) -> dict[str, list[str]]:
    """The first table of the printed output, by its first cell."""
    table = text.split("\n\n")[0]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    return {c[0]: c[1:] for c in cells[2:]}


def test_pooling_two_cohorts_decides_the_crps_target_on_all_their_subjects(tmp_path, capsys):
    # cohort a beats the climatology clearly; cohort b only by a noisy point estimate,
    # so b misses T4 on its own 6 subjects while the 12 together clear zero
    a = _cohort(tmp_path / "a", "a", crps_gain=[0.010, 0.012, 0.008, 0.011, 0.009, 0.010])
    b = _cohort(tmp_path / "b", "b", crps_gain=[0.012, -0.006, 0.010, -0.005, 0.008, -0.004])
    must_show.main(["--pooled", str(a), str(b)])
    rows = _rows(capsys.readouterr().out)
    assert rows[str(a)][0] == "6" and rows["pooled"][0] == "12"
    assert rows[str(a)][-1] == "4 of 4"
    assert rows[str(b)][-1] == "3 of 4 (missed T4)"
    assert rows["pooled"][-1] == "4 of 4"
    # the pooled CRPS difference is the mean over all 12 subjects
    gain = np.r_[
        [0.010, 0.012, 0.008, 0.011, 0.009, 0.010], [0.012, -0.006, 0.010, -0.005, 0.008, -0.004]
    ]
    assert float(rows["pooled"][4].split(" [")[0]) == pytest.approx(
        gain.mean(), abs=1e-4
    )  # printed to 4 decimals


def test_ratio_of_means_not_mean_of_ratios_decides_the_realism_target(tmp_path):
    # one subject whose true inter-ROI correlation is near zero: its own ratio is huge and
    # drags the mean of the subjects' ratios out of the band; the ratio of means stays near
    # the others' 0.9 (docs/benchmarks.md, "Realism ratios over subjects")
    tree = _cohort(
        tmp_path / "c", "c", crps_gain=[0.01] * 6,
        inter_roi=([0.18, 0.18, 0.18, 0.18, 0.18, 0.05], [0.2, 0.2, 0.2, 0.2, 0.2, 0.005]),
    )  # fmt: skip
    q = must_show.must_show(tree)
    assert must_show.targets(q)["T3"]
    assert not must_show.targets(q, per_subject=True)["T3"]


def test_must_show_targets_follow_each_threshold():
    n = 8
    q = {
        "r_diff": [0.5] * n,
        "r_xattn": [0.5] * n,
        "spread_skill": [1.0] * n,
        "crps": [0.17] * n,
        "crps_clim": list(0.18 + 0.001 * np.arange(n)),
    }
    for k in REALISM_STATISTICS:
        q[f"ratio_{k}"] = [1.0] * n
    assert must_show.targets(q) == {"T1": True, "T2": True, "T3": True, "T4": True}
    assert not must_show.targets({**q, "r_diff": [0.45] * n})["T1"]  # 0.9 x, below 0.95 x
    assert not must_show.targets({**q, "spread_skill": [0.7] * n})["T2"]
    assert not must_show.targets({**q, "ratio_spectral_slope": [1.3] * n})["T3"]
    assert not must_show.targets({**q, "crps": q["crps_clim"]})["T4"]  # no gain at all


def test_options_may_come_in_any_order(tmp_path, capsys):
    a = _cohort(tmp_path / "a", "a", crps_gain=[0.01] * 5)
    b = _cohort(tmp_path / "b", "b", crps_gain=[0.02] * 5)
    must_show.main(["--xattn", XATTN, "--pooled", str(a), str(b)])
    first = capsys.readouterr().out
    must_show.main(["--pooled", str(a), str(b), "--diffusion", DIFFUSION, "--xattn", XATTN])
    assert capsys.readouterr().out == first


def test_must_show_names_the_run_or_the_file_it_cannot_use(tmp_path):
    good = _cohort(tmp_path / "good", "g", crps_gain=[0.01] * 4)
    with pytest.raises(SystemExit, match="no eval/image_to_timeseries_diffusion/metrics.json"):
        must_show.main(["--pooled", str(good), str(tmp_path / "empty")])
    corrupt = _cohort(tmp_path / "corrupt", "c", crps_gain=[0.01] * 4)
    path = corrupt / "eval" / XATTN / "metrics.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(SystemExit, match=f"{path}.*not valid JSON"):
        must_show.main(["--pooled", str(good), str(corrupt)])
    other = _cohort(tmp_path / "other", "o", crps_gain=[0.01] * 4)
    record = json.loads((other / "eval" / XATTN / "metrics.json").read_text())
    record["per_unit"]["units"] = [f"x-{i}" for i in range(4)]
    write_metrics(other / "eval" / XATTN / "metrics.json", record)
    with pytest.raises(SystemExit, match=f"{other}: the two experiments score different"):
        must_show.main(["--pooled", str(other)])
    with pytest.raises(SystemExit):  # --pooled without a run: argparse's usage error
        must_show.main(["--pooled"])


# ---------------------------------------------------------------- paired_pooled


def _pair(tree: Path, prefix: str, a: list[float], b: list[float]) -> Path:
    units = [f"{prefix}-{i}" for i in range(len(a))]
    ridge = {"ridge_parcel": {"pearson_r": [x - 0.1 for x in a]}}
    _write(tree, "A", units, {"pearson_r": a, "mse": [0.1] * len(a)}, **ridge)
    _write(tree, "B", units, {"pearson_r": b, "mse": [0.1] * len(b)})
    return tree


def test_paired_pooled_reports_each_tree_and_all_subjects_together(tmp_path, capsys):
    t1 = _pair(tmp_path / "t1", "s", [0.50, 0.52, 0.48, 0.51], [0.45, 0.46, 0.44, 0.47])
    t2 = _pair(tmp_path / "t2", "u", [0.40, 0.41, 0.39], [0.41, 0.40, 0.40])
    paired_pooled.main(["A", "B", str(t1), str(t2), "--metric", "pearson_r"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    rows = {
        c[0]: c[1:] for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines)
    }
    assert rows[str(t1)][:3] == ["4", "0.5025", "0.4550"]
    assert rows[str(t1)][3].startswith("+0.0475 [")
    low, high = (float(x) for x in rows[str(t1)][3].split("[")[1].rstrip("]").split(","))
    assert 0 < low <= 0.0475 <= high  # every subject's difference is positive
    assert rows["pooled"][0] == "7"
    diff = np.r_[[0.05, 0.06, 0.04, 0.04], [-0.01, 0.01, -0.01]].mean()
    assert float(rows["pooled"][3].split(" [")[0]) == pytest.approx(
        diff, abs=1e-4
    )  # printed to 4 decimals


def test_paired_pooled_compares_a_model_with_a_baseline_of_its_experiment(tmp_path, capsys):
    t = _pair(tmp_path / "t", "s", [0.50, 0.52, 0.48, 0.51], [0.45, 0.46, 0.44, 0.47])
    paired_pooled.main(["A", "A:ridge_parcel", str(t)])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {t}"))
    assert "+0.1000 [+0.1000, +0.1000]" in row  # every subject's model is 0.1 above its ridge
    with pytest.raises(SystemExit, match="has no per-subject 'pearson_r' of 'ridge'"):
        paired_pooled.main(["A", "A:ridge", str(t)])


def test_paired_pooled_refuses_trees_it_cannot_pair(tmp_path):
    t = _pair(tmp_path / "t", "s", [0.5, 0.4], [0.4, 0.3])
    with pytest.raises(SystemExit, match="has no per-subject 'fc_top1'"):
        paired_pooled.main(["A", "B", str(t), "--metric", "fc_top1"])
    record = json.loads((t / "eval" / "B" / "metrics.json").read_text())
    record["per_unit"]["units"] = ["other-0", "other-1"]
    write_metrics(t / "eval" / "B" / "metrics.json", record)
    with pytest.raises(SystemExit, match=f"{t}: A and B score other held-out subjects"):
        paired_pooled.main(["A", "B", str(t)])
    with pytest.raises(SystemExit, match="missing"):
        paired_pooled.main(["A", "C", str(t)])


# ---------------------------------------------------------------- crps_mean_head

crps_mean_head = _script("crps_mean_head")


def test_the_rescaled_oracle_fits_one_slope_and_intercept_per_subject_and_roi(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.standard_normal((3, 150, 4))
    # the noise-free run z-scored by its own SD: the observed run is a scaled, shifted copy
    exact = (target - 0.3) / target.std(axis=1, keepdims=True)
    np.savez(tmp_path / "exact.npz", target=target, oracle=exact)
    assert crps_mean_head.rescaled_oracle_mse(tmp_path / "exact.npz") == pytest.approx(0, abs=1e-20)
    # an oracle that knows nothing: the fit is near flat, its MSE the target's own variance
    np.savez(tmp_path / "blind.npz", target=target, oracle=rng.standard_normal(target.shape))
    blind = crps_mean_head.rescaled_oracle_mse(tmp_path / "blind.npz")
    np.testing.assert_allclose(blind, target.var(axis=1).mean(axis=1), rtol=0.05)
    # a constant oracle ROI (no power) gets slope 0, not a division by zero
    flat = exact.copy()
    flat[:, :, 0] = 1.0
    np.savez(tmp_path / "flat.npz", target=target, oracle=flat)
    mse = crps_mean_head.rescaled_oracle_mse(tmp_path / "flat.npz")
    np.testing.assert_allclose(mse, target[:, :, 0].var(axis=1) / 4)


def test_the_rescaled_oracle_names_a_file_it_cannot_use(tmp_path):
    from modalmerge.io import InputError

    np.savez(tmp_path / "real.npz", target=np.zeros((2, 10, 3)), prediction=np.zeros((2, 10, 3)))
    with pytest.raises(InputError, match="real.npz.*no 'oracle'"):
        crps_mean_head.rescaled_oracle_mse(tmp_path / "real.npz")
    np.savez(tmp_path / "odd.npz", target=np.zeros((2, 10, 3)), oracle=np.zeros((2, 10)))
    with pytest.raises(InputError, match="odd.npz.*not one"):
        crps_mean_head.rescaled_oracle_mse(tmp_path / "odd.npz")
