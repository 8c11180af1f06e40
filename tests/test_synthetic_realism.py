"""The synthetic data behave like fMRI, and anatomy really drives the task response."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nilearn.maskers import NiftiLabelsMasker
from scipy.signal import periodogram

from modalmerge.data.synthetic.anatomy import render_t1, template, tissue_fractions
from modalmerge.data.synthetic.cohort import SyntheticParams, write_cohort, write_subject
from modalmerge.data.synthetic.factors import cohort_constants, subject_truth

TINY = {
    "n_subjects": 3,
    "grid_shape": [20, 24, 20],
    "voxel_size_mm": 7.2,
    "n_timepoints": 100,
}
SEEDS = (0, 1, 2)


def roi_stats(roi: np.ndarray, tr: float) -> dict[str, float]:
    """Lag-1 autocorrelation, log-log spectral slope, low-band power share, mean correlation."""
    roi = (roi - roi.mean(0)) / roi.std(0)
    lag1 = np.mean(np.sum(roi[1:] * roi[:-1], axis=0) / np.sum(roi**2, axis=0))
    freqs, power = periodogram(roi, fs=1.0 / tr, axis=0, detrend="linear")
    power = power.mean(axis=1)
    band = (freqs >= 0.01) & (freqs <= 0.25)
    slope = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
    low = power[(freqs >= 0.01) & (freqs <= 0.1)].sum() / power[freqs > 0].sum()
    corr = np.corrcoef(roi.T)[np.triu_indices(roi.shape[1], 1)].mean()
    return {"lag1": lag1, "slope": slope, "low_share": low, "mean_corr": corr}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[dict]:
    """Three tiny cohorts (seeds 0-2), each run parcellated with nilearn's labels masker."""
    out = []
    for seed in SEEDS:
        root = tmp_path_factory.mktemp(f"seed{seed}")
        params = {**TINY, "seed": seed}
        write_cohort(params, root)
        masker = NiftiLabelsMasker(  # standardize None: nilearn 0.15 drops the False default
            root / "atlas" / "atlas.nii.gz", detrend=True, standardize=None, t_r=2.0
        )
        for subject in ("sub-001", "sub-002", "sub-003"):
            write_subject(params, subject, root)
            bold = nib.load(root / "raw" / subject / "func" / f"{subject}_task-motor_bold.nii.gz")
            out.append(
                {
                    "name": f"seed {seed} {subject}",
                    "root": root,
                    "bold": bold,
                    "roi": masker.fit_transform(bold),  # (T, R), detrended
                    "truth": dict(np.load(root / "truth" / f"{subject}.npz")),
                }
            )
    return out


def test_parcellated_bold_has_fmri_like_autocorrelation_spectrum_and_correlation(runs):
    for run in runs:
        stats = roi_stats(run["roi"], tr=2.0)
        where = f"{run['name']}: {stats}"
        assert 0.4 <= stats["lag1"] <= 0.9, where
        assert -2.5 <= stats["slope"] <= -0.5, where
        assert stats["low_share"] >= 0.5, where
        assert 0.05 <= stats["mean_corr"] <= 0.4, where


def test_voxel_tsnr_in_brain_is_realistic(runs):
    for run in runs:
        brain = np.asarray(nib.load(run["root"] / "atlas" / "atlas.nii.gz").dataobj) > 0
        series = run["bold"].get_fdata(dtype=np.float32)[brain]
        tsnr = np.median(series.mean(axis=1) / series.std(axis=1))
        assert 30 <= tsnr <= 150, (run["name"], tsnr)


def test_thickness_drives_evoked_amplitude_through_a_saturating_function():
    params = SyntheticParams.from_dict({**TINY, "n_subjects": 60})
    gain = cohort_constants(params).gain
    truths = [subject_truth(params, i) for i in range(1, 61)]
    thickness = np.array([t.thickness for t in truths])  # (subjects, R)
    amplitude = np.array([t.amplitude for t in truths])
    intensity = np.array([t.gm_intensity for t in truths])
    latency = np.array([t.latency for t in truths])
    for r in np.flatnonzero(np.abs(gain) > 0.3):
        signed = np.sign(gain[r]) * amplitude[:, r]
        assert np.corrcoef(thickness[:, r], signed)[0, 1] > 0.9, r
        # saturating: never beyond the region's gain times the maximum amplitude
        assert np.all(signed < abs(gain[r]) * params.amplitude_max)
        assert np.corrcoef(intensity[:, r], latency[:, r])[0, 1] < -0.9, r


def test_bold_carries_each_subjects_true_regional_response(runs):
    true, measured = [], []
    for run in runs:
        truth = run["truth"]
        roi = 100 * run["roi"] / np.asarray(run["bold"].dataobj).mean()  # ~ percent change
        evoked = truth["evoked"] - truth["evoked"].mean(axis=0)
        shape = evoked / np.where(truth["amplitude"] == 0, 1, truth["amplitude"])
        beta = np.sum(shape * roi, axis=0) / np.sum(shape**2, axis=0)  # least squares
        true.append(truth["amplitude"])
        measured.append(beta)
    assert np.corrcoef(np.concatenate(true), np.concatenate(measured))[0, 1] > 0.7


def test_t1_parcel_intensity_reflects_regional_thickness():
    params = SyntheticParams.from_dict({**TINY, "n_subjects": 30})
    atlas = template(params).atlas
    thickness, intensity = [], []
    for i in range(1, 31):
        truth = subject_truth(params, i)
        t1 = render_t1(params, truth, tissue_fractions(params, truth))
        thickness.append(truth.thickness)
        intensity.append(
            np.bincount(atlas.ravel(), t1.ravel())[1:] / np.bincount(atlas.ravel())[1:]
        )
    thickness, intensity = np.array(thickness), np.array(intensity)
    corr = [np.corrcoef(thickness[:, r], intensity[:, r])[0, 1] for r in range(params.n_regions)]
    assert np.mean(corr) > 0.25, np.round(corr, 2)
