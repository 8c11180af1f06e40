"""The noise-free run, the oracle and the noise ceiling (issue 18, item 3).

The generator writes each subject's noise-free run (``truth/<subject>_bold-noisefree.nii.gz``),
rendered by the same code as the observed run with every random term off; evaluate sends it
through the same preprocess and parcellate code and settings. The ceiling is its correlation
with the observed processed series; the ``oracle`` predictor outputs it per test window.
"""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from modalmerge.data.parcellation.parcellate import parcellate_subject
from modalmerge.data.preprocess import preprocess_subject
from modalmerge.data.synthetic import bold as bold_module
from modalmerge.data.synthetic.anatomy import tissue_fractions
from modalmerge.data.synthetic.cohort import subject_ids, write_cohort, write_subject
from modalmerge.data.synthetic.factors import subject_truth
from modalmerge.data.synthetic.params import as_params
from modalmerge.evaluation.intervals import paired_difference
from modalmerge.evaluation.scoring import BaselineSettings, ScoringInput
from modalmerge.evaluation.time_series import score_time_series
from modalmerge.settings import ParcellateSettings, PreprocessSettings
from modalmerge.stages.common import SplitArrays
from modalmerge.stages.evaluate import load_truth

# configs/tiny.yaml's cohort and processing settings
TINY = {
    "seed": 1,
    "n_subjects": 10,
    "voxel_size_mm": 8.0,
    "grid_shape": [18, 22, 18],
    "n_regions": 8,
    "n_timepoints": 60,
}
PREPROCESS = PreprocessSettings.coerce(
    {
        "detrend": True,
        "high_pass": 0.01,
        "low_pass": 0.15,
        "standardize": True,
        "normalize_anatomy": "robust_zscore",
    }
)
PARCELLATE = ParcellateSettings.coerce({"connectivity": "correlation"})
WINDOW, STRIDE = 30, 15

# sha256 of the observed run of subject index 1 of TINY, rendered by the code before the
# noise-free run existed (main at 9c30c11): the observed run must not move
OBSERVED_SHA256 = "be6a7f93f0436c64"


def _render(params, index=1, **kwargs):
    p = as_params(params)
    truth = subject_truth(p, index)
    return bold_module.render_bold(p, truth, tissue_fractions(p, truth), **kwargs)


def test_the_observed_run_is_bit_identical_with_the_noise_free_run_rendered():
    plain, both = _render(TINY), _render(TINY, noisefree=True)
    assert plain.noisefree is None and both.noisefree is not None
    np.testing.assert_array_equal(plain.data, both.data)
    assert plain.slope == both.slope
    digest = hashlib.sha256(np.ascontiguousarray(both.data).tobytes()).hexdigest()
    assert digest.startswith(OBSERVED_SHA256)


def test_the_noise_free_run_is_the_observed_run_with_every_random_term_off(monkeypatch):
    """Noise scale 0 (smooth noise, drift, physiology, voxel AR), no thermal noise, no
    spontaneous activity: the observed run is then the noise-free run up to int16 rounding."""
    monkeypatch.setattr(bold_module, "SPONTANEOUS_PCT", 0.0)
    run = _render({**TINY, "noise_scale": 0.0, "tsnr": 1e9}, noisefree=True)
    clean = run.noisefree
    assert clean.dtype == np.float32 and clean.shape == run.data.shape
    observed = run.data.astype(np.float64) * run.slope
    assert np.abs(observed - clean).max() <= 0.51 * run.slope  # rint, float32 rounding
    # and it carries the task: grey-matter voxels vary over time, outside the head is 0
    assert (clean.std(axis=3) > 0).sum() > 100
    np.testing.assert_array_equal(clean[run.data.max(axis=3) == 0], 0.0)


