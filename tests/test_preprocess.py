"""Preprocess stage and NIfTI loading: good paths and broken inputs."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from _nifti_fixtures import AFFINE, SHAPE, TR, atlas_labels, write_atlas, write_subject

from modalmerge.data import preprocess as pp
from modalmerge.data.nifti import load_image
from modalmerge.io import InputError

PARAMS = {"detrend": True, "high_pass": 0.01, "low_pass": 0.2, "standardize": True}


@pytest.fixture
def subject(tmp_path):
    atlas, _ = write_atlas(tmp_path / "atlas")
    t1, bold = write_subject(tmp_path / "raw")
    return {"t1": t1, "bold": bold, "atlas": atlas, "out": tmp_path / "preproc"}


def run(s, params=PARAMS, **kwargs):
    pp.preprocess_subject(
        s["t1"], s["bold"], s["atlas"], s["out"] / "t1.nii.gz", s["out"] / "bold.nii.gz",
        params, **kwargs,
    )  # fmt: skip


def assert_one_line_naming(exc_info, path):
    message = str(exc_info.value)
    assert str(path) in message and "\n" not in message


def test_preprocess_puts_clean_standardised_bold_on_the_atlas_grid(subject):
    run(subject)
    bold = nib.load(subject["out"] / "bold.nii.gz")
    data = bold.get_fdata(dtype=np.float32)
    mask = atlas_labels() > 0
    assert bold.shape == (*SHAPE, 40) and np.allclose(bold.affine, AFFINE)
    assert bold.get_data_dtype() == np.float32
    assert bold.header.get_zooms()[3] == pytest.approx(TR)  # TR carried to the next stage
    inside = data[mask]
    assert np.allclose(inside.mean(axis=1), 0, atol=1e-4)
    assert np.allclose(inside.std(axis=1, ddof=1), 1, atol=1e-3)
    assert not data[~mask].any()


def test_preprocess_normalises_anatomy_inside_the_brain(subject):
    run(subject, {**PARAMS, "normalize_anatomy": "robust_zscore"})
    t1 = nib.load(subject["out"] / "t1.nii.gz").get_fdata()
    mask = atlas_labels() > 0
    assert abs(np.median(t1[mask])) < 1e-5
    assert not t1[~mask].any()
    run(subject, {**PARAMS, "normalize_anatomy": "median"})
    t1 = nib.load(subject["out"] / "t1.nii.gz").get_fdata()
    assert np.median(t1[mask]) == pytest.approx(1.0, abs=1e-5)


def test_preprocess_resamples_images_from_another_grid(tmp_path, subject):
    coarse = np.diag([4.0, 4.0, 4.0, 1.0])
    t1, bold = write_subject(tmp_path / "coarse", affine=coarse, shape=(5, 6, 5))
    run({**subject, "t1": t1, "bold": bold})
    for name in ("t1.nii.gz", "bold.nii.gz"):
        img = nib.load(subject["out"] / name)
        assert img.shape[:3] == SHAPE and np.allclose(img.affine, AFFINE)


def test_preprocess_skips_resampling_when_already_on_grid(subject, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("resample_to_img called for an on-grid image")

    import nilearn.image

    monkeypatch.setattr(nilearn.image, "resample_to_img", fail)
    run(subject)
    assert (subject["out"] / "bold.nii.gz").exists()


def test_preprocess_regresses_out_confounds(tmp_path, subject):
    t = np.arange(40)
    nuisance = np.c_[np.cos(2 * np.pi * 0.05 * t * TR), t % 7]
    path = tmp_path / "confounds.tsv"
    rows = ["a\tb"] + ["n/a\tn/a"] + [f"{a}\t{b}" for a, b in nuisance[1:]]
    path.write_text("\n".join(rows) + "\n")
    mask = atlas_labels() > 0

    def max_corr_with_nuisance():
        data = nib.load(subject["out"] / "bold.nii.gz").get_fdata()[mask][:, 1:]
        ref = nuisance[1:, 0] - nuisance[1:, 0].mean()
        data = data - data.mean(axis=1, keepdims=True)
        corr = data @ ref / (np.linalg.norm(data, axis=1) * np.linalg.norm(ref))
        return np.abs(corr).max()

    run(subject)
    before = max_corr_with_nuisance()
    run(subject, confounds_path=path)
    after = max_corr_with_nuisance()
    assert before > 0.5 and after < 0.15
    path.write_text("a\n1\n2\n")
    with pytest.raises(InputError) as exc:
        run(subject, confounds_path=path)
    assert_one_line_naming(exc, path)


def test_tr_comes_from_sidecar_header_or_argument(subject):
    img = nib.load(subject["bold"])
    assert pp.read_tr(subject["bold"], img) == TR
    assert pp.read_tr(subject["bold"], img, tr=2.0) == TR
    img.header.set_xyzt_units("mm", "msec")
    img.header.set_zooms((2, 2, 2, 2000))
    assert pp.read_tr(subject["bold"], img) == pytest.approx(TR)


def test_missing_tr_is_an_error_naming_the_bold(subject):
    subject["bold"].with_name(subject["bold"].name.replace(".nii.gz", ".json")).unlink()
    with pytest.raises(InputError, match="no repetition time") as exc:
        run(subject)
    assert_one_line_naming(exc, subject["bold"])


def test_inconsistent_tr_is_an_error(subject):
    with pytest.raises(InputError, match="inconsistent") as exc:
        run(subject, tr=3.0)
    assert_one_line_naming(exc, subject["bold"])


def test_truncated_gzip_is_an_error_naming_the_file(subject):
    raw = subject["bold"].read_bytes()
    subject["bold"].write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as exc:
        run(subject)
    assert_one_line_naming(exc, subject["bold"])


def test_truncated_uncompressed_nifti_is_an_error(tmp_path):
    path = tmp_path / "x.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), AFFINE), path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated") as exc:
        load_image(path)
    assert_one_line_naming(exc, path)


def test_3d_image_where_4d_is_needed_is_an_error(subject):
    with pytest.raises(InputError, match="must be 4D") as exc:
        run({**subject, "bold": subject["t1"]})
    assert_one_line_naming(exc, subject["t1"])


def test_nan_voxels_are_an_error_and_nothing_is_written(subject):
    img = nib.load(subject["bold"])
    data = img.get_fdata(dtype=np.float32)
    data[3, 3, 3, 5] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), subject["bold"])
    with pytest.raises(InputError, match="NaN") as exc:
        run(subject)
    assert_one_line_naming(exc, subject["bold"])
    assert not subject["out"].exists() or not list(subject["out"].iterdir())


def test_missing_file_is_an_error_naming_it(subject, tmp_path):
    missing = tmp_path / "nope_T1w.nii.gz"
    with pytest.raises(InputError, match="missing") as exc:
        run({**subject, "t1": missing})
    assert_one_line_naming(exc, missing)


def test_unknown_or_bad_params_are_rejected(subject):
    with pytest.raises(ValueError, match=r"preprocess\.detrending: unknown key"):
        run(subject, {"detrending": True})
    with pytest.raises(ValueError, match="high_pass"):
        run(subject, {"high_pass": 0.2, "low_pass": 0.1})
    with pytest.raises(ValueError, match="Nyquist"):
        run(subject, {"low_pass": 0.3})  # TR 2 s: Nyquist 0.25 Hz


def test_sidecar_without_number_is_an_error_naming_it(subject):
    sidecar = subject["bold"].with_name(subject["bold"].name.replace(".nii.gz", ".json"))
    sidecar.write_text(json.dumps({"RepetitionTime": "fast"}))
    with pytest.raises(InputError) as exc:
        run(subject)
    assert_one_line_naming(exc, sidecar)


def test_anatomy_only_subjects_get_the_t1_alone(subject):
    out_t1 = subject["out"] / "t1.nii.gz"
    pp.preprocess_subject(subject["t1"], None, subject["atlas"], out_t1, None, PARAMS)
    assert nib.load(out_t1).shape == nib.load(subject["atlas"]).shape
    assert sorted(p.name for p in subject["out"].iterdir()) == ["t1.nii.gz"]
    with pytest.raises(ValueError, match="both bold_path and out_bold, or neither"):
        pp.preprocess_subject(
            subject["t1"], subject["bold"], subject["atlas"], out_t1, None, PARAMS
        )
    with pytest.raises(ValueError, match="confounds need a BOLD run"):
        pp.preprocess_subject(
            subject["t1"], None, subject["atlas"], out_t1, None, PARAMS, confounds_path="c.tsv"
        )


def test_extra_anatomy_is_resampled_labels_by_nearest_neighbour(subject, tmp_path):
    atlas = nib.load(subject["atlas"])
    coarse = atlas.affine.copy()
    coarse[:3, :3] *= 2  # another grid: both images must be resampled
    shape = tuple(max(1, n // 2) for n in atlas.shape)
    rng = np.random.default_rng(0)
    seg = rng.choice([0, 1, 2, 4], size=shape).astype(np.float32)
    flair = rng.uniform(1, 2, size=shape).astype(np.float32)
    nib.save(nib.Nifti1Image(seg, coarse), tmp_path / "seg.nii.gz")
    nib.save(nib.Nifti1Image(flair, coarse), tmp_path / "flair.nii.gz")
    out = subject["out"]
    extra = [
        ("dseg", tmp_path / "seg.nii.gz", out / "dseg.nii.gz"),
        ("FLAIR", tmp_path / "flair.nii.gz", out / "flair.nii.gz"),
    ]
    pp.preprocess_subject(
        subject["t1"], None, subject["atlas"], out / "t1.nii.gz", None, PARAMS,
        extra_anatomy=extra, label_anatomy=["dseg"],
    )  # fmt: skip
    labels = nib.load(out / "dseg.nii.gz")
    assert labels.shape == atlas.shape and set(np.unique(labels.get_fdata())) <= {0, 1, 2, 4}
    values = nib.load(out / "flair.nii.gz").get_fdata()
    brain = np.asanyarray(atlas.dataobj) > 0
    assert abs(np.median(values[brain])) < 0.5  # normalised like the T1
    with pytest.raises(ValueError, match="not among the extra anatomy"):
        pp.preprocess_subject(
            subject["t1"], None, subject["atlas"], out / "t1.nii.gz", None, PARAMS,
            label_anatomy=["dseg"],
        )  # fmt: skip
    nib.save(nib.Nifti1Image(seg + 0.5, coarse), tmp_path / "seg.nii.gz")
    with pytest.raises(InputError, match="label image dseg holds non-integer values"):
        pp.preprocess_subject(
            subject["t1"], None, subject["atlas"], out / "t1.nii.gz", None, PARAMS,
            extra_anatomy=extra, label_anatomy=["dseg"],
        )  # fmt: skip


def _spiked_copy(tmp_path, s, volume, sample_mask=None, name="spiked"):
    """The subject's BOLD with a huge spike in one volume (a high-motion volume), its
    sidecar listing ``sample_mask`` as the raw sidecar of a scrubbing strategy does."""
    img = nib.load(s["bold"])
    data = img.get_fdata(dtype=np.float32)
    data[..., volume] += 5000.0
    folder = tmp_path / name
    folder.mkdir()
    bold = folder / s["bold"].name
    nib.save(nib.Nifti1Image(data, img.affine, img.header), bold)
    sidecar = {"RepetitionTime": TR}
    if sample_mask is not None:
        sidecar["SampleMask"] = [int(i) for i in sample_mask]
    bold.with_name(bold.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
    return {**s, "bold": bold, "out": tmp_path / f"out-{name}"}


def _cleaned(s):
    return nib.load(s["out"] / "bold.nii.gz").get_fdata()[atlas_labels() > 0]  # (V, T)


def test_censored_volume_no_longer_influences_the_cleaned_series(tmp_path, subject):
    """A scrubbed high-motion volume: with the sample mask, the cleaned series of the run
    with the spike equals that of the run without it at the kept volumes; without the
    mask the spike leaks into its neighbours through detrending and the band-pass."""
    spike, n = 17, 40
    keep = np.setdiff1d(np.arange(n), [spike])
    clean_run = _spiked_copy(tmp_path, subject, spike, keep, "clean")
    clean_run["bold"] = subject["bold"]  # the same mask over the unspiked data
    clean_run["bold"].with_name(clean_run["bold"].name.replace(".nii.gz", ".json")).write_text(
        json.dumps({"RepetitionTime": TR, "SampleMask": keep.tolist()})
    )
    spiked = _spiked_copy(tmp_path, subject, spike, keep, "spiked")
    unmasked = _spiked_copy(tmp_path, subject, spike, None, "unmasked")
    for s in (clean_run, spiked, unmasked):
        run(s)
    with_spike, without_spike = _cleaned(spiked), _cleaned(clean_run)
    assert with_spike.shape == without_spike.shape == (int((atlas_labels() > 0).sum()), n - 1)
    assert np.allclose(with_spike, without_spike, atol=1e-4)
    sidecar = json.loads((spiked["out"] / "bold.json").read_text())
    assert sidecar["CensoredVolumes"] == [spike] and sidecar["RepetitionTime"] == TR
    # without censoring the spike changes the kept volumes too
    leaked = np.delete(_cleaned(unmasked), spike, axis=1)
    assert np.abs(leaked - without_spike).max() > 0.1
    assert json.loads((unmasked["out"] / "bold.json").read_text())["CensoredVolumes"] == []


def test_bad_sample_mask_is_an_error_naming_the_sidecar(tmp_path, subject):
    cases = (([0, 1, 40], "outside"), ([0, 1, 1, 2], "twice"), ([0, 1], "at least"))
    for k, (mask, message) in enumerate(cases):
        s = _spiked_copy(tmp_path, subject, 0, mask, name=f"bad{k}")
        with pytest.raises(InputError, match=message) as exc:
            run(s)
        assert_one_line_naming(exc, s["bold"].with_name(s["bold"].name.replace(".nii.gz", ".json")))


def test_preprocess_writes_the_derivative_description_at_the_root(tmp_path, subject):
    from modalmerge._version import __version__

    root = tmp_path / "preproc"
    out_t1 = root / "sub-001" / "anat" / "sub-001_space-synthetic_desc-preproc_T1w.nii.gz"
    out_bold = (
        root / "sub-001" / "func" / "sub-001_task-rest_space-synthetic_desc-clean_bold.nii.gz"
    )
    pp.preprocess_subject(
        subject["t1"], subject["bold"], subject["atlas"], out_t1, out_bold, PARAMS
    )
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    generated = description["GeneratedBy"][0]
    assert generated["Name"] == "modalmerge" and generated["Version"] == __version__
    assert "preprocess" in generated["Description"]
    assert out_bold.with_name(out_bold.name.replace(".nii.gz", ".json")).exists()
    assert not list(root.rglob(".tmp-*"))


TIME_SPLIT = {
    "split_by": "time",
    "fractions": {"train": 0.6, "val": 0.2, "test": 0.2},
    "window": 4,
    "gap": 5,
}


def _perturbed_test_block(tmp_path, s, start):
    """The subject's BOLD with its test block (volumes ``start``..) replaced by other data."""
    img = nib.load(s["bold"])
    data = img.get_fdata(dtype=np.float32)
    rng = np.random.default_rng(7)
    data[..., start:] = (
        800 + rng.normal(0, 40, data[..., start:].shape) + np.arange(data.shape[3] - start)
    )  # another level, noise and a steep drift
    folder = tmp_path / "perturbed"
    folder.mkdir()
    bold = folder / s["bold"].name
    nib.save(nib.Nifti1Image(data, img.affine, img.header), bold)
    bold.with_name(bold.name.replace(".nii.gz", ".json")).write_text(
        json.dumps({"RepetitionTime": TR})
    )
    return {**s, "bold": bold, "out": tmp_path / "out-perturbed"}


