import numpy as np
import pytest

from modalmerge.data.synthetic.hrf import canonical_hrf, event_regressor


def test_canonical_hrf_peaks_near_five_seconds_and_undershoots():
    hrf = canonical_hrf(0.1)
    assert hrf.sum() == pytest.approx(1.0)
    assert 4.5 <= np.argmax(hrf) * 0.1 <= 6.0
    assert hrf[int(12 / 0.1)] < 0 < hrf[int(5 / 0.1)]


def test_event_regressor_matches_nilearn_glover_regressor():
    from nilearn.glm.first_level import compute_regressor

    times = np.arange(-4.0, 200.0, 0.5)
    ours = event_regressor([10.0, 60.0], [20.0, 20.0], times)
    theirs, _ = compute_regressor(np.array([[10, 60], [20, 20], [1, 1]]), "glover", times)
    assert np.corrcoef(ours, theirs[:, 0])[0, 1] > 0.98


def test_bad_sampling_step_is_refused():
    with pytest.raises(ValueError, match="dt"):
        canonical_hrf(0.0)
