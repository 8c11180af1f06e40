"""Time-blocked splits (one long run held out in time) and ROI views of the time series."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from modalmerge.data.shards.dataset import ShardDataset
from modalmerge.data.shards.split_arrays import read_manifest, roi_columns, roi_names
from modalmerge.data.shards.subjects import time_blocks, write_shards
from modalmerge.io import InputError

T, NAMES = 120, ["insula_L", "cuneus_L", "precuneus_L", "insula_R", "cuneus_R", "precuneus_R"]
PARAMS = {
    "split_by": "time",
    "fractions": {"train": 0.6, "val": 0.2, "test": 0.2},
    "gap": 6,
    "window": 10,
    "stride": 5,
}


def make_run(root, n_subjects=1, n_time=T, texts=False, columns="participant_id\tage\n"):
    subjects = [f"sub-{i:02d}" for i in range(1, n_subjects + 1)]
    parc, anat, text_paths = [], [], []
    for i, sid in enumerate(subjects):
        path = root / f"{sid}.npz"
        # value = volume index * 10 + ROI column: every read can be checked exactly
        series = (np.arange(n_time)[:, None] * 10 + np.arange(len(NAMES))).astype(np.float32)
        np.savez(
            path, roi_timeseries=series + 1000 * i,
            connectivity=np.eye(len(NAMES), dtype=np.float32),
            structural_features=np.zeros((len(NAMES), 2), np.float32),
            feature_names=np.array(["a", "b"]), roi_labels=np.arange(1, len(NAMES) + 1),
            roi_names=np.array(NAMES), tr=1.0,
        )  # fmt: skip
        img = root / f"{sid}_T1w.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((len(NAMES), 1, 1), np.float32), np.eye(4)), img)
        text = root / f"{sid}_description.txt"
        text.write_text("a text")
        parc.append(path), anat.append(img), text_paths.append(text)
    tsv = root / "participants.tsv"
    tsv.write_text(columns + "".join(f"{s}\tn/a\n" for s in subjects))
    return subjects, parc, anat, tsv, (text_paths if texts else None)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("time")
    subjects, parc, anat, tsv, texts = make_run(root)
    write_shards(subjects, parc, anat, tsv, texts, root / "shards", PARAMS)
    return root / "shards"


def test_time_blocks_are_ordered_disjoint_and_separated_by_the_gap():
    blocks = time_blocks(120, {"train": 0.6, "val": 0.2, "test": 0.2}, window=10, gap=6)
    (a0, a1), (b0, b1), (c0, c1) = blocks["train"], blocks["val"], blocks["test"]
    assert a0 == 0 and c1 == 120
    assert b0 - a1 == 6 and c0 - b1 == 6
    assert (a1 - a0, b1 - b0) == (65, 22)  # 0.6 and 0.2 of the 108 usable volumes
    with pytest.raises(ValueError, match="val block has .* fewer than the window"):
        time_blocks(40, {"train": 0.8, "val": 0.1, "test": 0.1}, window=10, gap=6)


def test_one_subject_sits_in_every_split_with_windows_only_inside_its_block(one_run):
    manifest = read_manifest(one_run)  # a subject in several splits is allowed for time splits
    assert manifest["split_by"] == "time"
    assert all(manifest["splits"][s] == ["sub-01"] for s in ("train", "val", "test"))
    blocks = time_blocks(T, PARAMS["fractions"], 10, 6)
    used = {}
    for split in ("train", "val", "test"):
        ds = ShardDataset(one_run, split, "time_series", "time_series")
        batch = ds.get_batch(list(range(len(ds))))
        starts = batch["window_start"].numpy()
        lo, hi = blocks[split]
        assert starts.min() >= lo and starts.max() + 10 <= hi
        volumes = batch["target"][:, :, 0].numpy() / 10  # column 0 holds volume * 10
        np.testing.assert_array_equal(volumes, starts[:, None] + np.arange(10))
        used[split] = set(volumes.ravel().astype(int))
    assert not used["train"] & used["val"] and not used["val"] & used["test"]
    assert min(used["val"]) - max(used["train"]) > 6  # the gap keeps blocks apart


def test_roi_views_select_columns_by_pattern_or_name(one_run):
    manifest = read_manifest(one_run)
    left = roi_columns(manifest, "_L$")
    np.testing.assert_array_equal(left, [0, 1, 2])
    np.testing.assert_array_equal(roi_columns(manifest, ["precuneus_R", 4]), [5, 3])
    assert roi_names(manifest, left) == NAMES[:3] and roi_columns(manifest, None) is None
    ds = ShardDataset(
        one_run, "train", "time_series", "time_series", condition_rois="_L$", target_rois="_R$"
    )
    item, batch = ds[2], ds.get_batch([2, 0])
    assert item["condition"].shape == (10, 3) and item["target"].shape == (10, 3)
    assert torch.equal(batch["condition"][0], item["condition"])
    full = ShardDataset(one_run, "train", "time_series", "time_series")[2]["target"]
    assert torch.equal(item["target"], full[:, 3:]) and torch.equal(item["condition"], full[:, :3])


@pytest.mark.parametrize(
    ("selector", "message"),
    [("_X$", "matches no ROI"), (["nowhere_L"], "no ROI named"), ("(", "not a regular")],
)
def test_bad_roi_selectors_name_the_problem(one_run, selector, message):
    with pytest.raises(ValueError, match=message):
        ShardDataset(one_run, "train", "time_series", "time_series", condition_rois=selector)


def test_roi_views_apply_to_time_series_only(one_run):
    with pytest.raises(ValueError, match="target_rois applies to time_series"):
        ShardDataset(one_run, "train", "time_series", "connectivity", target_rois="_R$")


def test_data_without_texts_and_with_empty_columns_shards(tmp_path):
    subjects, parc, anat, tsv, _ = make_run(tmp_path, n_subjects=3)
    params = {
        **PARAMS,
        "split_by": "subject",
        "fractions": {"train": 0.34, "val": 0.33, "test": 0.33},
    }
    write_shards(subjects, parc, anat, tsv, None, tmp_path / "shards", params)
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["tabular"]["columns"] == []  # the all-n/a age column carries nothing
    assert manifest["roi_names"] == NAMES


def test_a_run_too_short_for_the_blocks_is_an_error_naming_the_file(tmp_path):
    subjects, parc, anat, tsv, texts = make_run(tmp_path, n_time=40)
    with pytest.raises(InputError, match=r"sub-01\.npz.*fewer than the window"):
        write_shards(subjects, parc, anat, tsv, texts, tmp_path / "shards", PARAMS)
    assert not (tmp_path / "shards").exists()


def test_subject_splits_still_reject_a_subject_in_two_splits(one_run, tmp_path):
    manifest = json.loads((one_run / "manifest.json").read_text())
    manifest["split_by"] = "subject"
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in one_run.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="sub-01 is in both"):
        read_manifest(copy)
