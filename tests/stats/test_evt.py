"""The reverse Weibull end-point fit on maxima with a known law."""

import math

import numpy as np
import pytest
from scipy import stats

from pytest_clever.stats.evt import (
    DISCRETE_MAXIMA,
    FALLBACK_PVALUE,
    MAX_GAP_RANGES,
    TOP_ATOM,
    WEAK_PVALUE,
    endpoint_bracket,
    endpoint_interval,
    fit_endpoint,
    ks_test,
)
from pytest_clever.stats.results import TargetScore


def scored(fit) -> TargetScore:
    """A first-order TargetScore carrying ``fit`` (the weak rule lives on TargetScore)."""
    return TargetScore(
        target=1, score=1.0, margin=1.0, lipschitz=fit.endpoint, lipschitz_lower_bound=0.0, **fit.result_fields()
    )


@pytest.mark.parametrize("shape", [2.0, 3.0, 5.0])
def test_fitted_endpoint_recovers_a_known_reverse_weibull(shape):
    # Maxima b = L - W with W ~ Weibull(shape, scale): the right end point is L.
    endpoint, scale = 4.0, 0.8
    errors, max_errors = [], []
    for seed in range(20):
        w = stats.weibull_min.rvs(shape, scale=scale, size=200, random_state=np.random.default_rng(seed))
        fit = fit_endpoint(endpoint - w)
        assert fit.method == "weibull"
        assert fit.loc == pytest.approx(-fit.endpoint)
        assert fit.ks_pvalue > FALLBACK_PVALUE
        assert 0 <= fit.ks_statistic <= 1
        # The end point can only lie at or above what was observed.
        assert fit.endpoint >= fit.sample_max
        errors.append(fit.endpoint / endpoint - 1)
        max_errors.append(fit.sample_max / endpoint - 1)
    errors = np.abs(errors)
    assert errors.max() < 0.10
    assert np.mean(errors) < 0.04
    # The point of the fit: closer to the truth than the plain sample maximum.
    assert np.mean(errors) < np.mean(np.abs(max_errors))


def test_fit_reports_parameters_in_original_units():
    w = stats.weibull_min.rvs(3.0, scale=0.5, size=300, random_state=np.random.default_rng(5))
    fit = fit_endpoint(10.0 - w)
    assert fit.shape == pytest.approx(3.0, rel=0.3)
    assert fit.scale == pytest.approx(0.5, rel=0.3)


def test_degenerate_maxima_fall_back_to_the_maximum():
    fit = fit_endpoint(np.full(50, 2.5))
    assert fit.method == "max"
    assert fit.endpoint == 2.5
    assert math.isnan(fit.shape) and math.isnan(fit.ks_pvalue)
    assert "equal" in fit.reason
    # The sample maximum of constant maxima is exact: a fallback, but not a weak estimate.
    assert not scored(fit).weak


def test_nearly_equal_maxima_from_float32_rounding_fall_back_too():
    b = np.float32(3.0) + np.random.default_rng(0).normal(0, 1e-7, 50)
    assert fit_endpoint(b).method == "max"


def test_maxima_unlike_any_weibull_fall_back_with_a_reason():
    # Two far-apart clusters: no single reverse Weibull fits.
    b = np.r_[np.full(60, 1.0), np.full(60, 5.0)] + np.random.default_rng(1).normal(0, 1e-3, 120)
    fit = fit_endpoint(b)
    assert fit.method == "max"
    assert fit.endpoint == pytest.approx(b.max())
    assert fit.reason
    assert scored(fit).weak


def test_weak_is_a_low_ks_pvalue_of_a_weibull_fit():
    fit = fit_endpoint(4.0 - stats.weibull_min.rvs(3.0, scale=0.8, size=200, random_state=np.random.default_rng(0)))
    assert fit.method == "weibull" and fit.ks_pvalue >= WEAK_PVALUE and not scored(fit).weak
    low = TargetScore(**{**scored(fit).__dict__, "ks_pvalue": WEAK_PVALUE / 2})
    assert low.weak


def test_endpoint_never_runs_off_far_above_the_observed_maxima():
    # Gaussian maxima: a Weibull MLE may push the end point far out; the guard must hold.
    for seed in range(5):
        b = 3.0 + np.random.default_rng(seed).normal(0, 0.1, 100)
        fit = fit_endpoint(b)
        spread = b.max() - b.min()
        assert fit.endpoint <= b.max() + 5 * spread + 1e-9


