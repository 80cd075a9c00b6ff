"""Screening of target classes (stats.screening): the rule on synthetic per-point values."""

import math

import numpy as np
import pytest

from pytest_clever.stats.evt import MAX_GAP_RANGES, endpoint_interval, endpoint_upper_bounds
from pytest_clever.stats.screening import SCREEN_SUB_BATCHES, screen_targets, screening_level

RADIUS = 10.0


def values(seed: int, lipschitz: np.ndarray, n: int = 128) -> np.ndarray:
    """Per-point gradient norms below each column's end point ``lipschitz`` (a reverse Weibull, shape 3)."""
    rng = np.random.default_rng(seed)
    return lipschitz[None, :] * (1 - 0.3 * rng.weibull(3.0, size=(n, len(lipschitz))))


def profile_bound(column: np.ndarray, level: float) -> float:
    """U_j by the scalar path: the profile likelihood interval's upper end of the 16 sub-batch maxima."""
    b = column.reshape(SCREEN_SUB_BATCHES, -1).max(axis=1)
    return endpoint_interval(b, method="weibull", reason="", endpoint=float(b.max()), confidence=level)[1]


def test_the_batched_upper_bounds_are_those_of_the_profile_interval():
    v = values(0, np.linspace(1, 3, 40)).reshape(SCREEN_SUB_BATCHES, 8, 40).max(axis=1)
    ours = endpoint_upper_bounds(v, confidence=0.995)
    for j in range(40):
        hi = endpoint_interval(v[:, j], method="weibull", reason="", endpoint=float(v[:, j].max()), confidence=0.995)
        assert ours[j] == pytest.approx(hi[1], rel=1e-12)
    # Columns without a likelihood: constant, or a recurring largest value.
    flat = np.c_[np.full(16, 2.0), np.r_[np.full(3, 5.0), np.linspace(1, 4, 13)]]
    assert np.isnan(endpoint_upper_bounds(flat, confidence=0.995)).all()


@pytest.mark.parametrize("seed", range(5))
def test_a_class_with_a_much_larger_margin_is_screened_and_the_minimum_never(seed):
    lipschitz = np.ones(30)
    margins = np.r_[1.0, 1.05, np.full(28, 20.0)]  # classes 0 and 1 near each other, the rest 20x further
    result = screen_targets(values(seed, lipschitz), margins, radius=RADIUS, confidence=0.95)
    assert set(result.screened) == set(range(2, 30))
    assert result.survivors == (0, 1)
    v = values(seed, lipschitz)
    assert result.best == min(margins / v.max(axis=0))
    assert (result.lower[2:] > result.best).all() and np.isnan(result.lower[:2]).all()
    assert result.points == 128 and result.level == pytest.approx(0.995)


def test_the_minimum_class_survives_over_many_seeds():
    # The class of the smallest true score (margin / end point) is never screened out, also when a
    # near tie with another class is close to the rule's edge.
    rng = np.random.default_rng(7)
    for seed in range(200):
        lipschitz = rng.uniform(0.5, 2.0, size=50)
        margins = rng.uniform(0.0, 5.0, size=50)
        true = margins / lipschitz
        result = screen_targets(values(seed, lipschitz), margins, radius=RADIUS, confidence=0.95)
        assert int(np.argmin(true)) in result.survivors, seed


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spread", [3.0, 1.0])
def test_the_decision_is_the_formula(seed, spread):
    # Margins spread over 3 or 1 (near ones need the profile likelihood, far ones the bracket decides).
    rng = np.random.default_rng(seed)
    lipschitz = rng.uniform(0.9, 1.1, size=60)
    margins = rng.uniform(0.5, 0.5 + spread, size=60)
    v = values(seed, lipschitz)
    result = screen_targets(v, margins, radius=RADIUS, confidence=0.9)
    assert 30 <= len(result.screened) <= 58  # both decisions occur
    level = screening_level(0.9)
    best = min(min(g / m, RADIUS) for g, m in zip(margins, v.max(axis=0), strict=True))
    assert result.best == best
    for j in range(60):
        formula = min(margins[j] / profile_bound(v[:, j], level), RADIUS) > best
        assert (j in result.screened) == formula, j
        if formula:
            # The reported bound is the profile's or the looser bracket's (which already decides).
            b = v[:, j].reshape(SCREEN_SUB_BATCHES, -1).max(axis=1)
            bracket = b.max() + MAX_GAP_RANGES * (b.max() - b.min())
            assert result.lipschitz_bound[j] in (pytest.approx(profile_bound(v[:, j], level)), bracket)
            assert result.lower[j] == min(margins[j] / result.lipschitz_bound[j], RADIUS) > best


def test_the_radius_caps_both_sides_so_capped_ties_are_never_screened():
    # Every score is capped at the radius: equal capped scores tie, and the class index decides.
    margins = np.r_[np.full(5, 100.0)]
    result = screen_targets(values(0, np.ones(5)), margins, radius=1.0, confidence=0.95)
    assert result.survivors == tuple(range(5)) and result.best == 1.0


def test_a_negative_or_nan_margin_stops_the_screening():
    margins = np.r_[1.0, -0.5, np.full(10, 50.0)]
    result = screen_targets(values(0, np.ones(12)), margins, radius=RADIUS, confidence=0.95)
    assert result.survivors == tuple(range(12)) and math.isnan(result.best)
    margins[1] = math.nan
    assert screen_targets(values(0, np.ones(12)), margins, radius=RADIUS, confidence=0.95).screened == ()


def test_columns_without_a_likelihood_survive():
    v = values(0, np.ones(4))
    v[:, 2] = 0.5  # constant: no likelihood, however large its margin
    v[:, 3] = np.nan
    result = screen_targets(v, np.r_[1.0, 50.0, 50.0, 50.0], radius=RADIUS, confidence=0.95)
    assert result.screened == (1,)


def test_points_must_split_into_the_sub_batches():
    with pytest.raises(ValueError, match="sub-batches"):
        screen_targets(np.ones((100, 3)), np.ones(3), radius=1.0, confidence=0.95)
