"""Input checks before processing (issue 11): space, header, settings, constant runs, labels."""

from __future__ import annotations

import gzip
import json
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from modalmerge.data import checks
from modalmerge.data.preprocess import preprocess_subject
from modalmerge.data.sources import validate
from modalmerge.io import InputError
from tests._nifti_fixtures import AFFINE, write_atlas, write_subject


def _shifted(path, out, mm=40.0, axis=0):
    img = nib.load(path)
    affine = img.affine.copy()
    affine[axis, 3] += mm
    shifted = nib.Nifti1Image(np.asanyarray(img.dataobj), affine, header=img.header)
    nib.save(shifted, out)
    return out


def _run(tmp_path, t1, bold, atlas, settings=None):
    preprocess_subject(
        t1,
        bold,
        atlas,
        tmp_path / "out_T1w.nii.gz",
        tmp_path / "out_bold.nii.gz",
        settings or {},
    )


# ------------------------------------------------------------------ 1. spatial overlap


def test_aligned_pair_passes_and_shifted_bold_fails(tmp_path):
    atlas, _ = write_atlas(tmp_path / "atlas")
    t1, bold = write_subject(tmp_path / "raw", n_volumes=40)
    _run(tmp_path, t1, bold, atlas)  # aligned: passes
    assert (tmp_path / "out_bold.nii.gz").exists()

    moved = _shifted(bold, tmp_path / "raw" / "sub-002_task-rest_bold.nii.gz")
    (tmp_path / "raw" / "sub-002_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2}))
    out = tmp_path / "second"
    out.mkdir()
    with pytest.raises(InputError) as err:
        _run(out, t1, moved, atlas)
    message = str(err.value)
    assert str(moved) in message and str(t1) in message
    assert "BOLD brain extent" in message and "min_overlap 0.8" in message
    assert "\n" not in message
    assert not list(out.iterdir())  # nothing written before the check


def test_min_overlap_zero_turns_the_check_off(tmp_path):
    atlas, _ = write_atlas(tmp_path / "atlas")
    t1, bold = write_subject(tmp_path / "raw", n_volumes=40)
    img = nib.load(bold)
    found = checks.check_overlap(
        bold, img, t1, nib.load(t1), atlas, nib.load(atlas), np.ones((2, 2, 2)), 0
    )
    assert found == {}


def test_overlap_names_the_users_file_behind_a_symlink(tmp_path):
    atlas, _ = write_atlas(tmp_path / "atlas")
    t1, bold = write_subject(tmp_path / "user", n_volumes=40)
    moved = _shifted(bold, tmp_path / "user" / "moved_bold.nii.gz", mm=-60, axis=1)
    link = tmp_path / "raw_bold.nii.gz"
    link.symlink_to(moved)
    labels = np.asanyarray(nib.load(atlas).dataobj)
    with pytest.raises(InputError, match="moved_bold.nii.gz"):
        checks.check_overlap(
            link, nib.load(link), t1, nib.load(t1), atlas, nib.load(atlas), labels, 0.8
        )


def test_real_shaped_mni_template_and_resampled_bold(tmp_path):
    """nilearn's MNI152 template as T1, a 3 mm copy as a 4D BOLD: aligned passes (~0.98);
    the same BOLD moved 40 mm along any axis measures 0.54-0.69 and fails at 0.8."""
    from nilearn.datasets import load_mni152_template
    from nilearn.image import resample_img

    t1 = load_mni152_template(resolution=2)
    low = resample_img(
        t1,
        target_affine=np.diag([3.0, 3.0, 3.0]),
        interpolation="continuous",
        force_resample=True,
        copy_header=True,
    )
    data = np.asanyarray(low.dataobj)
    run = np.stack([data * (1 + 0.01 * k) for k in range(4)], -1).astype(np.float32)
    bold = nib.Nifti1Image(run, low.affine)
    # the template's own brain as the atlas: labels > 0 inside it
    labels = (np.asanyarray(t1.dataobj) > 0.2).astype(np.int16)
    atlas = nib.Nifti1Image(labels, t1.affine)
    found = checks.check_overlap(
        "bold.nii.gz", bold, "T1w.nii.gz", t1, "atlas.nii.gz", atlas, labels, 0.8
    )
    assert found["T1w"] > 0.95 and found["atlas"] > 0.95
    for axis in range(3):
        affine = bold.affine.copy()
        affine[axis, 3] += 40
        moved = nib.Nifti1Image(run, affine)
        with pytest.raises(InputError, match=r"bold.nii.gz: only \d+% of the"):
            checks.check_overlap(
                "bold.nii.gz", moved, "T1w.nii.gz", t1, "atlas.nii.gz", atlas, labels, 0.8
            )


# ------------------------------------------------------------------ 2. header sanity


def _lying_header(path, shape=(1000, 1000, 1000, 1000)):
    img = nib.Nifti1Image(np.ones((2, 2, 2, 2), np.float32), AFFINE)
    img.header.set_data_shape(shape)
    with gzip.open(path, "wb") as fh:
        fh.write(img.header.binaryblock + b"\0" * 4 + np.ones(16, np.float32).tobytes())
    return path


def test_header_claiming_huge_dimensions_fails_at_once(tmp_path):
    path = _lying_header(tmp_path / "sub-01_task-rest_bold.nii.gz")
    with pytest.raises(InputError) as err:
        validate.load_header(path, "BOLD run")
    message = str(err.value)
    assert message.startswith(str(path))
    needed = 352 + 1000**4 * 4
    assert f"{needed} bytes" in message and "decompressed size is 416 bytes" in message


def test_header_check_on_uncompressed_and_truncated_files(tmp_path):
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), AFFINE)
    nib.save(img, tmp_path / "ok.nii")
    nib.save(img, tmp_path / "ok.nii.gz")
    for name in ("ok.nii", "ok.nii.gz"):
        validate.load_header(tmp_path / name)
    raw = (tmp_path / "ok.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(raw[:-100])
    with pytest.raises(InputError, match=r"cut.nii: header claims .* but the file's size is"):
        validate.load_header(tmp_path / "cut.nii")


@pytest.mark.parametrize(
    "affine, match",
    [
        (np.diag([50.0, 2.0, 2.0, 1.0]), "implausible voxel size"),
        (np.diag([0.01, 2.0, 2.0, 1.0]), "implausible voxel size"),
        (np.diag([2.0, 2.0, 0.0, 1.0]), "singular"),
    ],
)
def test_implausible_affines(tmp_path, affine, match):
    # a stand-in: nibabel itself refuses to build some of these headers
    img = SimpleNamespace(shape=(4, 4, 4), affine=affine, header=None)
    with pytest.raises(InputError, match=match):
        checks.check_header(tmp_path / "img.nii.gz", img)


def test_non_finite_affine_and_absurd_dims(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[0, 3] = np.nan
    img = SimpleNamespace(shape=(4, 4, 4), affine=affine, header=None)
    with pytest.raises(InputError, match="NaN or inf"):
        checks.check_header(tmp_path / "x.nii.gz", img)
    img = SimpleNamespace(shape=(4, 0, 4), affine=np.eye(4), header=None)
    with pytest.raises(InputError, match=r"implausible dimensions \(4, 0, 4\)"):
        checks.check_header(tmp_path / "x.nii.gz", img)


# ------------------------------------------------------------------ 3. settings vs data


def test_filter_min_volumes_matches_scipy_padlen():
    from scipy import signal

    for high, low, sos in (
        (0.01, 0.1, signal.butter(5, [0.01, 0.1], btype="band", fs=0.5, output="sos")),
        (None, 0.1, signal.butter(5, 0.1, btype="low", fs=0.5, output="sos")),
        (0.01, None, signal.butter(5, 0.01, btype="high", fs=0.5, output="sos")),
    ):
        zeros = min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum())
        padlen = 3 * (2 * len(sos) + 1 - zeros)
        assert checks.filter_min_volumes(high, low) == padlen + 1
    assert checks.filter_min_volumes(None, None) == 0


def test_too_short_run_fails_naming_file_found_and_needed(tmp_path):
    atlas, _ = write_atlas(tmp_path / "atlas")
    t1, bold = write_subject(tmp_path / "raw", n_volumes=20)
    with pytest.raises(InputError) as err:
        _run(tmp_path, t1, bold, atlas, {"high_pass": 0.01, "low_pass": 0.1})
    message = str(err.value)
    assert message.startswith(str(bold))
    assert "20 volumes" in message and "needs at least 34" in message
    assert "padlen" not in message
    # a low-pass alone needs 19: 20 volumes are enough
    _run(tmp_path, t1, bold, atlas, {"high_pass": None, "low_pass": 0.1})


def test_tr_against_cutoffs_and_shard_window():
    with pytest.raises(
        InputError, match=r"run.nii.gz: TR 4 s .*Nyquist.*low_pass 0.15 Hz needs it above"
    ):
        checks.check_run_settings("run.nii.gz", 200, 4.0, {"low_pass": 0.15})
    with pytest.raises(InputError, match=r"run.nii.gz: 40 volumes; shard.window needs at least 50"):
        checks.check_run_settings("run.nii.gz", 40, 2.0, {}, {"window": 50})
    checks.check_run_settings(
        "run.nii.gz", 150, 2.0, {"high_pass": 0.008, "low_pass": 0.15}, {"window": 50}
    )


# ------------------------------------------------------------------ 4. constant runs


def test_constant_run_is_caught_at_acquisition_on_the_users_file(tmp_path):
    path = tmp_path / "sub-01_task-rest_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.full((4, 4, 4, 10), 7.0, np.float32), AFFINE), path)
    with pytest.raises(InputError, match=r"sub-01_task-rest_bold.nii.gz: every voxel is constant"):
        validate.check_voxels(path)
    data = np.random.default_rng(0).normal(size=(4, 4, 4, 10)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    validate.check_voxels(path)
    # a constant 3D brain mask is fine at acquisition
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), AFFINE), tmp_path / "mask.nii.gz")
    validate.check_voxels(tmp_path / "mask.nii.gz")