def test_bad_maxima_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        fit_endpoint([1.0, math.nan])
    with pytest.raises(ValueError):
        fit_endpoint([])


def test_a_recurring_top_value_is_an_exact_atom():
    # A piecewise-constant statistic: its largest value, hit by several batches, is the end point.
    b = np.r_[np.full(5, 3.0), np.random.default_rng(0).uniform(2.0, 2.9, 95)]
    fit = fit_endpoint(b)
    assert fit.method == "max" and fit.reason == TOP_ATOM and fit.endpoint == 3.0
    assert not scored(fit).weak
    assert endpoint_interval(b, method=fit.method, reason=fit.reason, endpoint=fit.endpoint, confidence=0.95) == (
        3.0,
        3.0,
    )


def test_tied_maxima_of_a_good_fit_pass_the_tie_aware_ks_check():
    # Reverse Weibull maxima rounded up to 8 levels (ties, as a ReLU net's maxima have), tested
    # against the law of the unrounded values: scipy's KS test rejects the ties, ks_test does not.
    rejected_plain, rejected_ties = 0, 0
    for seed in range(20):
        w = stats.weibull_min.rvs(3.0, scale=0.8, size=100, random_state=np.random.default_rng(seed))
        z = np.ceil(w / w.max() * 8) / 8
        c, loc, scale = stats.weibull_min.fit(w / w.max(), floc=0)
        rejected_plain += stats.kstest(z, "weibull_min", args=(c, loc, scale)).pvalue < WEAK_PVALUE
        rejected_ties += ks_test(z, c, loc, scale)[1] < WEAK_PVALUE
    assert rejected_plain >= 18
    assert rejected_ties <= 2


def test_discrete_maxima_fall_back_to_the_sample_maximum_without_a_warning():
    # A few atoms with uneven weights (a ReLU net's batch maxima: 16 distinct values of 100).
    rng = np.random.default_rng(3)
    b = rng.choice(
        [21.07, 21.09, 21.104, 21.107, 21.122, 21.125, 21.127, 21.137],
        p=[0.2, 0.1, 0.05, 0.3, 0.05, 0.2, 0.09, 0.01],
        size=100,
    )
    b[0] = 21.137  # the top value seen once: no atom at the top
    b[1:] = np.where(b[1:] == 21.137, 21.127, b[1:])
    fit = fit_endpoint(b)
    assert fit.method == "max" and fit.reason == DISCRETE_MAXIMA
    lo, hi = endpoint_interval(b, method=fit.method, reason=fit.reason, endpoint=fit.endpoint, confidence=0.95)
    assert lo == 21.137 and 21.137 < hi < 21.137 * 1.01
    target = TargetScore(
        target=1,
        score=0.5,
        margin=0.5 * fit.endpoint,
        lipschitz=fit.endpoint,
        lipschitz_lower_bound=0.0,
        **fit.result_fields(),
    ).with_interval((lo, hi), radius=10.0)
    assert target.interval[1] == 0.5 and 0.495 < target.interval[0] < 0.5
    assert not target.weak
    # The same fallback with a wide interval is weak: the score could be much lower.
    assert TargetScore(**{**target.__dict__, "interval": (0.5 * target.score, target.score)}).weak


# --- the bracket that lets first order skip fits that cannot decide the minimum ----------------


def test_bracket_holds_every_fit():
    rng = np.random.default_rng(0)
    maxima = np.stack([3.0 - rng.weibull(s, size=50) for s in (0.5, 1.0, 2.0, 5.0)], axis=1)
    maxima = np.concatenate([maxima, np.full((50, 1), 2.5)], axis=1)  # constant: the fallback
    low, high = endpoint_bracket(maxima)
    for t in range(maxima.shape[1]):
        fit = fit_endpoint(maxima[:, t])
        assert low[t] <= fit.endpoint <= high[t]
        top, spread = maxima[:, t].max(), np.ptp(maxima[:, t])
        assert low[t] == pytest.approx(top) and high[t] == pytest.approx(top + MAX_GAP_RANGES * spread)


def test_bracket_of_non_finite_maxima_is_unbounded():
    low, high = endpoint_bracket(np.array([[1.0, math.inf], [2.0, 1.0]]))
    assert low[1] == -math.inf and high[1] == math.inf and high[0] == pytest.approx(2.0 + MAX_GAP_RANGES)
