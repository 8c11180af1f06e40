"""The Snakemake workflow end to end on the tiny config, and what reruns after an edit.

One session-scoped run of the whole DAG (about a minute on 2 cores) in a scratch
copy of the project; the rerun tests then use dry runs against its outputs.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from workflow_utils import (
    copy_project,
    load_yaml,
    planned_jobs,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.slow
PROJECT = Path(__file__).resolve().parents[1]
PRIORITY_TARGETS = PROJECT / "workflow" / "priority_targets.py"  # make run's --prioritize

DATA_RULES = {"acquire_atlas", "acquire_cohort", "acquire_subject", "preprocess", "parcellate",
              "shard_inputs", "shard"}  # fmt: skip
# environment: the lock is rewritten after every summary (modalmerge.stages.environment)
MODEL_RULES = {"train", "evaluate", "summarize", "figures", "summary_chart", "environment"}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole tiny DAG, run once; yields (workdir, config)."""
    workdir = copy_project(tmp_path_factory.mktemp("workflow"))
    config = load_yaml(workdir / "configs" / "tiny.yaml")
    write_config(workdir, config)
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, config


def _dry_run(workdir, config=None):
    if config is not None:
        write_config(workdir, config)
    result = snakemake(workdir, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result)


@pytest.fixture
def restore_config(tiny_run):
    workdir, config = tiny_run
    yield workdir, copy.deepcopy(config)
    write_config(workdir, config)


