"""``train.scheduler``: the learning-rate schedule the workflow's training runs (issue 18).

The regional planted cohort's settings were chosen with a constant learning rate; the
Trainer's default cosine decay found none of the planted links with them, so the schedule
is a setting, and the default must train exactly as before.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from modalmerge import settings as typed
from modalmerge.training import schedule
from tests._model_fixtures import TINY_IMAGE_TO_SERIES, tiny_shards

EXPERIMENT = TINY_IMAGE_TO_SERIES
TRAIN = {"seed": 0, "epochs": 3, "batch_size": 4, "lr": 0.003, "patience": 5}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.mktemp("sched"))


def _train(shards, out, train=TRAIN, experiment=EXPERIMENT):
    from modalmerge.stages.train import train_experiment

    path = train_experiment(shards, experiment, train, out)
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state, pd.read_csv(out / "history.csv")


def _tensors(state):
    """Every tensor of a saved model, by its key path."""
    found = {}

    def walk(value, key):
        if isinstance(value, torch.Tensor):
            found[key] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}/{k}")

    walk(state, "")
    return found


def test_constant_keeps_the_learning_rate_every_step():
    model = torch.nn.Linear(2, 1)
    optimizer = schedule.make_optimizer(model, lr=0.01, weight_decay=0.0)
    scheduler = schedule.make_scheduler(optimizer, "constant", total_steps=20)
    rates = []
    for _ in range(20):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == [0.01] * 20


def test_the_workflow_trains_with_the_configured_schedule(shards, tmp_path):
    """constant: the lr of every epoch is train.lr (an experiment may override it, as lr);
    the default decays it; the default's weights are bit-identical to explicit cosine."""
    _, constant = _train(shards, tmp_path / "c", TRAIN | {"scheduler": "constant"})
    assert constant["lr"].tolist() == [0.003] * 3
    _, override = _train(shards, tmp_path / "o", TRAIN, EXPERIMENT | {"scheduler": "constant"})
    assert override["lr"].tolist() == [0.003] * 3
    default, history = _train(shards, tmp_path / "d")
    assert history["lr"].iloc[-1] < 0.003 * 0.05  # the cosine decay to 1 % of lr
    cosine, _ = _train(shards, tmp_path / "e", TRAIN | {"scheduler": "cosine"})
    a, b = _tensors(default), _tensors(cosine)
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = _tensors(_train(shards, tmp_path / "f", TRAIN | {"scheduler": "constant"})[0])
    assert not all(torch.equal(a[k], other[k]) for k in a)  # the schedule reaches the weights


def test_a_bad_scheduler_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"train\.scheduler: must be one of .*'linear'"):
        typed.TrainSettings.from_dict({"scheduler": "linear"})
    entry = {"name": "x", "condition": "image", "target": "time_series", "scheduler": "step"}
    with pytest.raises(ValueError, match=r"experiments\[0\]\.scheduler"):
        typed.ExperimentSettings.from_dict(entry, "experiments[0]")


def test_the_default_schedule_adds_nothing_to_the_rerun_identity():
    """At its default the key is in neither the train rule's params nor an experiment's, so
    configs written before it existed rerun nothing; set, it is (and reruns training)."""
    assert "scheduler" not in typed.identity_dict(typed.TrainSettings())
    assert typed.identity_dict(typed.TrainSettings(scheduler="constant"))["scheduler"] == "constant"
    entry = {"name": "x", "condition": "image", "target": "time_series"}
    assert "scheduler" not in typed.ExperimentSettings.from_dict(entry).record()
    assert typed.SCHEDULERS == schedule.SCHEDULERS