# ------------------------------------------------------- a tiny cohort, processed


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny cohort with its observed runs preprocessed and parcellated (tiny.yaml)."""
    root = tmp_path_factory.mktemp("tiny")
    write_cohort(TINY, root)
    series = {}
    for s in subject_ids(TINY):
        write_subject(TINY, s, root)
        out = root / "work" / s
        out.mkdir(parents=True)
        preprocess_subject(
            root / "raw" / s / "anat" / f"{s}_T1w.nii.gz",
            root / "raw" / s / "func" / f"{s}_task-motor_bold.nii.gz",
            root / "atlas" / "atlas.nii.gz",
            out / "t1.nii.gz",
            out / "bold.nii.gz",
            PREPROCESS,
        )
        parcellate_subject(
            out / "t1.nii.gz",
            out / "bold.nii.gz",
            root / "atlas" / "atlas.nii.gz",
            root / "atlas" / "labels.tsv",
            out / "parc.npz",
            PARCELLATE,
        )
        with np.load(out / "parc.npz") as parc:
            series[s] = (parc["roi_timeseries"].astype(np.float32), parc["structural_features"])
    return root, series


def test_write_subject_writes_the_noise_free_run_on_the_bold_grid(tiny):
    root, _ = tiny
    observed = nib.load(root / "raw" / "sub-001" / "func" / "sub-001_task-motor_bold.nii.gz")
    clean = nib.load(root / "truth" / "sub-001_bold-noisefree.nii.gz")
    assert clean.shape == observed.shape and clean.get_data_dtype() == np.float32
    np.testing.assert_allclose(clean.affine, observed.affine)
    assert clean.header.get_zooms() == observed.header.get_zooms()  # 4th: the TR
    # same intensity units: the time-mean of each head voxel agrees within the noise
    head = np.asanyarray(observed.dataobj).max(axis=3) > 0
    mean_obs = observed.get_fdata()[head].mean(axis=1)
    mean_clean = clean.get_fdata()[head].mean(axis=1)
    assert np.median(np.abs(mean_obs - mean_clean) / mean_clean) < 0.02


def _windows(series, subjects):
    ids, starts, targets = [], [], []
    for s in subjects:
        run = series[s][0]
        for start in range(0, len(run) - WINDOW + 1, STRIDE):
            ids.append(s)
            starts.append(start)
            targets.append(run[start : start + WINDOW])
    return ids, np.asarray(starts, dtype=np.int64), np.stack(targets)


def _scoring_input(root, series):
    """Train on 6 subjects, test on 4; the condition is each subject's parcel structural
    features (ridge from anatomy), the stand-in "model" the training subjects' average
    processed noise-free run (a strong predictor that sees nothing of the test subjects)."""
    subjects = subject_ids(TINY)
    train_ids, test_ids = subjects[:6], subjects[6:]
    tr_s, tr_st, tr_t = _windows(series, train_ids)
    te_s, te_st, te_t = _windows(series, test_ids)
    features = {s: series[s][1].ravel() for s in subjects}
    train_truth = load_truth(
        root / "truth", train_ids, processing=(PREPROCESS, PARCELLATE)
    )  # training subjects' truth: allowed for the stand-in model
    average = np.mean([train_truth[s].noisefree for s in train_ids], axis=0)
    prediction = np.stack([average[st : st + WINDOW] for st in te_st]).astype(np.float32)
    train = SplitArrays(
        subjects=tr_s,
        window_start=tr_st,
        condition=np.stack([features[s] for s in tr_s]),
        target=tr_t,
    )
    test = SplitArrays(
        subjects=te_s,
        window_start=te_st,
        condition=np.stack([features[s] for s in te_s]),
        target=te_t,
        prediction=prediction,
    )
    return ScoringInput(
        condition="tabular",
        train=train,
        test=test,
        x_train=train.condition,
        x_test=test.condition,
        baselines=BaselineSettings(alphas=np.array([0.1, 1.0, 10.0, 100.0]), n_components=5),
    )


@pytest.fixture(scope="module")
def scored(tiny):
    root, series = tiny
    data = _scoring_input(root, series)
    loader = lambda subjects: load_truth(  # noqa: E731
        root / "truth", subjects, processing=(PREPROCESS, PARCELLATE)
    )
    return score_time_series(data, truth=loader)


def test_the_oracle_scores_exactly_the_ceiling_per_subject(scored):
    oracle = scored.per_unit["oracle"]["pearson_r"]
    ceiling = scored.per_unit["noise_ceiling"]["pearson_r"]
    assert len(oracle) == len(ceiling) == 4
    np.testing.assert_allclose(oracle, ceiling, rtol=0, atol=1e-9)
    assert scored.scores["oracle"]["pearson_r"] == pytest.approx(
        scored.scores["noise_ceiling"]["pearson_r"], abs=1e-9
    )
    np.testing.assert_allclose(scored.arrays["oracle"], scored.arrays["noise_free"], atol=1e-6)


def test_no_predictor_exceeds_the_ceiling_beyond_its_interval(scored):
    ceiling = np.asarray(scored.per_unit["noise_ceiling"]["pearson_r"])
    assert 0.2 < ceiling.mean() < 1.0
    for name in ("model", "group_mean", "ridge"):
        r = np.asarray(scored.per_unit[name]["pearson_r"])
        difference = paired_difference(r, ceiling)
        assert difference.ci_low <= 0, (name, r, ceiling)
        assert (r <= ceiling + 0.02).all(), (name, r, ceiling)  # per subject, at most noise


def test_the_processed_ceiling_is_at_least_the_regional_truth_correlation(scored):
    """The old reference correlated the regional evoked truth, unfiltered and before partial
    volumes, with the observed series; the processed noise-free run does at least as well."""
    new = np.asarray(scored.per_unit["noise_ceiling"]["pearson_r"])
    old = np.asarray(scored.per_unit["regional_truth"]["pearson_r"])
    assert new.mean() >= old.mean()


def test_without_processing_settings_only_the_regional_truth_is_reported(tiny):
    root, series = tiny
    data = _scoring_input(root, series)
    out = score_time_series(data, truth=lambda subjects: load_truth(root / "truth", subjects))
    assert "regional_truth" in out.scores
    assert "noise_ceiling" not in out.scores and "oracle" not in out.scores


def test_the_noise_free_run_is_processed_with_the_observed_runs_sidecar(tiny, tmp_path):
    """A censored volume in the raw sidecar is censored in the noise-free run too."""
    root, _ = tiny
    sidecar = root / "raw" / "sub-002" / "func" / "sub-002_task-motor_bold.json"
    original = sidecar.read_text()
    try:
        meta = json.loads(original)
        meta["SampleMask"] = [i for i in range(60) if i != 40]
        sidecar.write_text(json.dumps(meta))
        truth = load_truth(root / "truth", ["sub-002"], processing=(PREPROCESS, PARCELLATE))
    finally:
        sidecar.write_text(original)
    assert 40 not in truth["sub-002"].volume_index and len(truth["sub-002"].volume_index) == 59


def test_the_truth_adds_predictors_and_moves_no_other_score(tiny, scored):
    """Model and baseline scores are the same with and without the truth loader."""
    root, series = tiny
    plain = score_time_series(_scoring_input(root, series))
    assert set(scored.scores) - set(plain.scores) == {"oracle", "noise_ceiling", "regional_truth"}
    for name, values in plain.scores.items():
        assert scored.scores[name] | values == scored.scores[name]  # no value moved
        assert scored.per_unit[name] == plain.per_unit[name]