def test_tiny_workflow_writes_every_stage_output(tiny_run):
    workdir, config = tiny_run
    root = workdir / "results" / config["dataset"]["name"]
    n = config["dataset"]["params"]["n_subjects"]
    assert len(list((root / "raw").glob("sub-*/anat/*_T1w.nii.gz"))) == n
    task = config["dataset"]["params"].get("task", "motor")
    func = f"sub-*/func/sub-*_task-{task}_space-synthetic"
    # the cleaned BOLD is a temp() output: deleted once parcellate read it (keep_intermediate)
    assert len(list((root / "preproc").glob(f"{func}_desc-clean_bold.nii.gz"))) == 0
    assert len(list((root / "preproc").glob(f"{func}_desc-clean_bold.json"))) == n
    assert len(list((root / "preproc").glob("sub-*/anat/*_desc-preproc_T1w.nii.gz"))) == n
    assert len(list((root / "parcellated").glob("sub-*/*_parcellated.npz"))) == n
    for stage in ("preproc", "parcellated"):  # BIDS derivatives (XCP-D names)
        description = json.loads((root / stage / "dataset_description.json").read_text())
        assert description["DatasetType"] == "derivative"
        assert description["GeneratedBy"][0]["Name"] == "modalmerge"
    names = pd.read_csv(root / "atlas" / "labels.tsv", sep="\t")["name"].tolist()
    series = pd.read_csv(
        next((root / "parcellated").glob(f"{func}_seg-synthetic_stat-mean_timeseries.tsv")),
        sep="\t",
    )
    assert list(series.columns) == names
    assert len(series) == config["dataset"]["params"]["n_timepoints"]
    relmats = (root / "parcellated").glob(
        f"{func}_seg-synthetic_stat-pearsoncorrelation_relmat.tsv"
    )
    assert len(list(relmats)) == n
    assert len(list((root / "parcellated").glob("sub-*/anat/*_desc-structural_morph.tsv"))) == n
    lock = (root / "environment.txt").read_text().splitlines()  # the run's environment lock
    assert any(line.startswith("torch==") for line in lock)
    assert any(line.startswith("nilearn==") for line in lock)
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    assert manifest["censoring"]["censored_volumes"] == 0  # synthetic runs censor nothing
    splits = manifest["splits"]
    assert sum(len(v) for v in splits.values()) == n
    assert not set(splits["train"]) & set(splits["test"])
    for experiment in config["experiments"]:
        name = experiment["name"]
        assert (root / "models" / name / "model.pt").stat().st_size > 0
        assert not (root / "models" / name / "checkpoints").exists()
        metrics = json.loads((root / "eval" / name / "metrics.json").read_text())
        assert {"model", "group_mean"} <= set(metrics["scores"])
        assert metrics["n_test_subjects"] == len(splits["test"])
        assert list((root / "figures" / name).glob("*.png"))
    # no temporary files left anywhere
    assert not [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def test_summary_compares_every_experiment_with_its_baselines(tiny_run):
    workdir, config = tiny_run
    summary = pd.read_csv(workdir / "results" / config["dataset"]["name"] / "eval" / "summary.csv")
    assert set(summary["experiment"]) == {e["name"] for e in config["experiments"]}
    assert np.isfinite(summary["value"].replace([np.inf], 0)).all()
    ts = summary[summary["target"] == "time_series"]
    for predictor in ("model", "group_mean", "ridge", "noise_ceiling"):
        assert predictor in set(ts["model"])
    assert {"pearson_r", "fc_similarity", "fraction_of_noise_ceiling"} <= set(ts["metric"])
    assert {"fc_top1", "fc_mean_rank", "fc_demeaned_r"} <= set(ts["metric"])
    assert {"ci_low", "ci_high", "n", "p_wilcoxon", "verdict"} <= set(summary.columns)
    # every experiment is compared with every baseline on its primary metric, with a verdict
    primary = {"time_series": "pearson_r", "image": "ssim", "tabular": "r2"}
    for experiment, rows in summary.groupby("experiment"):
        judged = rows[rows["model"].str.startswith("model-") & rows["verdict"].notna()]
        assert set(judged["metric"]) == {primary[rows["target"].iloc[0]]}, experiment
        assert {"model-group_mean", "model-ridge"} <= set(judged["model"]), experiment
        assert set(judged["verdict"]) <= {"beats", "does not beat"}
        beats = judged[judged["verdict"] == "beats"]
        assert (beats["ci_low"] > 0).all()
    image_cond = summary[summary["condition"] == "image"]
    assert {"ridge_parcel", "model-ridge_parcel"} <= set(image_cond["model"])


def test_image_condition_draws_attention_on_the_anatomy(tiny_run):
    workdir, config = tiny_run
    figures = workdir / "results" / config["dataset"]["name"] / "figures"
    names = {p.name for p in (figures / "image_to_timeseries_xattn").glob("*.png")}
    assert {
        "attention.png",
        "attention_on_anatomy.png",
        "predictions.png",
        "connectivity.png",
        "connectome_true.png",  # glass-brain connectomes at the atlas coordinates
        "connectome_predicted.png",
        "learning_curves.png",
    } <= names
    assert (figures / "summary.png").stat().st_size > 0


def test_noop_rerun_runs_nothing(tiny_run):
    workdir, _ = tiny_run
    assert _dry_run(workdir) == {}


def test_editing_train_settings_reruns_training_and_what_follows_only(restore_config):
    workdir, config = restore_config
    config["train"]["lr"] = config["train"]["lr"] * 2
    jobs = _dry_run(workdir, config)
    assert set(jobs) == MODEL_RULES
    assert jobs["train"] == len(config["experiments"])


def test_a_thread_count_reruns_nothing(restore_config):
    """A resource knob is no part of a stage's identity (issue 17)."""
    workdir, config = restore_config
    config["train"]["threads"] = config["train"]["threads"] + 1
    config["train"]["num_workers"] = 1  # reaches the job as --workers, not as params
    assert _dry_run(workdir, config) == {}


def test_a_preprocess_chunk_size_reruns_nothing(restore_config):
    """preprocess.chunk_mb reaches the job on its command line, not in its params."""
    workdir, config = restore_config
    config["preprocess"]["chunk_mb"] = 64
    assert _dry_run(workdir, config) == {}


def test_editing_one_experiment_reruns_that_experiment_only(restore_config):
    workdir, config = restore_config
    config["experiments"][0]["embedding_dim"] = 8
    jobs = _dry_run(workdir, config)
    assert jobs["train"] == 1 and jobs["evaluate"] == 1 and jobs["figures"] == 1
    assert not set(jobs) & DATA_RULES


def _residual_diffusion(source: dict) -> dict:
    """A tiny residual diffusion experiment whose mean head is ``source``'s (mean_from)."""
    return {"name": "image_to_timeseries_diffusion", "condition": "image",
            "target": "time_series", "encoder": source["encoder"], "decoder": "denoiser",
            "method": "diffusion", "embedding_dim": source["embedding_dim"],
            "heads": source["heads"], "decoder_options": {"n_layers": 1},
            "method_options": {"train_steps": 20, "sample_steps": 5, "residual": True,
                               "mean_from": source["name"],
                               "mean_decoder_options": source["decoder_options"]}}  # fmt: skip


def test_editing_the_mean_from_source_reruns_the_diffusion_training_too(restore_config):
    """method_options mean_from: the diffusion experiment's train job takes the named
    experiment's model.pt as input, so retraining that model retrains it."""
    workdir, config = restore_config
    source = config["experiments"][0]  # image_to_timeseries_xattn
    config["experiments"].append(_residual_diffusion(source))
    assert _dry_run(workdir, config)["train"] == 1  # the new experiment alone
    source["dropout"] = 0.2  # not a setting the mean head must share
    assert _dry_run(workdir, config)["train"] == 2  # the source, then the diffusion model


def _job_priorities(result) -> dict[tuple[str, str], str]:
    """(rule, experiment) -> the priority a dry run prints for the job ("0" when none)."""
    found = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout + result.stderr):
        head = re.match(r"(?:local)?rule (\w+):", block)
        experiment = re.search(r"experiment=([\w-]+)", block)
        if head and experiment:
            priority = re.search(r"^\s+priority: (\S+)", block, re.M)
            found[(head.group(1), experiment.group(1))] = priority.group(1) if priority else "0"
    return found


