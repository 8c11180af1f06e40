"""Shard writing and reading: subject split, layout, atomicity, the torch Dataset."""

from __future__ import annotations

import json
import pickle

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from modalmerge.data.shards.dataset import ShardDataset, collate_samples
from modalmerge.data.shards.split_arrays import load_split_arrays, read_manifest
from modalmerge.data.shards.subjects import split_subjects, write_shards
from modalmerge.io import InputError

N_SUBJ, T, R, F = 8, 20, 5, 3
PARAMS = {
    "seed": 3,
    "fractions": {"train": 0.5, "val": 0.25, "test": 0.25},
    "window": 8,
    "stride": 4,
    "image_downsample": 2,
    "subjects_per_shard": 2,
}


def make_inputs(root, n=N_SUBJ):
    subjects = [f"sub-{i:03d}" for i in range(1, n + 1)]
    parc, anat, texts = [], [], []
    for i, sid in enumerate(subjects):
        path = root / "parcellated" / f"{sid}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        series = (np.arange(T)[:, None] + 100 * i + np.arange(R)[None]).astype(np.float32)
        np.savez(
            path, roi_timeseries=series, connectivity=np.eye(R, dtype=np.float32) * i,
            structural_features=np.full((R, F), i, np.float32),
            feature_names=np.array(["a", "b", "c"]), roi_labels=np.arange(1, R + 1), tr=2.0,
            roi_coords=np.arange(3 * R, dtype=np.float32).reshape(R, 3),
        )  # fmt: skip
        img = root / "preproc" / f"{sid}_T1w.nii.gz"
        img.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.full((6, 8, 5), i, np.float32), np.eye(4)), img)
        text = root / "raw" / f"{sid}_description.txt"
        text.parent.mkdir(parents=True, exist_ok=True)
        text.write_text(f"subject number {i}\n")
        parc.append(path), anat.append(img), texts.append(text)
    tsv = root / "raw" / "participants.tsv"
    rows = ["participant_id\tage\tsex\tgroup"] + [
        f"{s}\t{20 + i}\t{'FM'[i % 2]}\t{['control', 'patient'][i % 3 == 0]}"
        for i, s in enumerate(subjects)
    ]
    tsv.write_text("\n".join(rows) + "\n")
    return subjects, parc, anat, tsv, texts


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    subjects, parc, anat, tsv, texts = make_inputs(root)
    write_shards(subjects, parc, anat, tsv, texts, root / "shards", PARAMS)
    return root / "shards"


def test_split_is_deterministic_by_seed_and_independent_of_order():
    ids = [f"sub-{i:03d}" for i in range(20)]
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    a = split_subjects(ids, fractions, seed=1)
    assert a == split_subjects(ids[::-1], fractions, seed=1)
    assert a != split_subjects(ids, fractions, seed=2)
    assert [len(a[s]) for s in ("train", "val", "test")] == [14, 3, 3]


def test_no_subject_is_in_two_splits(shards):
    manifest = read_manifest(shards)
    groups = [set(manifest["splits"][s]) for s in ("train", "val", "test")]
    assert sum(map(len, groups)) == N_SUBJ == len(set.union(*groups))
    for split, group in zip(("train", "val", "test"), groups, strict=True):
        for entry in manifest["shards"]:
            if entry["split"] == split:
                with h5py.File(shards / entry["file"]) as h5:
                    assert set(h5["subjects/id"].asstr()[()]) <= group


def test_small_cohorts_still_fill_every_split():
    split = split_subjects(["a", "b", "c"], {"train": 0.7, "val": 0.15, "test": 0.15}, 0)
    assert all(len(v) == 1 for v in split.values())
    with pytest.raises(ValueError, match="cannot fill"):
        split_subjects(["a", "b"], {"train": 0.7, "val": 0.15, "test": 0.15}, 0)


