"""preprocess in chunks: a long run is resampled, cleaned and written piece by piece with the
result of the whole-run computation, and a run that fits in one chunk is processed exactly
as before chunking existed."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest
from _nifti_fixtures import SHAPE, TR, atlas_labels, write_atlas, write_subject

from modalmerge.data import preprocess as pp
from modalmerge.data.bold_chunks import ChunkPlan
from modalmerge.data.nifti import load_image, save_image
from modalmerge.data.nifti_stream import open_run, write_run
from modalmerge.io import InputError

PARAMS = {"detrend": True, "high_pass": 0.01, "low_pass": 0.2, "standardize": True}
COARSE = np.diag([4.0, 4.0, 4.0, 1.0])


def whole_run_reference(bold_path, atlas_path, params=PARAMS, sample_mask=None) -> np.ndarray:
    """The cleaned run as preprocess computed it before chunking: the whole 4D run loaded,
    resampled at once, its in-mask voxels cleaned at once."""
    atlas = nib.load(atlas_path)
    mask = np.asanyarray(atlas.dataobj) > 0
    bold = pp._to_grid(load_image(bold_path, ndim=4), atlas)
    signals = np.asanyarray(bold.dataobj)[mask]
    cleaned = pp.clean_signals(
        signals.T, TR, detrend=True, standardize=True, low_pass=params["low_pass"],
        high_pass=params["high_pass"], sample_mask=sample_mask,
    )  # fmt: skip
    out = np.zeros((*mask.shape, cleaned.shape[0]), dtype=np.float32, order="F")
    out[mask] = cleaned.T
    return out


@pytest.fixture(params=["on_grid", "resampled"])
def subject(request, tmp_path):
    atlas, _ = write_atlas(tmp_path / "atlas")
    if request.param == "on_grid":
        t1, bold = write_subject(tmp_path / "raw", n_volumes=45)
    else:
        t1, bold = write_subject(tmp_path / "raw", n_volumes=45, affine=COARSE, shape=(5, 6, 5))
    return {"t1": t1, "bold": bold, "atlas": atlas, "out": tmp_path / "out"}


def run(s, out_name="bold.nii.gz"):
    out = s["out"] / out_name
    pp.preprocess_subject(s["t1"], s["bold"], s["atlas"], s["out"] / "t1.nii.gz", out, PARAMS)
    return nib.load(out).get_fdata(dtype=np.float32)


def small_chunks(monkeypatch, volumes=7, voxels=50):
    """Force chunks far below the fixtures' size, through the scratch HDF5 file."""

    def plan(run_shape, grid_shape, n_mask, chunk_mb):  # fmt: skip
        return ChunkPlan(volumes, voxels, in_memory=False, shape=(n_mask, run_shape[3]))

    monkeypatch.setattr(ChunkPlan, "for_run", staticmethod(plan))


def test_a_run_that_fits_one_chunk_is_processed_exactly_as_a_whole(subject):
    plan = ChunkPlan.for_run((*SHAPE, 45), SHAPE, int((atlas_labels() > 0).sum()), 256)
    assert plan.in_memory and plan.volumes == 45 and plan.voxels == plan.shape[0]
    np.testing.assert_array_equal(
        run(subject), whole_run_reference(subject["bold"], subject["atlas"])
    )


def test_a_run_in_small_chunks_matches_the_whole_run_within_float32_rounding(subject, monkeypatch):
    small_chunks(monkeypatch)
    chunked = run(subject)
    reference = whole_run_reference(subject["bold"], subject["atlas"])
    assert chunked.shape == reference.shape == (*SHAPE, 45)
    np.testing.assert_allclose(chunked, reference, rtol=0, atol=2e-6)  # z-scores of order 1
    assert np.abs(reference).max() > 1  # not trivially zero


