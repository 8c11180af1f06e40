"""The 4D view of the shards (shard.volume_series): windows of BOLD volumes and task conditions."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from modalmerge.data.shards.dataset import ShardDataset, collate_samples
from modalmerge.data.shards.split_arrays import read_manifest
from modalmerge.data.shards.subjects import write_shards
from modalmerge.io import InputError
from tests.test_shards import PARAMS, T, make_inputs

VOLUMES = {"enabled": True, "downsample": 2, "label_lag_s": 4.0}
GRID = (6, 8, 5)  # the T1's grid: (6, 8, 5) -> (3, 4, 2) at downsample 2


def write_bold(root, subjects, n_volumes=T):
    """BOLD whose voxel (x, y, z) of volume t holds 1000 * subject + t (block means keep it)."""
    paths = []
    for i, sid in enumerate(subjects):
        data = np.broadcast_to(
            (1000.0 * i + np.arange(n_volumes, dtype=np.float32)), (*GRID, n_volumes)
        ).copy()
        data[0, 0, 0] += 8.0  # one voxel of the first 2^3 block: its mean moves by 1
        path = root / "preproc" / f"{sid}_desc-clean_bold.nii.gz"
        nib.save(nib.Nifti1Image(data, np.eye(4)), path)
        paths.append(path)
    return paths


def write_events(root):
    # TR 2 s, lag 4 s: volume v is at 2 v - 4 s; event A covers volumes 4-6, B 10-11
    path = root / "raw" / "task-x_events.tsv"
    path.write_text("onset\tduration\ttrial_type\n4\t6\tA\n16\t4\tB\n")
    return path


@pytest.fixture(scope="module")
def volume_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("volumes")
    subjects, parc, anat, tsv, texts = make_inputs(root)
    bold = write_bold(root, subjects)
    events = write_events(root)
    params = PARAMS | {"volume_series": VOLUMES}
    write_shards(subjects, parc, anat, tsv, texts, root / "out", params, bold=bold, events=events)
    return root / "out"


def test_each_window_of_volumes_is_the_same_window_as_its_roi_series(volume_shards):
    manifest = read_manifest(volume_shards)
    window = PARAMS["window"]
    assert manifest["shapes"]["volume_series"] == [window, 3, 4, 2]
    assert manifest["shapes"]["task_condition"] == [window]
    assert manifest["volume_series"]["task_conditions"] == ["rest", "A", "B"]
    data = ShardDataset(volume_shards, "train", "volume_series", "time_series")
    for k in (0, len(data) - 1):
        item = data[k]
        volumes, series = item["condition"], item["target"]
        assert volumes.shape == (window, 3, 4, 2)
        subject = int(item["subject"][-3:]) - 1
        start = item["window_start"]
        expected = 1000.0 * subject + np.arange(start, start + window)
        np.testing.assert_allclose(volumes[:, 1, 1, 1].numpy(), expected)
        np.testing.assert_allclose(volumes[:, 0, 0, 0].numpy(), expected + 1.0)  # block mean
        assert series[0, 0] == start + 100 * subject  # make_inputs' series: t + 100 i + roi


def test_task_condition_codes_follow_the_events_shifted_by_the_lag(volume_shards):
    data = ShardDataset(volume_shards, "val", "volume_series", "task_condition")
    batch = collate_samples(data.__getitems__(list(range(len(data)))))
    codes = np.zeros(T)
    codes[4:7], codes[10:12] = 1, 2  # A: 4 s <= 2 v - 4 < 10 s; B: 16 <= 2 v - 4 < 20
    for target, start in zip(batch["target"], batch["window_start"].tolist(), strict=True):
        np.testing.assert_array_equal(target.numpy(), codes[start : start + PARAMS["window"]])
    assert batch["condition"].dtype == torch.float32


def test_volume_series_off_writes_no_volumes_and_needs_no_bold(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    write_shards(subjects, parc, anat, tsv, texts, tmp_path / "out", PARAMS)
    manifest = read_manifest(tmp_path / "out")
    assert "volume_series" not in manifest["shapes"] and "volume_series" not in manifest
    assert "volume_series" not in json.dumps(manifest["params"])  # identity as before
    with pytest.raises(ValueError, match="shard.volume_series.enabled"):
        ShardDataset(tmp_path / "out", "train", "volume_series", "time_series")


def test_a_bold_run_of_the_wrong_length_is_refused_naming_it(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    bold = write_bold(tmp_path, subjects)
    short = write_bold(tmp_path, subjects[:1], n_volumes=T - 3)[0]
    bold[0] = short
    params = PARAMS | {"volume_series": VOLUMES}
    with pytest.raises(InputError, match=r"sub-001_desc-clean_bold.*17 volumes"):
        write_shards(subjects, parc, anat, tsv, texts, tmp_path / "out", params, bold=bold)


def test_enabled_without_bold_is_refused(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    params = PARAMS | {"volume_series": VOLUMES}
    with pytest.raises(ValueError, match="needs the subjects' cleaned BOLD"):
        write_shards(subjects, parc, anat, tsv, texts, tmp_path / "out", params)
