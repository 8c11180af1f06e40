"""Shards of a large cohort: several files per split read as one, loader workers, a new
version renamed in place while a reader holds the old one, broken files named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_shards import PARAMS, make_inputs

from modalmerge.data.shards.dataset import ShardDataset
from modalmerge.data.shards.split_arrays import load_split_arrays
from modalmerge.data.shards.subjects import write_shards
from modalmerge.io import InputError
from modalmerge.settings import TrainSettings, identity_dict
from modalmerge.stages.train import _loader as train_loader

N = 12  # 6 train subjects: 3 files of 2 when subjects_per_shard is 2


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The same cohort written as one file per split and as files of 2 subjects."""
    root = tmp_path_factory.mktemp("streaming")
    inputs = make_inputs(root, n=N)
    for name, size in (("one", 64), ("many", 2)):
        write_shards(*inputs, root / name, {**PARAMS, "subjects_per_shard": size})
    return root


def _loader(shards, workers: int, seed: int = 5):
    """The train stage's loader (shuffled, seeded) over the train split."""
    ds = ShardDataset(shards, "train", "image", "time_series")
    return train_loader(ds, batch_size=4, shuffle=True, seed=seed, workers=workers, pin=False)


def _epochs(loader, n_epochs: int = 2) -> list[dict]:
    return [batch for _ in range(n_epochs) for batch in loader]


def _assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x["subject"] == y["subject"]
        assert torch.equal(x["window_start"], y["window_start"])
        assert torch.equal(x["condition"], y["condition"])
        assert torch.equal(x["target"], y["target"])


def test_many_files_per_split_give_the_samples_of_one_file_in_the_same_order(cohort):
    one = json.loads((cohort / "one" / "manifest.json").read_text())
    many = json.loads((cohort / "many" / "manifest.json").read_text())
    assert [e["file"] for e in one["shards"] if e["split"] == "train"] == ["train-0000.h5"]
    assert [e["file"] for e in many["shards"] if e["split"] == "train"] == [
        "train-0000.h5", "train-0001.h5", "train-0002.h5",
    ]  # fmt: skip
    assert one["splits"] == many["splits"] and one["n_samples"] == many["n_samples"]
    _assert_same_batches(_epochs(_loader(cohort / "one", 0)), _epochs(_loader(cohort / "many", 0)))
    for modality in ("time_series", "structural_features", "text"):
        a = load_split_arrays(cohort / "one", "train", modality)
        b = load_split_arrays(cohort / "many", "train", modality)
        assert a["subject"] == b["subject"]
        if modality == "text":
            assert a["data"] == b["data"]
        else:
            np.testing.assert_array_equal(a["data"], b["data"])


def test_loader_workers_give_the_batches_of_the_main_process_every_epoch(cohort):
    assert "num_workers" not in identity_dict(TrainSettings(num_workers=2))  # reruns nothing
    reference = _epochs(_loader(cohort / "many", 0))
    _assert_same_batches(_epochs(_loader(cohort / "many", 2)), reference)


def test_a_reader_holding_the_old_shards_keeps_reading_them_while_a_new_version_is_renamed_in(
    tmp_path,
):
    inputs = make_inputs(tmp_path, n=N)
    out = tmp_path / "shards"
    params = {**PARAMS, "subjects_per_shard": 2}
    write_shards(*inputs, out, params)
    reference = ShardDataset(out, "train", "image", "time_series")
    every = list(range(len(reference)))
    before = reference.get_batch(every)
    reference.close()
    old = ShardDataset(out, "train", "image", "time_series")
    old.get_batch([0])  # opens every file, maps the first one's windows and images only
    late = ShardDataset(out, "train", "time_series", "structural_features")  # not opened yet
    subjects, parc, *_ = inputs
    for path in parc:  # a new version: every value changes, shapes do not
        arrays = dict(np.load(path))
        arrays["roi_timeseries"] = arrays["roi_timeseries"] + 1000
        arrays["structural_features"] = arrays["structural_features"] - 7
        np.savez(path, **arrays)
    write_shards(*inputs, out, params)  # written beside, then renamed onto out

    after = old.get_batch(every)  # the open files (mapped now): the old, complete version
    assert after["subject"] == before["subject"]
    assert torch.equal(after["target"], before["target"])
    assert torch.equal(after["condition"], before["condition"])
    with pytest.raises(InputError, match="replaced after its manifest was read") as exc:
        late.get_batch([0])  # opening now would mix the new files with the old manifest
    assert "train-0000.h5" in str(exc.value)
    fresh = ShardDataset(out, "train", "image", "time_series").get_batch(every)
    assert torch.equal(fresh["target"], before["target"] + 1000)
    old.close()


def test_a_missing_or_corrupt_shard_file_is_an_error_naming_it(tmp_path):
    inputs = make_inputs(tmp_path, n=N)
    out = tmp_path / "shards"
    write_shards(*inputs, out, {**PARAMS, "subjects_per_shard": 2})
    victim = out / "train-0001.h5"
    good = victim.read_bytes()

    victim.write_bytes(good[: len(good) // 2])  # truncated
    for read in (
        lambda: ShardDataset(out, "train", "image", "time_series").get_batch([0]),
        lambda: load_split_arrays(out, "train", "time_series"),
    ):
        with pytest.raises(InputError, match="not a readable HDF5 shard") as exc:
            read()
        assert str(victim) in str(exc.value)

    victim.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # a signature and nothing else
    with pytest.raises(InputError, match="not a readable HDF5 shard") as exc:
        load_split_arrays(out, "train", "structural_features")
    assert str(victim) in str(exc.value)

    victim.unlink()
    with pytest.raises(InputError, match="missing") as exc:
        ShardDataset(out, "train", "image", "time_series")
    assert str(victim) in str(exc.value)