def _priority_targets(config_path: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PRIORITY_TARGETS), str(config_path)],
        capture_output=True, text=True, **kwargs,
    )  # fmt: skip


def test_make_run_starts_the_mean_from_chain_first(restore_config):
    """`make run` passes `workflow/priority_targets.py config.yaml` to --prioritize:
    the diffusion experiment's evaluate output, so that job, its training and its source's
    training get the highest priority, and the source's own evaluate does not."""
    workdir, config = restore_config
    source = config["experiments"][0]
    config["experiments"].append(_residual_diffusion(source))
    source["dropout"] = 0.2  # retrain the source too
    path = write_config(workdir, config)
    printed = _priority_targets(path, cwd=workdir, check=True).stdout.split()
    name = config["dataset"]["name"]
    assert printed == [
        "--prioritize",
        f"results/{name}/eval/image_to_timeseries_diffusion/metrics.json",
    ]
    found = _job_priorities(snakemake(workdir, "--dry-run", *printed))
    assert found[("train", source["name"])] == "highest"
    assert found[("train", "image_to_timeseries_diffusion")] == "highest"
    assert found[("evaluate", "image_to_timeseries_diffusion")] == "highest"
    assert found[("evaluate", source["name"])] != "highest"
    assert "workflow/priority_targets.py config.yaml" in (PROJECT / "Makefile").read_text()


def test_priority_targets_prints_nothing_for_a_config_without_a_chain(tmp_path):
    config = load_yaml(PROJECT / "configs" / "tiny.yaml")
    path = write_config(tmp_path, config)
    assert _priority_targets(path, check=True).stdout == ""
    broken = _priority_targets(tmp_path / "missing.yaml")
    assert broken.returncode != 0 and "missing.yaml: cannot read the config" in broken.stderr


def test_editing_a_figure_setting_reruns_figures_only(restore_config):
    workdir, config = restore_config
    config["figures"]["dpi"] = config["figures"]["dpi"] + 10
    assert set(_dry_run(workdir, config)) == {"figures", "summary_chart"}


def _seeds(result, command):
    """{output path: seed} of the planned `modalmerge <command>` jobs (dry run with -p)."""
    seeds = {}
    for line in (result.stdout + result.stderr).splitlines():
        line = line.removeprefix("Shell command: ")
        if line.startswith(f"modalmerge {command} "):
            out = re.search(r"--(?:out|out-dir|root) (\S+)", line).group(1)
            seeds[out] = int(re.search(r'"seed": (\d+)', line).group(1))
    return seeds


def test_repeats_plan_one_branch_per_repeat_each_with_its_own_seeds(restore_config):
    """repeats: 2 plans every job twice: repeat 0 in results/tiny/ with the configured
    seeds, repeat 1 in results/tiny/rep-1/ with cohort, split and training seeds + 1."""
    workdir, config = restore_config
    once = planned_jobs(snakemake(workdir, "--dry-run", "--forceall"))
    config["repeats"] = 2
    write_config(workdir, config)
    result = snakemake(workdir, "--dry-run", "--forceall", "--printshellcmds")
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result) == {rule: 2 * n for rule, n in once.items()} | {
        "summarize_repeats": 1
    }
    base = config["dataset"]["params"]["seed"]
    cohort = _seeds(result, "acquire-cohort --part table")
    assert cohort == {"results/tiny": base, "results/tiny/rep-1": base + 1}
    assert _seeds(result, "shard") == {"results/tiny/shards": 0, "results/tiny/rep-1/shards": 1}
    train = _seeds(result, "train")
    assert {seed for out, seed in train.items() if "/rep-1/" in out} == {1}
    assert {seed for out, seed in train.items() if "/rep-1/" not in out} == {0}


def test_raising_repeats_runs_only_the_new_repeat(restore_config):
    """The finished repeats: 1 run is repeat 0 of repeats: 2, down to its params."""
    workdir, config = restore_config
    once = planned_jobs(snakemake(workdir, "--dry-run", "--forceall"))
    config["repeats"] = 2
    assert _dry_run(workdir, config) == once | {"summarize_repeats": 1}