def test_time_split_cleans_each_block_alone_so_the_test_block_cannot_leak(tmp_path):
    """split_by time: detrend, band-pass, z-score are fitted within each block. Replacing
    the test block's data leaves the cleaned training and validation volumes unchanged
    (whole-run cleaning does not: the old leak), each block has mean 0 and SD 1 on its
    own, and the gap volumes between blocks are dropped and listed."""
    from modalmerge.data.time_split import run_blocks

    n = 200
    atlas, _ = write_atlas(tmp_path / "atlas")
    t1, bold = write_subject(tmp_path / "raw", n_volumes=n)
    s = {"t1": t1, "bold": bold, "atlas": atlas, "out": tmp_path / "out"}
    blocks = run_blocks(n, TIME_SPLIT)
    (a, b), (c, d), (e, f) = blocks["train"], blocks["val"], blocks["test"]
    assert b + 5 == c and d + 5 == e and f == n  # ordered, 5-volume gaps
    perturbed = _perturbed_test_block(tmp_path, s, e)
    for subj in (s, perturbed):
        run(subj, time_split=TIME_SPLIT)
    kept = np.r_[a:b, c:d, e:f]
    original, changed = _cleaned(s), _cleaned(perturbed)
    assert original.shape[1] == len(kept) == n - 10
    held = len(kept) - (f - e)  # the train and val volumes come first
    assert np.allclose(original[:, :held], changed[:, :held], atol=1e-5)
    assert np.abs(original[:, held:] - changed[:, held:]).max() > 0.5  # the test block did change
    for lo, hi in ((0, b - a), (b - a, held), (held, len(kept))):
        part = original[:, lo:hi]
        assert np.allclose(part.mean(axis=1), 0, atol=1e-4)
        assert np.allclose(part.std(axis=1, ddof=1), 1, atol=1e-3)
    sidecar = json.loads((s["out"] / "bold.json").read_text())
    assert sidecar["CensoredVolumes"] == [*range(b, c), *range(d, e)]
    assert sidecar["TimeBlocks"] == {k: list(v) for k, v in blocks.items()}
    # whole-run cleaning (no time split): the test block's data reach the training volumes
    for subj in (s, perturbed):
        run(subj)
    assert np.abs(_cleaned(s)[:, :b] - _cleaned(perturbed)[:, :b]).max() > 0.05