def test_shard_layout_follows_the_contract(shards):
    manifest = read_manifest(shards)
    assert np.shape(manifest["roi_coords"]) == (R, 3)  # atlas centres travel with the labels
    assert manifest["roi_coords"][1] == [3.0, 4.0, 5.0]
    n_windows = (T - PARAMS["window"]) // PARAMS["stride"] + 1
    assert manifest["n_samples"]["train"] == 4 * n_windows
    assert manifest["shapes"]["image"] == [1, 3, 4, 2]  # (6, 8, 5) downsampled by 2
    entry = manifest["shards"][0]
    with h5py.File(shards / entry["file"]) as h5:
        assert h5.attrs["format_version"] == 1 and h5.attrs["split"] == entry["split"]
        assert h5.attrs["config_hash"] == manifest["config_hash"]
        ts = h5["samples/time_series"]
        assert ts.shape == (entry["n_samples"], 8, R) and ts.chunks == (1, 8, R)
        assert ts.dtype == np.float32
        assert h5["subjects/image"].chunks == (1, 1, 3, 4, 2)
        tab = h5["subjects/tabular"]
        assert list(tab.attrs["columns"]) == ["age", "sex", "group"]
        assert json.loads(tab.attrs["categories"]) == {
            "sex": ["F", "M"], "group": ["control", "patient"],
        }  # fmt: skip
        # the window holds the subject's series from window_start on
        sid = h5["subjects/id"].asstr()[h5["samples/subject_index"][1]]
        start = h5["samples/window_start"][1]
        i = int(sid[-3:]) - 1
        expected = np.arange(start, start + 8)[:, None] + 100 * i + np.arange(R)[None]
        assert np.array_equal(ts[1], expected)
        age = 20 + int(h5["subjects/id"].asstr()[0][-3:]) - 1
        stats = manifest["tabular"]
        z = (age - stats["numeric_mean"][0]) / stats["numeric_std"][0]
        assert h5["subjects/tabular"][0, 0] == pytest.approx(z, rel=1e-5)


def test_dataset_items_have_contract_shapes_and_dtypes(shards):
    class Tok:
        def encode(self, text, max_length):
            return [4 + len(w) for w in text.split()][:max_length]

    expected = {
        "image": ((1, 3, 4, 2), torch.float32), "time_series": ((8, R), torch.float32),
        "tabular": ((3,), torch.float32), "text": ((6,), torch.long),
        "structural_features": ((R, F), torch.float32), "connectivity": ((R, R), torch.float32),
    }  # fmt: skip
    for modality, (shape, dtype) in expected.items():
        ds = ShardDataset(
            shards, "val", modality, "time_series", tokenizer=Tok(), text_max_length=6
        )
        item = ds[len(ds) - 1]
        assert item["condition"].shape == shape and item["condition"].dtype == dtype
        assert item["time_offset"].dtype == torch.long
        assert item["time_offset"].item() == item["window_start"]
        assert item["subject"] in read_manifest(shards)["splits"]["val"]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["condition"].shape == (3, R, R) and batch["target"].shape == (3, 8, R)


def test_dataset_opens_files_lazily_and_never_pickles_handles(shards):
    ds = ShardDataset(shards, "train", "image", "time_series")
    assert ds._handles is None
    ds[0]
    assert ds._handles is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._handles is None and clone[0]["subject"] == ds[0]["subject"]
    with pytest.raises(ValueError, match="tokenizer"):
        ShardDataset(shards, "train", "text", "time_series")


def test_load_split_arrays_gives_subject_and_window_rows(shards):
    manifest = read_manifest(shards)
    conn = load_split_arrays(shards, "test", "connectivity")
    assert conn["data"].shape == (2, R, R) and sorted(conn["subject"]) == manifest["splits"]["test"]
    series = load_split_arrays(shards, "test", "time_series")
    assert series["data"].shape == (manifest["n_samples"]["test"], 8, R)
    assert len(series["subject"]) == len(series["window_start"]) == len(series["data"])
    text = load_split_arrays(shards, "test", "text")
    assert all(t.startswith("subject number") for t in text["data"])


def test_write_shards_is_atomic_and_names_broken_files(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path, n=4)
    out = tmp_path / "shards"
    params = {**PARAMS, "fractions": {"train": 0.5, "val": 0.25, "test": 0.25}}
    write_shards(subjects, parc, anat, tsv, texts, out, params)
    before = (out / "manifest.json").read_text()
    bad = dict(np.load(parc[2]))
    bad["roi_timeseries"][3, 1] = np.nan
    np.savez(parc[2], **bad)
    with pytest.raises(InputError, match="NaN") as exc:
        write_shards(subjects, parc, anat, tsv, texts, out, {**params, "seed": 9})
    assert str(parc[2]) in str(exc.value)
    assert (out / "manifest.json").read_text() == before  # old output untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    parc[2].write_bytes(b"not a zip")
    with pytest.raises(InputError, match="unreadable") as exc:
        write_shards(subjects, parc, anat, tsv, texts, out, params)
    assert str(parc[2]) in str(exc.value)


