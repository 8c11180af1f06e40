"""The one grid check and the one repetition-time reader (modalmerge.data.nifti)."""

import nibabel as nib
import numpy as np
import pytest

from modalmerge.data.nifti import (
    GRID_ATOL_MM,
    TR_RTOL,
    check_same_grid,
    grid_mismatch,
    header_tr,
    repetition_time,
    same_grid,
)
from modalmerge.io import InputError


def bold(tr=2.0, unit="sec", shape=(4, 4, 4, 5)):
    img = nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4))
    if unit is not None:
        img.header.set_xyzt_units("mm", unit)
    img.header.set_zooms((1.0, 1.0, 1.0, tr))
    return img


def test_grid_tolerance_is_absolute_in_mm():
    a = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.diag([2.0, 2, 2, 1]))
    near = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), a.affine + 0.9 * GRID_ATOL_MM)
    far = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), a.affine + 2 * GRID_ATOL_MM)
    assert same_grid(a, near) and not same_grid(a, far)
    assert "affine differs by up to 0.002 mm" in grid_mismatch(far, a)
    assert "does not match" in grid_mismatch(nib.Nifti1Image(np.zeros((4, 4, 3)), a.affine), a)
    with pytest.raises(InputError, match="T1 is not on the atlas grid: affine differs"):
        check_same_grid(far, a, "t1.nii.gz", "T1")


def test_header_tr_needs_a_time_unit():
    assert header_tr(bold(2.0)) == 2.0
    assert header_tr(bold(720.0, "msec")) == 0.72
    assert header_tr(bold(1.0, unit=None)) is None  # pixdim[4] 1 without a unit: a placeholder
    assert header_tr(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))) is None


def test_repetition_time_agrees_within_a_tenth_of_a_percent():
    assert TR_RTOL == 1e-3
    assert repetition_time("b.nii", bold(2.0), {"sidecar": 2.001}) == 2.001  # first wins
    with pytest.raises(InputError, match="inconsistent repetition times: 2.01 s in sidecar"):
        repetition_time("b.nii", bold(2.0), {"sidecar": 2.01})  # 0.5 %: 1 % let this through
    assert repetition_time("b.nii", bold(1.0, unit=None), {"sidecar": 2.0}) == 2.0
    with pytest.raises(InputError, match="no repetition time"):
        repetition_time("b.nii", bold(1.0, unit=None), {"sidecar": None})
    with pytest.raises(InputError, match="is not positive"):
        repetition_time("b.nii", bold(), {"tr argument": -1})