def test_censoring_in_chunks_keeps_the_same_volumes(subject, monkeypatch):
    keep = [i for i in range(45) if i not in (10, 11, 30)]
    sidecar = subject["bold"].with_name(subject["bold"].name.replace(".nii.gz", ".json"))
    sidecar.write_text(json.dumps({"RepetitionTime": TR, "SampleMask": keep}))
    small_chunks(monkeypatch, volumes=4, voxels=33)
    chunked = run(subject)
    reference = whole_run_reference(subject["bold"], subject["atlas"], sample_mask=np.array(keep))
    assert chunked.shape[3] == 42
    np.testing.assert_allclose(chunked, reference, rtol=0, atol=2e-6)
    written = json.loads((subject["out"] / "bold.json").read_text())
    assert written["CensoredVolumes"] == [10, 11, 30]


def test_nan_in_a_later_chunk_is_an_error_naming_the_file_and_nothing_is_written(
    subject, monkeypatch
):
    img = nib.load(subject["bold"])
    data = img.get_fdata(dtype=np.float32)
    data[2, 2, 2, 40] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), subject["bold"])
    small_chunks(monkeypatch)
    with pytest.raises(InputError, match="1 NaN or infinite voxels in volumes 35-41") as exc:
        run(subject)
    assert str(subject["bold"]) in str(exc.value)
    assert not subject["out"].exists() or not list(subject["out"].iterdir())


def test_truncated_run_in_chunks_is_an_error_naming_the_file(subject, monkeypatch):
    raw = subject["bold"].read_bytes()
    subject["bold"].write_bytes(raw[: int(len(raw) * 0.8)])
    small_chunks(monkeypatch)
    with pytest.raises(InputError, match="truncated or corrupt") as exc:
        run(subject)
    assert str(subject["bold"]) in str(exc.value)


def test_plan_bounds_each_chunk_of_an_hcp_size_run():
    run_shape, grid = (91, 109, 91, 1200), (91, 109, 91)
    plan = ChunkPlan.for_run(run_shape, grid, 230_000, chunk_mb=256)
    assert not plan.in_memory  # 230,000 x 1,200 float32 = 1.1 GB > 256 MB
    assert plan.volumes * np.prod(grid) * 8 <= 256 * 2**20 and plan.volumes >= 1
    # the band-pass holds about four float64 copies of a cleaning chunk at once
    assert plan.voxels * 1200 * 8 * 4 <= 256 * 2**20 and plan.voxels >= 1


def test_streamed_run_has_the_bytes_save_image_writes(tmp_path):
    data = np.random.default_rng(0).normal(size=(4, 5, 3, 9)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    whole = nib.Nifti1Image(data, affine)
    whole.header.set_xyzt_units("mm", "sec")
    whole.header.set_zooms((2.0, 2.0, 2.0, 1.5))
    save_image(whole, tmp_path / "whole.nii.gz")
    with write_run(tmp_path / "streamed.nii.gz", affine, data.shape, 1.5) as write:
        for t0 in range(0, 9, 4):
            write(data[..., t0 : t0 + 4])
    streamed = gzip.decompress((tmp_path / "streamed.nii.gz").read_bytes())
    assert streamed == gzip.decompress((tmp_path / "whole.nii.gz").read_bytes())
    with open_run(tmp_path / "streamed.nii.gz") as reader:
        chunks = [chunk for _, chunk in reader.volumes(2)]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=3), data)


def test_preprocess_memory_request_covers_the_measured_hcp_peak_and_grows_on_retry():
    """docs/benchmarks.md: 1,149 MB peak for a 1,094 MB HCP-size input at chunk_mb 256,
    595 MB for parcellate of an HCP-size run read in chunks (8,341 MB when it read the 981 MB
    cleaned run whole); an OOM retry asks for more."""
    from modalmerge.stages.resources import stage_mem_mb

    cluster = {"mem_mb": 2000}
    assert stage_mem_mb("preprocess", 1094.0, 1, cluster) >= 1149
    assert stage_mem_mb("parcellate", 981.0, 1, cluster) >= 595
    for rule in ("preprocess", "parcellate"):
        first = stage_mem_mb(rule, 1094.0, 1, cluster)
        assert stage_mem_mb(rule, 1094.0, 2, cluster) == 2 * first
        assert stage_mem_mb(rule, 1094.0, 3, cluster) == 3 * first