def test_write_shards_rejects_bad_params_and_missing_participants(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path, n=4)
    with pytest.raises(ValueError, match=r"shard\.windows: unknown key"):
        write_shards(subjects, parc, anat, tsv, texts, tmp_path / "s", {"windows": 3})
    tsv.write_text("participant_id\tage\nsub-001\t20\n")
    with pytest.raises(InputError, match="no row") as exc:
        write_shards(subjects, parc, anat, tsv, texts, tmp_path / "s", PARAMS)
    assert str(tsv) in str(exc.value)
    ages = ["n/a"] + ["30"] * (len(subjects) - 1)  # one gap; a column all n/a is dropped
    tsv.write_text(
        "participant_id\tage\n"
        + "".join(f"{s}\t{a}\n" for s, a in zip(subjects, ages, strict=True))
    )
    with pytest.raises(InputError, match="missing values"):
        write_shards(subjects, parc, anat, tsv, texts, tmp_path / "s", PARAMS)


def _compressed_copy(src, dst):
    """The same shards with every dataset rewritten gzip-compressed."""
    dst.mkdir()
    (dst / "manifest.json").write_text((src / "manifest.json").read_text())
    for path in src.glob("*.h5"):
        with h5py.File(path, "r") as a, h5py.File(dst / path.name, "w") as b:
            b.attrs.update(a.attrs)

            def copy(name, obj, b=b):
                if isinstance(obj, h5py.Dataset):
                    opts = {"compression": "gzip"} if obj.ndim > 1 else {}
                    new = b.create_dataset(name, data=obj[()], chunks=obj.chunks, **opts)
                    new.attrs.update(obj.attrs)

            a.visititems(copy)


def test_memmap_path_serves_samples_identical_to_h5py_and_compressed_falls_back(shards, tmp_path):
    _compressed_copy(shards, tmp_path / "gz")
    fast = ShardDataset(shards, "train", "image", "time_series")
    slow = ShardDataset(tmp_path / "gz", "train", "image", "time_series")
    with h5py.File(shards / fast.files[0], "r") as h5:
        expected = h5["samples/time_series"][1]
    for i in range(len(fast)):
        a, b = fast[i], slow[i]
        assert torch.equal(a["target"], b["target"]) and torch.equal(a["condition"], b["condition"])
        assert a["subject"] == b["subject"] and a["window_start"] == b["window_start"]
    assert np.array_equal(fast[1]["target"].numpy(), expected)
    assert fast._maps[0, "samples/time_series"] is not None  # served from the memmap
    assert slow._maps[0, "samples/time_series"] is None  # gzip: read through h5py


def test_get_batch_equals_default_collate_of_items_across_files(shards):
    ds = ShardDataset(shards, "train", "structural_features", "time_series")
    indices = [len(ds) - 1, 0, 3, -2, 1]  # spans both train files, out of order
    got = ds.get_batch(indices)
    want = torch.utils.data.default_collate([ds[i] for i in indices])
    assert set(got) == set(want) and got["subject"] == want["subject"]
    for key in ("condition", "target", "time_offset", "window_start"):
        assert torch.equal(got[key], want[key]), key
    items = ds.__getitems__(indices)
    assert len(items) == len(indices) and items[2]["window_start"] == ds[3]["window_start"]
    assert torch.equal(torch.utils.data.default_collate(items)["target"], want["target"])
    with pytest.raises(IndexError):
        ds.get_batch([0, len(ds)])


def test_dataloader_with_two_workers_reads_every_sample_once(shards):
    from modalmerge.data.shards.dataset import collate_samples

    ds = ShardDataset(shards, "train", "image", "time_series")
    loader = torch.utils.data.DataLoader(
        ds, batch_size=3, num_workers=2, collate_fn=collate_samples
    )
    batches = list(loader)
    assert ds._handles is None  # only the workers opened the files
    seen = torch.cat([b["target"] for b in batches])
    assert seen.shape[0] == len(ds) and batches[0]["condition"].shape[1:] == (1, 3, 4, 2)
    assert torch.equal(seen, ds.get_batch(range(len(ds)))["target"])


