"""``train.ensemble: K``: K models per experiment, their mean prediction and mean attention.

On the regional planted cohort one fit's attention is one draw (7, 8 and 4 of 8 planted
links over three training seeds); the mean over training seeds is what the workflow can
report. These tests pin what a user relies on: member k is exactly the single model of
seed + k, the ensemble predicts and attends as the mean of its members, ``ensemble: 1``
trains and saves exactly as before, a killed ensemble job resumes at its member, and
settings that cannot be averaged are refused before anything runs.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from modalmerge import settings as typed
from modalmerge.io import InputError
from modalmerge.models import ModelEnsemble, MultiModalModel, load_model
from tests._model_fixtures import TINY_IMAGE_TO_SERIES, batch, tiny_model, tiny_shards

TRAIN = {"seed": 0, "epochs": 1, "batch_size": 4, "lr": 0.003, "patience": 5}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.mktemp("ensemble"))


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    """Single models of seeds 0 and 1 and the ensemble of two (seed 0), by the train stage."""
    from modalmerge.stages.train import train_experiment

    root = tmp_path_factory.mktemp("fits")
    paths = {
        "seed0": train_experiment(shards, TINY_IMAGE_TO_SERIES, TRAIN, root / "seed0"),
        "seed1": train_experiment(shards, TINY_IMAGE_TO_SERIES, {**TRAIN, "seed": 1}, root / "s1"),
        "ens": train_experiment(shards, TINY_IMAGE_TO_SERIES, {**TRAIN, "ensemble": 2}, root / "e"),
    }
    return paths


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_member_k_is_the_single_model_of_seed_plus_k(trained):
    ensemble = load_model(trained["ens"])
    assert isinstance(ensemble, ModelEnsemble) and len(ensemble) == 2
    assert _same_weights(ensemble.members[0], MultiModalModel.load(trained["seed0"]))
    assert _same_weights(ensemble.members[1], MultiModalModel.load(trained["seed1"]))
    assert not _same_weights(ensemble.members[0], ensemble.members[1])


def test_the_ensemble_history_lists_every_member(trained):
    history = pd.read_csv(trained["ens"].parent / "history.csv")
    single = pd.read_csv(trained["seed0"].parent / "history.csv")
    assert list(history.columns) == ["member", *single.columns]
    assert sorted(set(history["member"])) == [0, 1]
    first = history[history["member"] == 0].drop(columns=["member", "seconds"])
    pd.testing.assert_frame_equal(first.reset_index(drop=True), single.drop(columns="seconds"))
    assert not (trained["ens"].parent / "checkpoints").exists()  # finished: no resume state


def test_ensemble_predicts_and_attends_as_the_mean_of_its_members(trained):
    ensemble = load_model(trained["ens"]).eval()
    members = [m.eval() for m in ensemble.members]
    x = batch("image", ensemble.condition_shape, seed=3)
    with torch.no_grad():
        out = ensemble(x, return_attention=True)
        parts = [m(x, return_attention=True) for m in members]
    mean_prediction = (parts[0].prediction + parts[1].prediction) / 2
    torch.testing.assert_close(out.prediction, mean_prediction)
    torch.testing.assert_close(out.attention, (parts[0].attention + parts[1].attention) / 2)
    assert ensemble(x).attention is None
    assert ensemble.n_parameters() == 2 * members[0].n_parameters()
    assert ensemble.target_provenance() == members[0].target_provenance()


def test_tabular_classes_average_as_probabilities():
    torch.manual_seed(0)
    members = [tiny_model("image", "tabular") for _ in range(3)]
    ensemble = ModelEnsemble(members).eval()
    x = batch("image", members[0].condition_shape, seed=1)
    with torch.no_grad():
        out = ensemble(x).prediction
        parts = [m.eval()(x).prediction for m in members]
    torch.testing.assert_close(out["numeric"], torch.stack([p["numeric"] for p in parts]).mean(0))
    for i, scores in enumerate(out["categorical"]):
        expected = torch.stack([p["categorical"][i].softmax(-1) for p in parts]).mean(0)
        torch.testing.assert_close(scores.softmax(-1), expected)


def test_a_saved_ensemble_loads_back_and_a_single_model_loader_names_the_right_one(
    trained, tmp_path
):
    ensemble = load_model(trained["ens"])
    again = ensemble.save(tmp_path / "copy.pt")
    assert again.read_bytes() == trained["ens"].read_bytes()  # equal weights, equal bytes
    with pytest.raises(InputError, match=r"ensemble of 2 models.*load_model"):
        MultiModalModel.load(trained["ens"])
    assert isinstance(load_model(trained["seed0"]), MultiModalModel)


def test_broken_ensemble_files_are_refused_naming_the_file(trained, tmp_path):
    data = torch.load(trained["ens"], weights_only=True)
    cases = {
        "empty.pt": {"config": data["config"], "members": []},
        "noconfig.pt": {"members": data["members"]},
        "wrong.pt": {"config": data["config"], "members": [{"nothing": torch.zeros(1)}]},
    }
    for name, content in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(InputError, match=name):
            load_model(tmp_path / name)


def test_members_of_different_configurations_or_generative_models_are_refused():
    torch.manual_seed(0)
    a = tiny_model("image", "time_series")
    b = tiny_model("image", "time_series", dropout=0.1)
    with pytest.raises(ValueError, match="member 1's configuration differs"):
        ModelEnsemble([a, b])
    diffusion = tiny_model("image", "time_series", method="diffusion")
    with pytest.raises(ValueError, match="diffusion model is scored from its samples"):
        ModelEnsemble([diffusion])


def test_a_killed_ensemble_job_resumes_at_its_member(shards, trained, tmp_path, monkeypatch):
    from modalmerge.stages import train as stage

    real_fit, calls = stage._Run.fit, []

    def dies_on_the_second_member(self, out_dir, model_path, seed, sub=None):
        calls.append(seed)
        if seed == 1 and len(calls) == 2:
            raise KeyboardInterrupt  # the job is killed while member 1 trains
        return real_fit(self, out_dir, model_path, seed, sub)

    monkeypatch.setattr(stage._Run, "fit", dies_on_the_second_member)
    settings = {**TRAIN, "ensemble": 2}
    with pytest.raises(KeyboardInterrupt):
        stage.train_experiment(shards, TINY_IMAGE_TO_SERIES, settings, tmp_path)
    assert (tmp_path / "checkpoints" / "member-0" / "model.pt").is_file()
    assert not (tmp_path / "model.pt").exists()  # nothing half-written
    path = stage.train_experiment(shards, TINY_IMAGE_TO_SERIES, settings, tmp_path)
    assert calls == [0, 1, 1]  # the rerun trained member 1 only
    assert path.read_bytes() == trained["ens"].read_bytes()


def test_members_of_another_configuration_are_not_reused(shards, trained, tmp_path):
    from modalmerge.stages.train import train_experiment

    other = {**TRAIN, "ensemble": 2, "lr": 0.01}
    train_experiment(shards, TINY_IMAGE_TO_SERIES, other, tmp_path)
    member = tmp_path / "checkpoints" / "member-0"  # leave a finished member behind
    member.mkdir(parents=True)
    (tmp_path / "model.pt").rename(member / "model.pt")
    (tmp_path / "history.csv").rename(member / "history.csv")
    path = train_experiment(shards, TINY_IMAGE_TO_SERIES, {**TRAIN, "ensemble": 2}, tmp_path)
    assert path.read_bytes() == trained["ens"].read_bytes()


def test_evaluate_scores_the_ensemble_and_records_its_size(shards, trained, tmp_path):
    from modalmerge.stages.evaluate import evaluate_experiment

    record = evaluate_experiment(
        trained["ens"], shards, TINY_IMAGE_TO_SERIES, {}, tmp_path / "m.json", tmp_path / "p.npz"
    )
    single = evaluate_experiment(
        trained["seed0"], shards, TINY_IMAGE_TO_SERIES, {}, tmp_path / "s.json", tmp_path / "s.npz"
    )
    assert record["ensemble_members"] == 2 and "ensemble_members" not in single
    assert record["n_parameters"] == 2 * single["n_parameters"]
    assert json.loads((tmp_path / "m.json").read_text())["ensemble_members"] == 2
    assert record["scores"] != single["scores"]  # the mean of two fits, not member 0


def test_settings_refuse_ensembles_that_cannot_be_averaged():
    base = {
        "dataset": {"name": "x", "kind": "synthetic"},
        "experiments": [dict(TINY_IMAGE_TO_SERIES)],
    }
    typed.from_config({**base, "train": {"ensemble": 3}})  # a deterministic model: fine
    diffusion = {**TINY_IMAGE_TO_SERIES, "name": "gen", "method": "diffusion"}
    with pytest.raises(ValueError, match=r"experiments\[1\] \(gen\): ensemble 3.*samples"):
        typed.from_config({**base, "train": {"ensemble": 3}, "experiments": [
            dict(TINY_IMAGE_TO_SERIES), diffusion]})  # fmt: skip
    single_gen = {**diffusion, "ensemble": 1, "method_options": {"mean_from": "tiny"}}
    with pytest.raises(ValueError, match=r"mean_from 'tiny' trains an ensemble of 3"):
        typed.from_config({**base, "train": {"ensemble": 3}, "experiments": [
            dict(TINY_IMAGE_TO_SERIES), single_gen]})  # fmt: skip
    # unless its mean head is that ensemble (tests/test_models_diffusion_mean_ensemble.py)
    members = {**single_gen, "method_options": {"mean_from": "tiny", "mean_members": 3}}
    typed.from_config({**base, "train": {"ensemble": 3}, "experiments": [
        dict(TINY_IMAGE_TO_SERIES), members]})  # fmt: skip
    with pytest.raises(ValueError, match=r"train\.ensemble: must be >= 1"):
        typed.TrainSettings.from_dict({"ensemble": 0})


def test_the_default_ensemble_adds_nothing_to_the_rerun_identity():
    assert "ensemble" not in typed.identity_dict(typed.TrainSettings())
    assert typed.identity_dict(typed.TrainSettings(ensemble=3))["ensemble"] == 3
    assert "ensemble" not in typed.ExperimentSettings.from_dict(dict(TINY_IMAGE_TO_SERIES)).record()
    entry = typed.ExperimentSettings.from_dict({**TINY_IMAGE_TO_SERIES, "ensemble": 2})
    assert entry.training(typed.TrainSettings(ensemble=5)).ensemble == 2