def test_editing_a_stage_s_package_code_reruns_that_stage_and_what_follows(tiny_run):
    workdir, config = tiny_run
    source = workdir / "modalmerge" / "data" / "parcellation" / "parcellate.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# a comment only\n")
        assert _dry_run(workdir) == {}  # fingerprints hash syntax, not bytes
        source.write_text(original + "\nAN_EDIT = 1\n")
        jobs = _dry_run(workdir)
    finally:
        source.write_text(original)
    n = config["dataset"]["params"]["n_subjects"]
    assert jobs["parcellate"] == n
    # parcellate reads the cleaned BOLD, a temp() output deleted after the first run
    # (preprocess.keep_intermediate: false): preprocess runs again to make it
    assert jobs["preprocess"] == n
    assert {"shard", "train", "evaluate", "figures"} <= set(jobs)
    assert not {"acquire_subject", "acquire_cohort", "acquire_atlas"} & set(jobs)
    assert _dry_run(workdir) == {}


def _embedded(html, filename):
    """The files named ``filename`` that a self-contained report embeds (base64 data URIs)."""
    pattern = (
        rf"data:[^;\"]+;charset=[^;\"]+;filename={re.escape(filename)};base64,([A-Za-z0-9+/=]+)"
    )
    return [base64.b64decode(data) for data in re.findall(pattern, html)]


def test_report_holds_figures_summary_metrics_and_exclusions(tiny_run, tmp_path):
    workdir, config = tiny_run
    root = workdir / "results" / config["dataset"]["name"]
    report = tmp_path / "report.html"
    result = snakemake(workdir, "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    html = report.read_text(errors="replace")
    assert "summary.csv" in html and "attention_on_anatomy" in html
    # every experiment's metrics.json, its entries as on disk, in category Scores with a caption
    names = [e["name"] for e in config["experiments"]]
    metrics = [json.loads(data) for data in _embedded(html, "metrics.json")]
    assert sorted(m["experiment"] for m in metrics) == sorted(names)
    for m in metrics:
        assert m == json.loads((root / "eval" / m["experiment"] / "metrics.json").read_text())
        assert {"scores", "n_parameters"} <= set(m)
    for name in names:  # the categories JSON: {"Scores": {"<experiment>": [".../metrics.json"]}}
        assert re.search(
            rf'"Scores": {{[^}}]*"{re.escape(name)}": \[[^]]*eval/{re.escape(name)}/metrics\.json',
            html,
        )
    assert "Scores of experiment" in html
    # the excluded-subjects table: always written, header-only for synthetic data
    assert (root / "raw" / "excluded.tsv").read_text() == "participant_id\treason\n"
    assert _embedded(html, "excluded.tsv") == [b"participant_id\treason\n"]
    assert re.search(r'"Cohort": {[^}]*raw/excluded\.tsv', html)
    assert "Subjects left out of the cohort" in html


def test_lint_is_clean(tiny_run):
    """No lint but the by-design one (no rule names a conda environment), as `make lint` checks."""
    workdir, _ = tiny_run
    result = snakemake(workdir, "--lint")
    lint = runpy.run_path(str(Path(__file__).parents[1] / ".ci" / "snakemake_lint.py"))
    output = result.stdout + result.stderr
    assert not lint["unaccepted"](output, result.returncode), output[-3000:]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["train"].update(epochz=3), "epochz"),
        (lambda c: c["train"].update(epochs="many"), "epochs"),
        (lambda c: c["experiments"][0].update(method="magic"), "magic"),
        (lambda c: c["dataset"]["params"].update(n_subjectz=3), "n_subjectz"),
    ],
)
def test_config_errors_stop_at_once_naming_the_key(tmp_path, edit, message):
    workdir = copy_project(tmp_path / "project")
    config = load_yaml(workdir / "configs" / "tiny.yaml")
    edit(config)
    write_config(workdir, config)
    result = snakemake(workdir, "--dry-run")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "modalmerge.cli", *args], capture_output=True, text=True
    )