# ------------------------------------------------------------------ 6. labels


@pytest.mark.parametrize(
    "label", ["sub-../x", "sub-01/../../etc", "../sub-01", "sub-", "sub-0 1", "01"]
)
def test_non_bids_subject_labels_are_refused(label):
    with pytest.raises(InputError, match="is not a BIDS subject id"):
        checks.check_subject_label(label)
    assert checks.check_subject_label("sub-BraTS20Training001") == "sub-BraTS20Training001"


def test_settings_checked_when_the_dag_is_built(tmp_path):
    from modalmerge.stages.acquire import check_settings

    synthetic = {"kind": "synthetic", "params": {"n_subjects": 4, "n_timepoints": 40}}
    config = {"dataset": synthetic, "preprocess": {"high_pass": 0.01, "low_pass": 0.1}}
    check_settings({**config, "shard": {"window": 40}}, [], tmp_path)
    with pytest.raises(InputError, match=r"40 volumes; shard.window needs at least 50"):
        check_settings({**config, "shard": {"window": 50}}, [], tmp_path)
    # a real run already placed under raw/: its header and sidecar are read, not its voxels
    from tests._sources_fixtures import make_bids

    bids = make_bids(tmp_path / "bids", subjects=("01",))
    real = {"kind": "bids", "params": {"path": str(bids), "task": "rest"}}
    func = tmp_path / "res" / "raw" / "sub-01" / "func"
    func.mkdir(parents=True)
    src = bids / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz"
    (func / "sub-01_task-rest_bold.nii.gz").symlink_to(src)
    (func / "sub-01_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    with pytest.raises(InputError) as err:
        check_settings({**config, "dataset": real, "shard": {}}, ["sub-01"], tmp_path / "res")
    assert str(err.value).startswith(str(src)) and "12 volumes" in str(err.value)
    assert "needs at least 34" in str(err.value)
