"""The reverse Weibull end-point fit on maxima with a known law."""

import math

import numpy as np
import pytest
from scipy import stats

from pytest_clever.evt import FALLBACK_PVALUE, WEAK_PVALUE, fit_endpoint
from pytest_clever.results import TargetScore


def scored(fit) -> TargetScore:
    """A first-order TargetScore carrying ``fit`` (the weak rule lives on TargetScore)."""
    return TargetScore(target=1, score=1.0, margin=1.0, lipschitz=fit.endpoint, lipschitz_lower_bound=0.0,
                       **fit.result_fields())


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