def test_corrupt_file_between_stages_gives_one_line_error_naming_it(tiny_run, tmp_path):
    workdir, config = tiny_run
    root = workdir / "results" / config["dataset"]["name"]
    sources = sorted((root / "parcellated").glob("sub-*/*_parcellated.npz"))
    subjects = [p.parent.name for p in sources]
    parcellated = [tmp_path / p.name for p in sources]
    for src, dest in zip(sources, parcellated, strict=True):
        shutil.copy(src, dest)
    parcellated[1].write_bytes(b"not an npz")
    out = tmp_path / "shards"
    result = _cli(
        "shard",
        "--settings",
        json.dumps(config["shard"]),
        "--subjects",
        *subjects,
        "--parcellated",
        *map(str, parcellated),
        "--anatomy",
        *[str(next((root / "preproc" / s / "anat").glob("*_T1w.nii.gz"))) for s in subjects],
        "--texts",
        *[str(root / "raw" / s / f"{s}_description.txt") for s in subjects],
        "--participants",
        str(root / "raw" / "participants.tsv"),
        "--out",
        str(out),
    )
    assert result.returncode == 1
    assert str(parcellated[1]) in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_nan_in_bold_is_refused_naming_the_file(tiny_run, tmp_path):
    import nibabel as nib

    workdir, config = tiny_run
    root = workdir / "results" / config["dataset"]["name"]
    subject = "sub-001"
    bold = nib.load(root / "raw" / subject / "func" / f"{subject}_task-motor_bold.nii.gz")
    data = bold.get_fdata(dtype=np.float32)
    data[5, 5, 5, 3] = np.nan
    broken = tmp_path / f"{subject}_task-motor_bold.nii.gz"
    image = nib.Nifti1Image(data, bold.affine, bold.header)
    image.set_data_dtype(np.float32)  # the raw run is int16, which cannot hold a NaN
    nib.save(image, broken)
    out_bold = tmp_path / "out_bold.nii.gz"
    result = _cli(
        "preprocess",
        "--settings",
        json.dumps(config["preprocess"]),
        "--t1",
        str(root / "raw" / subject / "anat" / f"{subject}_T1w.nii.gz"),
        "--bold",
        str(broken),
        "--atlas",
        str(root / "atlas" / "atlas.nii.gz"),
        "--out-t1",
        str(tmp_path / "out_t1.nii.gz"),
        "--out-bold",
        str(out_bold),
    )
    assert result.returncode == 1
    assert str(broken) in result.stderr and "NaN" in result.stderr
    assert not out_bold.exists()


@pytest.mark.skipif(
    importlib.util.find_spec("brainspace") is None,
    reason="brainspace is not installed (pip install --no-deps brainspace; make setup does)",
)
def test_real_demo_runs_offline_from_the_brainspace_run_to_surface_figures(tmp_path):
    """configs/real_demo.yaml end to end (training cut to 2 epochs): real data, no download."""
    workdir = copy_project(tmp_path / "real")
    config = load_yaml(workdir / "configs" / "real_demo.yaml")
    config["train"]["epochs"] = 2
    write_config(workdir, config, "real.yaml")
    result = snakemake(workdir, "--configfile", "real.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    root = workdir / "results" / "real_demo"
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    assert manifest["split_by"] == "time" and len(manifest["roi_names"]) == 68
    metrics = json.loads((root / "eval" / "left_to_right_xattn" / "metrics.json").read_text())
    assert {"model", "group_mean", "ridge"} <= set(metrics["scores"])
    assert len(metrics["per_roi"]["model"]["pearson_r"]) == 34  # the right hemisphere only
    homolog = metrics["homolog_attention"]
    assert homolog["n_pairs"] == 34 and np.shape(homolog["mean_attention"]) == (34, 34)
    assert 0 <= metrics["scores"]["model"]["homolog_attention_fraction"] <= 1
    assert metrics["scores"]["ridge"]["pearson_r"] > 0.3  # left predicts right at the same time
    # the test block scored as 6 units: every predictor paired on them, intervals in the summary
    assert metrics["per_unit"]["units"] == [f"sub-010188:test-{k:02d}" for k in range(6)]
    summary = pd.read_csv(root / "eval" / "summary.csv")
    ridge_row = summary[(summary["model"] == "model-ridge") & (summary["metric"] == "pearson_r")]
    assert (ridge_row["n"] == 6).all() and ridge_row["ci_low"].notna().all()
    # each block preprocessed on its own: the gap volumes dropped, the blocks recorded
    sidecar = json.loads(next((root / "preproc").glob("sub-*/func/*_bold.json")).read_text())
    assert len(sidecar["CensoredVolumes"]) == 40 and set(sidecar["TimeBlocks"]) == {
        "train",
        "val",
        "test",
    }
    lock = (root / "environment.txt").read_text()
    assert "nilearn==" in lock and "torch==" in lock
    figures = root / "figures" / "left_to_right_xattn"
    for name in ("surface_accuracy", "surface_attention", "attention", "predictions"):
        assert (figures / f"{name}.png").stat().st_size > 0, name
    again = snakemake(workdir, "--configfile", "real.yaml", "--dry-run")
    assert planned_jobs(again) == {}
