"""Parcellate stage: ROI means equal nilearn's, npz contents, broken inputs."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from _nifti_fixtures import AFFINE, N_ROI, TR, write_atlas, write_subject
from nilearn.maskers import NiftiLabelsMasker

from modalmerge.data.parcellation import parcellate, roi_kernel
from modalmerge.data.parcellation.parcellate import FEATURE_NAMES, parcellate_subject, roi_means
from modalmerge.data.preprocess import preprocess_subject
from modalmerge.io import InputError


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    root = tmp_path_factory.mktemp("parc")
    atlas, labels = write_atlas(root / "atlas")
    t1, bold = write_subject(root / "raw")
    out_t1, out_bold = root / "preproc" / "t1.nii.gz", root / "preproc" / "bold.nii.gz"
    preprocess_subject(t1, bold, atlas, out_t1, out_bold, {"low_pass": 0.2})
    return {"t1": out_t1, "bold": out_bold, "atlas": atlas, "labels": labels, "root": root}


@pytest.fixture(params=["numba", "numpy"])
def kernel(request, monkeypatch):
    """Run a test through the compiled kernel and through the numpy fallback."""
    if request.param == "numba":
        pytest.importorskip("numba")
        monkeypatch.setattr(roi_kernel, "HAVE_NUMBA", True)
        monkeypatch.setattr(roi_kernel, "MIN_ELEMENTS", 0)
    else:
        monkeypatch.setattr(roi_kernel, "HAVE_NUMBA", False)
    return request.param


def masker_means(data, labels):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masker = NiftiLabelsMasker(nib.Nifti1Image(labels, AFFINE), strategy="mean")
        return masker.fit_transform(nib.Nifti1Image(data, AFFINE))


@pytest.mark.parametrize("order", ["F", "C"])
def test_roi_means_equal_nilearn_labels_masker(order, kernel):
    rng = np.random.default_rng(1)
    data = (rng.standard_normal((9, 8, 7, 25)) * 4 + 10).astype(np.float32)
    labels = rng.choice([0, 2, 3, 7, 11], size=(9, 8, 7)).astype(np.int32)  # gaps in numbering
    expected = masker_means(data, labels)
    got = roi_means(np.asarray(data, order=order), labels)
    assert got.shape == expected.shape == (25, 4) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-5


def test_roi_means_accepts_3d_2d_and_strided_input(kernel):
    rng = np.random.default_rng(2)
    data = rng.standard_normal((6, 5, 4, 10)).astype(np.float32)
    labels = rng.integers(0, 4, (6, 5, 4))
    full = roi_means(data, labels)
    assert np.allclose(roi_means(data[..., 3], labels), full[3:4], atol=1e-6)
    assert np.allclose(roi_means(data[..., ::2], labels), full[::2], atol=1e-6)
    flat = roi_means(data.reshape(-1, 10), labels.reshape(-1))
    assert np.allclose(flat, full, atol=1e-6)
    picked = roi_means(data, labels, roi_labels=np.array([3, 1]))
    assert np.allclose(picked, full[:, [2, 0]], atol=1e-6)


def test_roi_means_rejects_empty_regions_and_shape_mismatch():
    data = np.zeros((4, 4, 4, 3), np.float32)
    labels = np.ones((4, 4, 4), int)
    with pytest.raises(ValueError, match="no voxel"):
        roi_means(data, labels, roi_labels=np.array([1, 5]))
    with pytest.raises(ValueError, match="grid"):
        roi_means(data, labels[:3])


def test_parcellate_writes_series_connectivity_and_features(preprocessed):
    out = preprocessed["root"] / "parcellated" / "sub-001.npz"
    parcellate_subject(
        preprocessed["t1"], preprocessed["bold"], preprocessed["atlas"],
        preprocessed["labels"], out, {},
    )  # fmt: skip
    with np.load(out) as npz:
        series, conn = npz["roi_timeseries"], npz["connectivity"]
        features = npz["structural_features"]
        assert series.shape == (40, N_ROI) and series.dtype == np.float32
        assert conn.shape == (N_ROI, N_ROI) and np.allclose(np.diag(conn), 1, atol=1e-5)
        assert np.allclose(conn, conn.T, atol=1e-6)
        assert features.shape == (N_ROI, len(FEATURE_NAMES))
        assert list(npz["feature_names"]) == list(FEATURE_NAMES)
        assert npz["roi_labels"].tolist() == list(range(1, N_ROI + 1))
        assert float(npz["tr"]) == pytest.approx(TR)
    # the fixture's T1 brightens with the label: mean intensity must rank the same way
    assert np.all(np.diff(features[:, FEATURE_NAMES.index("t1_mean")]) > 0)
    fraction = features[:, FEATURE_NAMES.index("tissue_fraction")]
    assert np.all((fraction >= 0) & (fraction <= 1))
    assert not list(out.parent.glob(".tmp-*"))


def test_parcellate_partial_correlation_and_rejects_tangent(preprocessed, tmp_path):
    out = tmp_path / "sub-001.npz"
    args = (preprocessed["t1"], preprocessed["bold"], preprocessed["atlas"], preprocessed["labels"])
    parcellate_subject(*args, out, {"connectivity": "partial correlation"})
    with np.load(out) as npz:
        assert str(npz["connectivity_kind"]) == "partial correlation"
    with pytest.raises(ValueError, match="group-level"):
        parcellate_subject(*args, out, {"connectivity": "tangent"})
    with pytest.raises(ValueError, match=r"parcellate\.kind: unknown key"):
        parcellate_subject(*args, out, {"kind": "correlation"})


def test_parcellate_rejects_bold_off_the_atlas_grid(preprocessed, tmp_path):
    _, raw_bold = write_subject(tmp_path, affine=np.diag([4.0, 4, 4, 1]), shape=(5, 6, 5))
    with pytest.raises(InputError, match="not on the atlas grid") as exc:
        parcellate_subject(
            preprocessed["t1"], raw_bold, preprocessed["atlas"], preprocessed["labels"],
            tmp_path / "out.npz", {},
        )  # fmt: skip
    assert str(raw_bold) in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "out.npz").exists()


def test_parcellate_rejects_labels_table_that_disagrees_with_atlas(preprocessed, tmp_path):
    labels = tmp_path / "labels.tsv"
    labels.write_text(preprocessed["labels"].read_text() + "9\textra\t0\t0\t0\n")
    with pytest.raises(InputError, match=r"listed but absent \[9\]") as exc:
        parcellate_subject(
            preprocessed["t1"], preprocessed["bold"], preprocessed["atlas"], labels,
            tmp_path / "out.npz", {},
        )  # fmt: skip
    assert str(labels) in str(exc.value)


def test_parcellate_rejects_a_bold_without_tr(preprocessed, tmp_path):
    img = nib.load(preprocessed["bold"])
    bold = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(img.get_fdata(dtype=np.float32), img.affine), bold)  # no time unit
    with pytest.raises(InputError, match="no repetition time") as exc:
        parcellate_subject(
            preprocessed["t1"], bold, preprocessed["atlas"], preprocessed["labels"],
            tmp_path / "out.npz", {},
        )  # fmt: skip
    assert str(bold) in str(exc.value)


@pytest.mark.parametrize("order", ["F", "C"])
def test_roi_means_equal_masker_with_one_voxel_regions_and_uneven_rows(order, kernel):
    rng = np.random.default_rng(4)
    shape = (13, 11, 9)  # 13-voxel x-rows: the row blocks do not divide the grid
    data = (rng.standard_normal((*shape, 7)) * 3 + 10).astype(np.float32)
    labels = np.zeros(shape, np.int32)
    labels[2:11, 1:10, 1:8] = rng.choice([4, 9, 30], size=(9, 9, 7))
    labels[0, 0, 0], labels[12, 10, 8], labels[6, 5, 0] = 41, 42, 43  # single voxels
    expected = masker_means(data, labels)
    got = roi_means(np.asarray(data, order=order), labels)
    assert got.shape == (7, 6)
    assert np.abs(got - expected).max() <= 1e-5


def test_roi_means_cached_plan_follows_changed_labels(kernel):
    rng = np.random.default_rng(5)
    data = np.asfortranarray(rng.standard_normal((8, 7, 6, 5)).astype(np.float32))
    labels = rng.integers(1, 4, (8, 7, 6)).astype(np.int32)
    first = roi_means(data, labels)
    labels[0, 0, 0] = 3 if labels[0, 0, 0] != 3 else 1  # same atlas bar one voxel
    second = roi_means(data, labels)
    assert np.abs(second - masker_means(data, labels)).max() <= 1e-5
    assert not np.allclose(first, second)


@pytest.mark.parametrize("order", ["F", "C"])
def test_roi_means_uses_the_compiled_kernel_when_numba_is_installed(order, monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setattr(roi_kernel, "HAVE_NUMBA", True)
    monkeypatch.setattr(roi_kernel, "MIN_ELEMENTS", 0)

    def numpy_path(*args, **kwargs):
        raise AssertionError("numpy fallback used although numba is available")

    monkeypatch.setattr(parcellate, "column_plan", numpy_path)
    monkeypatch.setattr(parcellate, "region_sums_rows", numpy_path)
    rng = np.random.default_rng(6)
    data = rng.standard_normal((7, 6, 5, 19))  # float64, 2 blocks of 8 volumes + 3
    labels = rng.choice([0, 5, 6, 8], size=(7, 6, 5)).astype(np.int16)
    labels[3, 3, 3] = 12  # a one-voxel region
    got = roi_means(np.asarray(data, order=order), labels)
    assert np.abs(got - masker_means(data, labels)).max() <= 1e-5


def test_region_sums_rejects_non_contiguous_and_integer_data():
    pytest.importorskip("numba")
    column = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="contiguous"):
        roi_kernel.region_sums(np.zeros((4, 6), np.float32)[:, ::2], column, 1)
    with pytest.raises(ValueError, match="float32 or float64"):
        roi_kernel.region_sums(np.zeros((4, 3), np.int16), column, 1)


def test_roi_means_equal_masker_for_long_runs_and_large_intensities(kernel):
    rng = np.random.default_rng(7)
    shape = (40, 3, 2)  # one region fills whole 40-voxel x-rows: runs longer than 16
    data = np.asfortranarray(rng.normal(1000.0, 50.0, (*shape, 11)).astype(np.float32))
    labels = np.ones(shape, np.int32)
    labels[:, 2, :] = 2
    labels[5:9, 0, 1] = 0
    expected = masker_means(data, labels)
    got = roi_means(data, labels)
    assert np.allclose(got, expected, rtol=1e-6, atol=0)


def test_parcellate_without_bold_writes_structural_features_only(preprocessed, tmp_path):
    p = preprocessed
    out = tmp_path / "anat_only.npz"
    parcellate_subject(p["t1"], None, p["atlas"], p["labels"], out, {})
    with np.load(out) as npz:
        assert npz["structural_features"].shape == (N_ROI, len(FEATURE_NAMES))
        assert not {"roi_timeseries", "connectivity", "tr"} & set(npz.files)
        assert len(npz["roi_names"]) == N_ROI


def test_parcellate_writes_bids_derivative_tables(preprocessed, tmp_path):
    import json

    import pandas as pd

    root = tmp_path / "parcellated" / "sub-001"
    func = root / "func" / "sub-001_task-rest_space-synthetic_seg-synthetic"
    out = {
        "out_timeseries": f"{func}_stat-mean_timeseries.tsv",
        "out_relmat": f"{func}_stat-pearsoncorrelation_relmat.tsv",
        "out_features": root / "anat" / "sub-001_space-synthetic_seg-synthetic_morph.tsv",
    }
    npz_path = root / "sub-001_space-synthetic_seg-synthetic_parcellated.npz"
    args = (preprocessed["t1"], preprocessed["bold"], preprocessed["atlas"], preprocessed["labels"])
    parcellate_subject(*args, npz_path, {}, **out)
    names = [f"region{k}" for k in range(1, N_ROI + 1)]
    series = pd.read_csv(out["out_timeseries"], sep="\t")
    relmat = pd.read_csv(out["out_relmat"], sep="\t")
    features = pd.read_csv(out["out_features"], sep="\t")
    with np.load(npz_path) as npz:
        assert list(series.columns) == names
        assert np.allclose(series.to_numpy(), npz["roi_timeseries"], atol=1e-5)
        assert list(relmat.columns) == ["Node", *names] and relmat["Node"].tolist() == names
        assert np.allclose(relmat[names].to_numpy(), npz["connectivity"], atol=1e-5)
        assert list(features.columns) == ["node", *FEATURE_NAMES]
        assert np.allclose(features[list(FEATURE_NAMES)], npz["structural_features"], rtol=1e-5)
        assert npz["volume_index"].tolist() == list(range(40)) and int(npz["n_volumes"]) == 40
    description = json.loads((tmp_path / "parcellated" / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "modalmerge"
    assert "parcellate" in description["GeneratedBy"][0]["Description"]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_parcellate_keeps_original_volume_indices_of_a_censored_run(tmp_path):
    import json

    import pandas as pd

    atlas, labels = write_atlas(tmp_path / "atlas")
    t1, bold = write_subject(tmp_path / "raw")
    censored = [0, 17, 39]
    keep = np.setdiff1d(np.arange(40), censored)
    sidecar = bold.with_name(bold.name.replace(".nii.gz", ".json"))
    sidecar.write_text(json.dumps({"RepetitionTime": TR, "SampleMask": keep.tolist()}))
    out_t1, out_bold = tmp_path / "preproc" / "t1.nii.gz", tmp_path / "preproc" / "bold.nii.gz"
    preprocess_subject(t1, bold, atlas, out_t1, out_bold, {"low_pass": 0.2})
    out, tsv = tmp_path / "sub-001.npz", tmp_path / "timeseries.tsv"
    parcellate_subject(out_t1, out_bold, atlas, labels, out, {}, out_timeseries=tsv)
    with np.load(out) as npz:
        assert npz["roi_timeseries"].shape == (37, N_ROI)
        assert npz["volume_index"].tolist() == keep.tolist() and int(npz["n_volumes"]) == 40
        kept_rows = npz["roi_timeseries"]
    table = pd.read_csv(tsv, sep="\t")  # row i is volume i; censored volumes are n/a
    assert len(table) == 40 and table.iloc[censored].isna().all(axis=None)
    assert np.allclose(table.iloc[keep].to_numpy(), kept_rows, atol=1e-5)
    assert "n/a" in tsv.read_text()
