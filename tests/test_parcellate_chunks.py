"""Parcellate reads a long cleaned run in chunks of volumes: the same outputs, to the bit with the
compiled kernel (what long runs use), to float32 rounding with the numpy fallback (issue 14)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from _nifti_fixtures import write_atlas, write_subject

from modalmerge.data.bold_chunks import ChunkPlan
from modalmerge.data.parcellation import parcellate, roi_kernel
from modalmerge.data.parcellation.parcellate import CHUNK_MB, parcellate_subject
from modalmerge.data.preprocess import preprocess_subject
from modalmerge.io import InputError
from modalmerge.settings import PreprocessSettings

#: 5 volumes per chunk on the fixture's 10 x 12 x 10 grid (float64 volumes of 9.4 kB): 8 chunks
SMALL_CHUNK_MB = 0.05
ROI_MEANS = parcellate.roi_means


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    root = tmp_path_factory.mktemp("parc-chunks")
    atlas, labels = write_atlas(root / "atlas")
    t1, bold = write_subject(root / "raw")
    out_t1, out_bold = root / "preproc" / "t1.nii.gz", root / "preproc" / "bold.nii.gz"
    preprocess_subject(t1, bold, atlas, out_t1, out_bold, {"low_pass": 0.2})
    return root, (out_t1, out_bold, atlas, labels)


def _parcellate(root, inputs, name, monkeypatch, chunk_mb):
    calls = []

    def counted(data, *args, **kwargs):
        calls.append(np.shape(data))
        return ROI_MEANS(data, *args, **kwargs)

    monkeypatch.setattr(parcellate, "roi_means", counted)
    out = root / f"{name}.npz"
    parcellate_subject(*inputs, out, {}, chunk_mb=chunk_mb)
    with np.load(out) as npz:
        return {k: npz[k] for k in npz.files}, calls


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_chunked_parcellate_writes_what_the_whole_run_gives(cleaned, monkeypatch, kernel):
    if kernel == "numba":
        pytest.importorskip("numba")
        monkeypatch.setattr(roi_kernel, "HAVE_NUMBA", True)
        monkeypatch.setattr(roi_kernel, "MIN_ELEMENTS", 0)
    else:
        monkeypatch.setattr(roi_kernel, "HAVE_NUMBA", False)
    root, inputs = cleaned
    whole, whole_calls = _parcellate(root, inputs, f"whole-{kernel}", monkeypatch, None)
    chunked, calls = _parcellate(root, inputs, f"chunked-{kernel}", monkeypatch, SMALL_CHUNK_MB)
    n_volumes = whole["roi_timeseries"].shape[0]
    assert [c[-1] for c in whole_calls] == [n_volumes]  # the whole run at once
    assert [c[-1] for c in calls] == [5] * (n_volumes // 5)  # 8 chunks of 5 volumes
    assert set(whole) == set(chunked)
    for key, value in whole.items():
        assert value.dtype == chunked[key].dtype, key
        if kernel == "numba" or key not in ("roi_timeseries", "connectivity"):
            assert value.tobytes() == chunked[key].tobytes(), key
        else:  # BLAS's float32 products round differently with the number of volumes
            np.testing.assert_allclose(chunked[key], value, rtol=1e-6, atol=1e-6)


def test_a_run_within_the_chunk_is_read_whole_as_before(cleaned, monkeypatch):
    root, inputs = cleaned
    whole, _ = _parcellate(root, inputs, "none", monkeypatch, None)
    default, calls = _parcellate(root, inputs, "default", monkeypatch, CHUNK_MB)
    assert [c[-1] for c in calls] == [whole["roi_timeseries"].shape[0]]
    assert all(whole[k].tobytes() == default[k].tobytes() for k in whole)
    # the default workflow's runs (36 x 44 x 36 x 150 on the atlas grid) fit one chunk
    assert CHUNK_MB == PreprocessSettings().chunk_mb
    plan = ChunkPlan.for_run((36, 44, 36, 150), (36, 44, 36), 1, CHUNK_MB)
    assert plan.volumes == 150


def test_a_truncated_run_read_in_chunks_is_named(cleaned, tmp_path):
    root, (t1, bold, atlas, labels) = cleaned
    broken = tmp_path / "bold.nii.gz"
    raw = gzip.decompress(bold.read_bytes())
    broken.write_bytes(gzip.compress(raw[: len(raw) * 2 // 3]))
    (tmp_path / "bold.json").write_bytes(bold.with_name("bold.json").read_bytes())
    with pytest.raises(InputError, match="bold.nii.gz"):
        parcellate_subject(
            t1, broken, atlas, labels, tmp_path / "o.npz", {}, chunk_mb=SMALL_CHUNK_MB
        )
    assert not (tmp_path / "o.npz").exists()


def test_the_cli_passes_the_chunk_size_the_workflow_gives_it(cleaned, monkeypatch):
    """`modalmerge parcellate --chunk-mb` (preprocess.chunk_mb, a resource of the rule) reaches
    the stage: a user's smaller chunk bounds parcellate's memory too."""
    from modalmerge import cli

    root, (t1, bold, atlas, labels) = cleaned
    calls = []

    def counted(data, *args, **kwargs):
        calls.append(np.shape(data))
        return ROI_MEANS(data, *args, **kwargs)

    monkeypatch.setattr(parcellate, "roi_means", counted)
    argv = ["parcellate", "--settings", "{}", "--t1", str(t1), "--bold", str(bold)]
    argv += ["--atlas", str(atlas), "--labels", str(labels), "--out", str(root / "cli.npz")]
    assert cli.main([*argv, "--chunk-mb", str(SMALL_CHUNK_MB)]) == 0
    assert len(calls) == 8  # chunks of 5 volumes
    calls.clear()
    assert cli.main(argv) == 0
    assert len(calls) == 1  # the default chunk holds the whole small run
