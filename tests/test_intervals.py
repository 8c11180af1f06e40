"""Properties of the bootstrap intervals and paired differences (evaluation/intervals.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modalmerge.evaluation.intervals import (
    BEATS,
    DOES_NOT_BEAT,
    bootstrap_ci,
    paired_difference,
    verdict,
    wilcoxon_p,
)


def test_interval_of_a_constant_is_that_constant():
    assert bootstrap_ci([0.37] * 9) == (0.37, 0.37)
    d = paired_difference([0.5] * 6, [0.2] * 6)
    assert d.value == pytest.approx(0.3)
    assert d.ci_low == pytest.approx(0.3) and d.ci_high == pytest.approx(0.3)


def test_interval_covers_the_true_mean_about_95_percent_of_seeded_repeats():
    rng = np.random.default_rng(1)
    repeats, n, covered = 400, 30, 0
    for k in range(repeats):
        sample = rng.normal(2.0, 1.5, size=n)
        low, high = bootstrap_ci(sample, seed=k, n_boot=1000)
        covered += low <= 2.0 <= high
    # percentile intervals undercover slightly at n = 30; a wrong quantile (e.g. 50 %
    # or 99.9 %) lands far outside this band
    assert 0.90 <= covered / repeats <= 0.985


def test_interval_narrows_with_more_units_and_contains_the_mean():
    rng = np.random.default_rng(2)
    small, large = rng.normal(size=10), rng.normal(size=1000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 4


def test_shift_of_every_unit_moves_the_difference_by_that_shift():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=12), rng.normal(size=12)
    base = paired_difference(a, b)
    moved = paired_difference(a + 0.25, b)
    assert moved.value == pytest.approx(base.value + 0.25)
    assert moved.ci_low == pytest.approx(base.ci_low + 0.25)
    assert moved.ci_high == pytest.approx(base.ci_high + 0.25)
    assert moved.n == base.n == 12


def test_identical_inputs_give_identical_outputs_and_the_seed_matters():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=15), rng.normal(size=15)
    assert paired_difference(a, b) == paired_difference(a.copy(), b.copy())
    assert bootstrap_ci(a, seed=1) == bootstrap_ci(a, seed=1)
    assert bootstrap_ci(a, seed=1) != bootstrap_ci(a, seed=2)


def test_difference_is_paired_not_two_independent_samples():
    # large between-unit spread, a small constant-ish gain: only pairing sees it
    rng = np.random.default_rng(5)
    b = rng.normal(0, 1.0, size=10)
    a = b + 0.05 + rng.normal(0, 0.005, size=10)
    d = paired_difference(a, b)
    assert d.ci_low > 0 and verdict(d) == BEATS
    assert d.p_wilcoxon < 0.01


def test_verdict_needs_the_interval_above_zero():
    rng = np.random.default_rng(6)
    b = rng.normal(size=10)
    assert verdict(paired_difference(b + rng.normal(0, 1, 10), b)) == DOES_NOT_BEAT
    assert verdict(paired_difference(b - 0.1, b)) == DOES_NOT_BEAT  # below zero
    assert verdict(paired_difference(b, b)) == DOES_NOT_BEAT  # exactly zero


def test_undefined_cases_are_nan_and_do_not_beat():
    assert all(math.isnan(x) for x in bootstrap_ci([0.4]))
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert all(math.isnan(x) for x in bootstrap_ci([1.0, np.inf]))
    one = paired_difference([0.9], [0.1])
    assert one.n == 1 and math.isnan(one.ci_low) and math.isnan(one.p_wilcoxon)
    assert verdict(one) == DOES_NOT_BEAT
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1, 2], [1, 2, 3])


def test_wilcoxon_matches_scipy_on_a_known_case():
    from scipy.stats import wilcoxon

    d = np.array([0.3, -0.1, 0.25, 0.4, 0.05, 0.2, -0.02, 0.33])
    assert wilcoxon_p(d) == pytest.approx(wilcoxon(d).pvalue)
    assert paired_difference(d, np.zeros_like(d)).p_wilcoxon == pytest.approx(wilcoxon(d).pvalue)


def test_no_verdict_of_beats_on_fewer_than_five_units():
    """Three units that all favour the model give a positive interval, but too few units
    for a verdict; five such units do."""
    from modalmerge.evaluation.intervals import MIN_UNITS_FOR_VERDICT, paired_difference, verdict

    assert MIN_UNITS_FOR_VERDICT == 5
    few = paired_difference([0.5, 0.6, 0.55], [0.1, 0.2, 0.15])
    assert few.ci_low > 0 and verdict(few) == "does not beat"
    enough = paired_difference([0.5, 0.6, 0.55, 0.52, 0.58], [0.1, 0.2, 0.15, 0.12, 0.18])
    assert enough.ci_low > 0 and verdict(enough) == "beats"


def test_the_ratio_of_means_interval_resamples_both_parts_together():
    from modalmerge.evaluation.intervals import ratio_of_means_ci

    rng = np.random.default_rng(0)
    true = rng.uniform(0.1, 0.3, size=12)
    mine = 0.8 * true + 0.01 * rng.normal(size=12)  # a ratio near 0.8 on every unit
    low, high = ratio_of_means_ci(mine, true)
    assert low < mine.mean() / true.mean() < high and 0.75 < low and high < 0.85
    assert ratio_of_means_ci(mine, true) == (low, high)  # seeded
    assert ratio_of_means_ci(2 * mine, 2 * true) == pytest.approx((low, high))  # scale-free
    # one unit far off in its own ratio (a denominator near 0) barely moves the interval
    mine[0], true[0] = 0.05, 0.001
    low, high = ratio_of_means_ci(mine, true)
    assert 0.7 < low < high < 1.0


def test_the_ratio_of_means_interval_is_undefined_where_the_ratio_is():
    from modalmerge.evaluation.intervals import ratio_of_means_ci

    assert all(np.isnan(ratio_of_means_ci([0.1], [0.2])))  # one unit
    assert all(np.isnan(ratio_of_means_ci([0.1, np.nan], [0.2, 0.3])))
    assert all(np.isnan(ratio_of_means_ci([0.1, 0.2], [0.0, 0.0])))  # denominator 0
    with pytest.raises(ValueError, match="differ in length"):
        ratio_of_means_ci([0.1, 0.2], [0.2, 0.3, 0.4])


def test_the_paired_ratio_difference_is_the_difference_of_the_ratios_of_means():
    """Two predictors' realism ratios against one truth: the difference of the ratios of
    means, its interval resampling units jointly, undefined where a ratio is."""
    from modalmerge.evaluation.intervals import paired_ratio_difference, ratio_of_means_ci

    rng = np.random.default_rng(1)
    true = rng.uniform(0.1, 0.3, size=12)
    a = 1.0 * true + 0.01 * rng.normal(size=12)
    b = 0.7 * true + 0.01 * rng.normal(size=12)
    true[0], a[0], b[0] = 0.001, 0.05, -0.05  # one unit whose own ratios are far off
    diff = paired_ratio_difference(a, b, true)
    assert diff.value == pytest.approx(a.mean() / true.mean() - b.mean() / true.mean())
    assert (diff.ci_low, diff.ci_high) == ratio_of_means_ci(a - b, true)
    assert 0.2 < diff.ci_low < diff.value < diff.ci_high < 0.5 and diff.n == 12
    assert paired_difference(a / true, b / true).value > 5  # per-unit ratios: unit 0 rules
    assert diff.p_wilcoxon < 0.01  # a - b > 0 on most units
    assert paired_ratio_difference(a, b, true) == diff  # seeded
    assert np.isnan(paired_ratio_difference([0.1, 0.2], [0.1, 0.1], [0.0, 0.0]).value)
    assert np.isnan(paired_ratio_difference([0.1, np.inf], [0.1, 0.1], [0.2, 0.3]).ci_low)
    with pytest.raises(ValueError, match="differ in length"):
        paired_ratio_difference([0.1, 0.2], [0.1, 0.2], [0.2, 0.3, 0.4])