def test_numeric_columns_are_z_scored_with_training_subjects_only(shards):
    manifest = read_manifest(shards)
    train_ages = np.array([20 + int(s[4:]) - 1 for s in manifest["splits"]["train"]], float)
    assert manifest["tabular"]["numeric_mean"] == pytest.approx([train_ages.mean()])
    assert manifest["tabular"]["numeric_std"] == pytest.approx([train_ages.std()])
    train = load_split_arrays(shards, "train", "tabular")["data"]
    assert train[:, 0].mean() == pytest.approx(0.0, abs=1e-5)
    assert train[:, 0].std() == pytest.approx(1.0, abs=1e-4)
    test = load_split_arrays(shards, "test", "tabular")
    ages = np.array([20 + int(s[4:]) - 1 for s in test["subject"]], float)
    expected = (ages - train_ages.mean()) / train_ages.std()
    np.testing.assert_allclose(test["data"][:, 0], expected, rtol=1e-5)
    # categorical codes are untouched integers
    assert np.all(np.mod(test["data"][:, 1:], 1) == 0)


class _Tok:
    def encode(self, text, max_length):
        return [4 + len(w) for w in text.split()][:max_length]


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def torch_threads(request):
    """Run with 1 and 2 torch threads: one-file windows are gathered by numpy or by torch."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("split", ["train", "val"])  # train: two files, val: one
@pytest.mark.parametrize(
    ("condition", "target"),
    [("text", "image"), ("connectivity", "tabular"), ("image", "time_series")],
)
def test_get_batch_equals_default_collate_for_every_modality(
    shards, split, condition, target, torch_threads
):
    ds = ShardDataset(shards, split, condition, target, tokenizer=_Tok(), text_max_length=6)
    n = len(ds)
    indices = [n - 1, 0, -1, -n, n // 2, 1, n - 1]  # negatives and repeats
    got = collate_samples(ds.__getitems__(indices))
    want = torch.utils.data.default_collate([ds[i] for i in indices])
    assert got["subject"] == want["subject"]
    for key in ("condition", "target", "time_offset", "window_start"):
        assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key
    with pytest.raises(IndexError, match="out of range"):
        ds.get_batch([0, -n - 1])


def test_get_batch_survives_close_and_pickling(shards):
    ds = ShardDataset(shards, "val", "structural_features", "time_series")
    first = ds.get_batch([0, 2])
    ds.close()
    again = ds.get_batch([0, 2])
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._index is None  # lookups are rebuilt in the new process, not pickled
    for batch in (again, clone.get_batch([0, 2])):
        assert (
            torch.equal(batch["target"], first["target"]) and batch["subject"] == first["subject"]
        )


def _drop_series(paths):
    """Rewrite parcellated files as anatomy-only data writes them (no BOLD)."""
    for path in paths:
        with np.load(path) as npz:
            kept = {
                k: npz[k] for k in npz.files if k not in ("roi_timeseries", "connectivity", "tr")
            }
        np.savez(path, **kept)


def test_anatomy_only_subjects_give_one_sample_each(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    _drop_series(parc)
    write_shards(subjects, parc, anat, tsv, None, tmp_path / "shards", PARAMS)
    manifest = read_manifest(tmp_path / "shards")
    assert "time_series" not in manifest["shapes"] and "connectivity" not in manifest["shapes"]
    assert sum(manifest["n_samples"].values()) == N_SUBJ
    data = ShardDataset(tmp_path / "shards", "train", "image", "tabular")
    assert len(data) == len(manifest["splits"]["train"])
    assert data[0]["condition"].shape == (1, 3, 4, 2) and data[0]["window_start"] == 0
    with pytest.raises(ValueError, match="'time_series' is not in these shards"):
        ShardDataset(tmp_path / "shards", "train", "image", "time_series")


def test_a_cohort_mixing_bold_and_anatomy_only_subjects_names_the_odd_file(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    _drop_series(parc[1:])
    with pytest.raises(InputError, match="ROI time series, unlike the other subjects"):
        write_shards(subjects, parc, anat, tsv, None, tmp_path / "shards", {**PARAMS, "seed": 0})
    assert not (tmp_path / "shards").exists()


def test_split_by_time_needs_time_series(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    _drop_series(parc)
    with pytest.raises(InputError, match="split_by time needs ROI time series"):
        write_shards(
            subjects, parc, anat, tsv, None, tmp_path / "shards", {**PARAMS, "split_by": "time"}
        )


def test_extra_anatomy_becomes_named_image_channels(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    seg = []
    for sid in subjects:
        labels = np.zeros((6, 8, 5), np.float32)
        labels[0::2] = 4  # alternate slices: a block mean would give 2, picking keeps 0/4
        path = tmp_path / "preproc" / f"{sid}_dseg.nii.gz"
        nib.save(nib.Nifti1Image(labels, np.eye(4)), path)
        seg.append(path)
    write_shards(
        subjects, parc, anat, tsv, None, tmp_path / "shards", PARAMS,
        extra_anatomy={"dseg": seg}, label_channels=["dseg"],
    )  # fmt: skip
    manifest = read_manifest(tmp_path / "shards")
    assert manifest["image_channels"] == ["T1w", "dseg"]
    assert manifest["label_channels"] == ["dseg"] and manifest["shapes"]["image"] == [2, 3, 4, 2]
    data = ShardDataset(
        tmp_path / "shards", "train", "image", "image",
        condition_channels="T1w", target_channels=["dseg"],
    )  # fmt: skip
    item = data[0]
    assert item["condition"].shape == (1, 3, 4, 2) and item["target"].shape == (1, 3, 4, 2)
    assert set(np.unique(item["target"].numpy())) <= {0.0, 4.0}
    batch = data.__getitems__([0, 1])
    assert tuple(batch[1]["target"].shape) == (1, 3, 4, 2)
    with pytest.raises(ValueError, match="target_channels applies to image"):
        ShardDataset(tmp_path / "shards", "train", "image", "tabular", target_channels="dseg")
    with pytest.raises(ValueError, match="not among extra_anatomy"):
        write_shards(
            subjects, parc, anat, tsv, None, tmp_path / "s2", PARAMS, label_channels=["dseg"]
        )
    with pytest.raises(ValueError, match="dseg"):  # a path of another subject
        write_shards(
            subjects, parc, anat, tsv, None, tmp_path / "s3", PARAMS,
            extra_anatomy={"dseg": seg[::-1]},
        )  # fmt: skip


def test_tangent_connectivity_is_referenced_to_training_subjects_only(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    rng = np.random.default_rng(0)
    for path in parc:  # realistic series: random, so covariances are full rank
        with np.load(path) as npz:
            kept = {k: npz[k] for k in npz.files}
        kept["roi_timeseries"] = rng.normal(size=(40, R)).astype(np.float32)
        np.savez(path, **kept)
    params = {**PARAMS, "connectivity": "tangent"}
    write_shards(subjects, parc, anat, tsv, None, tmp_path / "a", params)
    manifest = read_manifest(tmp_path / "a")
    assert manifest["connectivity"] == "tangent"
    train = load_split_arrays(tmp_path / "a", "train", "connectivity")
    # the reference is the training subjects' geometric mean: their tangent vectors average ~0
    assert np.abs(train["data"].mean(axis=0)).max() < 0.05
    assert np.abs(train["data"]).max() > 0.1
    # changing a held-out subject's data leaves every training subject's matrix unchanged
    held = manifest["splits"]["test"][0]
    path = parc[subjects.index(held)]
    with np.load(path) as npz:
        kept = {k: npz[k] for k in npz.files}
    kept["roi_timeseries"] = rng.normal(size=(40, R)).astype(np.float32)
    np.savez(path, **kept)
    write_shards(subjects, parc, anat, tsv, None, tmp_path / "b", params)
    again = load_split_arrays(tmp_path / "b", "train", "connectivity")
    np.testing.assert_array_equal(train["data"], again["data"])
    _drop_series(parc)
    with pytest.raises(InputError, match="tangent connectivity needs ROI time series"):
        write_shards(subjects, parc, anat, tsv, None, tmp_path / "c", params)
    with pytest.raises(ValueError, match=r"shard\.connectivity: must be one of 'tangent' or null"):
        write_shards(
            subjects, parc, anat, tsv, None, tmp_path / "d", {**PARAMS, "connectivity": "x"}
        )


def _censor(path, censored):
    """Rewrite a parcellated file as a scrubbed run leaves it: the censored volumes'
    rows are gone, the others keep their original index."""
    with np.load(path) as npz:
        arrays = dict(npz)
    keep = np.setdiff1d(np.arange(T), censored)
    arrays["roi_timeseries"] = arrays["roi_timeseries"][keep]
    arrays["volume_index"], arrays["n_volumes"] = keep, np.int64(T)
    np.savez(path, **arrays)


@pytest.mark.parametrize("split_by", ["subject", "time"])
def test_windows_never_hold_a_censored_volume_and_the_manifest_counts_them(tmp_path, split_by):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    # subject position -> censored volumes (a time split's test block holds one window)
    censored = {0: [5], 3: [0, 19]} if split_by == "subject" else {0: [1], 3: [0, 2]}
    for i, volumes in censored.items():
        _censor(parc[i], volumes)
    params = {**PARAMS, "split_by": split_by, "gap": 0}
    if split_by == "time":
        params["fractions"] = {"train": 0.6, "val": 0.0, "test": 0.4}
    write_shards(subjects, parc, anat, tsv, texts, tmp_path / "shards", params)
    manifest = read_manifest(tmp_path / "shards")
    window, stride = params["window"], params["stride"]
    seen = {s: [] for s in subjects}
    for entry in manifest["shards"]:
        with h5py.File(tmp_path / "shards" / entry["file"]) as h5:
            ids = h5["subjects/id"].asstr()[()]
            for k in range(len(h5["samples/window_start"])):
                sid = ids[h5["samples/subject_index"][k]]
                start = int(h5["samples/window_start"][k])
                i = subjects.index(sid)
                volumes = set(range(start, start + window))
                assert not volumes & set(censored.get(i, []))  # no window bridges a gap
                # the window holds the original volumes start..start+window-1
                expected = np.arange(start, start + window)[:, None] + 100 * i + np.arange(R)
                assert np.array_equal(h5["samples/time_series"][k], expected)
                seen[sid].append(start)
    candidates = list(range(0, T - window + 1, stride))  # 0, 4, 8, 12
    if split_by == "subject":
        assert seen[subjects[1]] == candidates  # uncensored subjects keep every window
        assert seen[subjects[0]] == [8, 12]  # volume 5 lies in the windows at 0 and 4
        assert seen[subjects[3]] == [4, 8]  # volumes 0 and 19
    record = manifest["censoring"]
    assert record["censored_volumes"] == 3
    assert set(record["subjects"]) == {subjects[0], subjects[3]}
    assert record["subjects"][subjects[0]]["censored_volumes"] == 1
    assert record["subjects"][subjects[3]]["censored_volumes"] == 2
    if split_by == "subject":
        assert record["subjects"][subjects[0]]["dropped_windows"] == 2
        assert record["subjects"][subjects[3]]["dropped_windows"] == 2
        assert record["dropped_windows"] == 4
        n_all = N_SUBJ * len(candidates)
        assert sum(manifest["n_samples"].values()) == n_all - 4
    else:  # train block 0..11 (windows at 0 and 4), test block 12..19 (one window)
        assert seen[subjects[0]] == seen[subjects[3]] == [4, 12]
        assert seen[subjects[1]] == [0, 4, 12]
        assert record["dropped_windows"] == 2


def test_a_run_whose_every_window_is_censored_is_an_error_naming_it(tmp_path):
    subjects, parc, anat, tsv, texts = make_inputs(tmp_path)
    _censor(parc[2], [3, 7, 11, 15])  # a censored volume in every 8-volume window
    with pytest.raises(InputError, match="censored") as exc:
        write_shards(subjects, parc, anat, tsv, texts, tmp_path / "shards", PARAMS)
    assert str(parc[2]) in str(exc.value)
    assert not (tmp_path / "shards").exists()


def test_uncensored_runs_record_no_censoring(shards):
    record = read_manifest(shards)["censoring"]
    assert record["censored_volumes"] == 0 and record["dropped_windows"] == 0
    assert record["subjects"] == {}
