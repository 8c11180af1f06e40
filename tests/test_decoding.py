"""Brain decoding as a workflow experiment (target_data: task_condition): per-volume task
conditions from 4D windows, scored against logistic regression on the ROI series and chance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modalmerge.evaluation.decoding import (
    logistic_baseline,
    per_subject_accuracy,
    per_subject_balanced_accuracy,
)
from tests._model_fixtures import TINY_TRAIN
from tests.test_shards_volumes import volume_shards  # noqa: F401 - the module's fixture

torch.set_num_threads(1)

#: the decoding experiment at tiny sizes (configs/decoding.yaml's, smaller)
EXPERIMENT = {
    "name": "tiny_decoding", "condition": "volume_series", "target": "tabular",
    "target_data": "task_condition", "encoder": "spatiotemporal", "decoder": "mlp",
    "method": "cross_attention", "embedding_dim": 8, "heads": 2,
    "encoder_options": {"n_layers": 1, "patch": 2, "time_patch": 2},
}  # fmt: skip


def test_per_subject_accuracy_averages_each_subject_s_volumes():
    correct = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
    subjects = np.array(["sub-2", "sub-1", "sub-2"])
    assert per_subject_accuracy(correct, subjects) == {"sub-1": 1.0, "sub-2": 0.25}


def test_balanced_accuracy_gives_the_majority_guess_one_over_k_whatever_the_shares():
    truth = np.array([[0, 0, 0, 0, 0, 0, 1, 2], [0, 0, 0, 0, 0, 0, 0, 0]])
    subjects = np.array(["sub-1", "sub-2"])
    majority = np.zeros_like(truth)
    found = per_subject_balanced_accuracy(truth, majority, subjects)
    assert found["sub-1"] == pytest.approx(1 / 3)  # plain accuracy would be 0.75
    assert found["sub-2"] == 1.0  # one condition present: its recall
    perfect = per_subject_balanced_accuracy(truth, truth, subjects)
    assert perfect == {"sub-1": 1.0, "sub-2": 1.0}


def test_logistic_baseline_decodes_a_planted_roi_code_and_context_sees_neighbours():
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 3, (n, 6))
        x = rng.normal(0, 0.3, (n, 6, 4))
        x[:, :-1, :3] += 2.0 * np.eye(3)[y[:, 1:]]  # volume t's class: ROIs 0-2 one volume EARLIER
        return {"x": x, "y": y, "subject": np.arange(n).astype(str)}

    train, val, test = split(200), split(50), split(50)
    alone, chosen = logistic_baseline(train, val, test, context=0)
    context, _ = logistic_baseline(train, val, test, context=2)
    inner = slice(1, None)  # volume 0 has no earlier neighbour holding its code
    assert (context[:, inner] == test["y"][:, inner]).mean() > 0.95
    assert (alone[:, inner] == test["y"][:, inner]).mean() < 0.6  # its own volume holds noise
    assert chosen["C"] in (0.01, 0.1, 1.0, 10.0)


def test_the_decoding_experiment_builds_one_k_way_head_per_volume(volume_shards):  # noqa: F811
    from modalmerge.stages.common import build_model, experiment_dataset

    torch.manual_seed(0)
    model = build_model(volume_shards, EXPERIMENT)
    batch = experiment_dataset(volume_shards, "train", EXPERIMENT).get_batch([0, 1])
    assert batch["condition"].shape == (2, 8, 3, 4, 2)
    assert batch["target"].shape == (2, 8)  # one condition code per volume
    heads = model(batch["condition"]).prediction["categorical"]
    assert [tuple(h.shape) for h in heads] == [(2, 3)] * 8  # rest, A, B


def test_task_condition_target_data_needs_a_tabular_target():
    from modalmerge.settings import ExperimentSettings

    with pytest.raises(ValueError, match="target_data task_condition"):
        ExperimentSettings.coerce(EXPERIMENT | {"target": "time_series"})


@pytest.fixture(scope="module")
def decoding_model(volume_shards, tmp_path_factory):  # noqa: F811
    """The tiny decoding experiment trained by the train stage (1 epoch)."""
    from modalmerge.stages.train import train_experiment

    return train_experiment(
        volume_shards, EXPERIMENT, TINY_TRAIN, tmp_path_factory.mktemp("decoding") / "model"
    )


def test_the_workflow_stages_train_evaluate_and_summarize_a_decoding_experiment(
    volume_shards,  # noqa: F811
    decoding_model,
    tmp_path,
):
    from modalmerge.evaluation.summary import summarize
    from modalmerge.settings import ExperimentSettings
    from modalmerge.stages.common import load_experiment_model
    from modalmerge.stages.evaluate import evaluate_experiment
    from modalmerge.stages.figures_modalities import volume_attention

    model_path = decoding_model
    out = tmp_path / "eval"
    evaluate_experiment(
        model_path, volume_shards, EXPERIMENT, {}, out / "metrics.json", out / "p.npz"
    )
    written = json.loads((out / "metrics.json").read_text())
    assert written["primary_metric"] == "balanced_accuracy"
    assert set(written["scores"]) == {"model", "logistic", "logistic_context", "chance"}
    units = written["per_unit"]["units"]
    assert len(units) >= 2
    # chance: the training volumes' majority class (rest) on every volume; windows at
    # 0, 4, 8, 12 (8 volumes) hold 5, 3, 6 and 8 rest volumes (test_shards_volumes)
    assert written["decoding"]["chosen"]["chance"] == {"class": "rest"}
    assert written["per_unit"]["chance"]["accuracy"] == [22 / 32] * len(units)
    assert written["per_unit"]["chance"]["balanced_accuracy"] == [pytest.approx(1 / 3)] * len(units)
    arrays = np.load(out / "p.npz")
    assert arrays["prediction"].shape == arrays["target"].shape == (4 * len(units), 8)
    summarize([out / "metrics.json"], tmp_path / "summary.csv")
    rows = [line.split(",") for line in (tmp_path / "summary.csv").read_text().splitlines()]
    found = {(r[4], r[5]): r for r in rows[1:]}
    for predictor in ("model", "logistic", "logistic_context", "chance"):
        row = found[(predictor, "balanced_accuracy")]
        assert row[7] and row[8] and int(row[9]) == len(units)  # an interval over subjects
    for baseline in ("logistic", "logistic_context", "chance"):
        row = found[(f"model-{baseline}", "balanced_accuracy")]
        assert row[11] in ("beats", "does not beat")  # the verdict, on the primary metric
        assert found[(f"model-{baseline}", "accuracy")][11] == ""
    drawn = []
    model, _ = load_experiment_model(model_path)
    experiment = ExperimentSettings.coerce(EXPERIMENT)
    volume_attention(model, experiment, volume_shards, lambda fig, name: drawn.append((fig, name)))
    assert [name for _, name in drawn] == ["attention_on_volumes"]
    assert "query of volume" in drawn[0][0].get_suptitle()  # a task volume's query


def test_decoding_evaluate_does_not_read_the_training_volumes(
    volume_shards,  # noqa: F811
    decoding_model,
    tmp_path,
):
    """Its scorer and baselines read the training split's ROI series and codes, not its
    4D windows (~190 MB at the decoding config's size): with every training shard's
    volumes deleted, evaluate writes the same metrics and predictions."""
    import shutil

    import h5py

    from modalmerge.data.shards.split_arrays import read_manifest
    from modalmerge.stages.evaluate import evaluate_experiment

    broken = tmp_path / "shards"
    shutil.copytree(volume_shards, broken)
    train_files = [e["file"] for e in read_manifest(broken)["shards"] if e["split"] == "train"]
    assert train_files
    for name in train_files:
        with h5py.File(broken / name, "a") as f:
            del f["samples/volume_series"]
    found = {}
    for label, shards in (("intact", volume_shards), ("broken", broken)):
        out = tmp_path / label
        evaluate_experiment(
            decoding_model, shards, EXPERIMENT, {}, out / "metrics.json", out / "p.npz"
        )
        found[label] = (
            json.loads((out / "metrics.json").read_text()),
            dict(np.load(out / "p.npz")),
        )
    (intact, intact_arrays), (broken_metrics, broken_arrays) = found["intact"], found["broken"]
    assert broken_metrics == intact and set(intact["scores"]) >= {"model", "logistic"}
    assert set(broken_arrays) == set(intact_arrays)
    for key, value in intact_arrays.items():
        np.testing.assert_array_equal(broken_arrays[key], value)


def test_the_decoding_config_plans_train_evaluate_figures_and_summary_jobs(tmp_path):
    """configs/decoding.yaml: the decoding is one workflow experiment, no hand-run step."""
    from tests.workflow_utils import copy_project, planned_jobs, snakemake

    project = copy_project(tmp_path / "project")
    done = snakemake(
        project, "--dry-run", "--printshellcmds", "--configfile", "configs/decoding.yaml"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = planned_jobs(done)
    assert jobs["train"] == jobs["evaluate"] == jobs["figures"] == jobs["summarize"] == 1
    assert jobs["shard"] == 1 and jobs["preprocess"] == 40
    assert "results/decoding/eval/volumes_to_task_decoding/metrics.json" in done.stdout
    assert "results/decoding/eval/summary.csv" in done.stdout