def test_time_split_block_too_short_for_the_filter_is_an_error_naming_the_run(subject):
    with pytest.raises(InputError) as exc:  # 40 volumes: the train block has 24, the filter 34
        run(subject, time_split={**TIME_SPLIT, "gap": 0})
    assert_one_line_naming(exc, subject["bold"])
    assert "train block has 24 volumes" in str(exc.value) and "at least 34" in str(exc.value)


def test_bias_wm_removes_a_smooth_field_and_puts_white_matter_at_one():
    """A two-tissue image (white matter 1000, a grey slab 620, noise) under a smooth
    multiplicative field: ``bias_wm`` must bring white matter back to 1 everywhere and the
    grey slab to its true ratio 0.62, where plain median scaling leaves the field in."""
    rng = np.random.default_rng(0)
    shape = (16, 18, 14)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    field = np.exp(0.15 * x - 0.1 * y * z + 0.12 * (z**2 - 0.3))
    tissue = np.full(shape, 1000.0)
    grey = np.zeros(shape, bool)
    grey[2:5] = grey[11:14] = True
    tissue[grey] = 620.0
    t1 = tissue * field + 10.0 * rng.standard_normal(shape)
    mask = np.ones(shape, bool)
    out = pp.normalize_anatomy(t1, mask, "bias_wm")
    assert np.abs(np.median(out[~grey]) - 1.0) < 0.01
    assert np.abs(np.median(out[grey]) - 0.62) < 0.01
    # the field is gone: white matter no longer varies along x (it did by about 35 %)
    assert np.ptp([np.median(out[i][~grey[i]]) for i in range(5, 11)]) < 0.02
    plain = pp.normalize_anatomy(t1, mask, "median")
    assert np.ptp([np.median(plain[i][~grey[i]]) for i in range(5, 11)]) > 0.05


@pytest.mark.parametrize("standardize", [True, False])
def test_cleaning_keeps_working_past_nilearns_boolean_standardize(standardize):
    """nilearn 0.15 drops ``standardize=False``; ours passes None, which nilearn reads the
    same today: unstandardised series keep their scale, standardised ones have SD 1."""
    import warnings

    x = np.random.default_rng(0).normal(3.0, 5.0, size=(80, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        out = pp.clean_signals(
            x, TR, detrend=True, standardize=standardize, low_pass=None, high_pass=None
        )
    sd = out.std(axis=0, ddof=1)
    if standardize:
        np.testing.assert_allclose(sd, 1.0, rtol=1e-6)
    else:
        np.testing.assert_allclose(sd, x.std(axis=0, ddof=1), rtol=0.2)


def test_band_pass_filters_every_voxel_in_one_call_with_nilearns_result(monkeypatch):
    """The cleaning chunk is filtered by one vectorised ``sosfiltfilt`` (nilearn's default
    loops over voxels, its filter ~40x slower on a default subject's chunk), and the result is nilearn's own:
    on float64 series, identical to its per-voxel path; on float32 series (the stage's
    chunks), within float32 rounding of it, without the per-voxel rounding to float32."""
    from nilearn.signal import clean
    from scipy import signal as sp_signal

    rng = np.random.default_rng(3)
    x = rng.normal(100.0, 5.0, size=(120, 37)) + np.linspace(0.0, 20.0, 120)[:, None]
    mask = np.setdiff1d(np.arange(120), [7, 8, 60])
    settings = dict(detrend=True, low_pass=0.15, high_pass=0.01, sample_mask=mask)
    reference = clean(
        x.copy(), t_r=TR, standardize="zscore_sample", ensure_finite=False, **settings
    )  # nilearn's defaults: butterworth__copy=False, one sosfiltfilt per column
    calls = []
    original = sp_signal.sosfiltfilt

    def spy(sos, x, **kwargs):
        calls.append(np.shape(x))
        return original(sos, x, **kwargs)

    monkeypatch.setattr(sp_signal, "sosfiltfilt", spy)
    out = pp.clean_signals(x.copy(), TR, standardize=True, **settings)
    assert calls == [(120, 37)]
    np.testing.assert_array_equal(out, reference)
    out32 = pp.clean_signals(x.astype(np.float32), TR, standardize=True, **settings)
    np.testing.assert_allclose(out32, reference, atol=1e-4)
