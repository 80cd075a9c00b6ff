"""Confidence intervals of scores and of report statistics."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from pytest_clever import clever_score, clever_scores
from pytest_clever.core.validation import DEFAULT_N_BATCHES
from pytest_clever.errors import InvalidInputError
from pytest_clever.stats.evt import endpoint_interval, fit_endpoint
from pytest_clever.stats.intervals import paired_change_interval, statistic_interval
from pytest_clever.stats.report import CleverReport
from pytest_clever.stats.results import CleverResult

from .test_fit_end_to_end import CubicMargin


def _interval(b, fit, confidence=0.95):
    return endpoint_interval(b, method=fit.method, reason=fit.reason, endpoint=fit.endpoint, confidence=confidence)


@pytest.mark.parametrize("shape", [2.0, 4.0])
def test_profile_interval_covers_the_true_end_point(shape):
    # Measured at 100 replicates: 93% (shape 2) and 94% (shape 3, 5) at 95%.
    covered, total = 0, 60
    for seed in range(total):
        w = stats.weibull_min.rvs(shape, scale=0.8, size=DEFAULT_N_BATCHES, random_state=np.random.default_rng(seed))
        fit = fit_endpoint(4.0 - w)
        lo, hi = _interval(4.0 - w, fit)
        assert lo <= fit.endpoint <= hi and lo >= fit.sample_max
        covered += lo <= 4.0 <= hi
    assert covered >= 0.88 * total


def test_a_higher_confidence_gives_a_wider_interval():
    w = stats.weibull_min.rvs(3.0, scale=0.8, size=100, random_state=np.random.default_rng(1))
    fit = fit_endpoint(4.0 - w)
    lo50, hi50 = _interval(4.0 - w, fit, 0.5)
    lo99, hi99 = _interval(4.0 - w, fit, 0.99)
    assert lo99 <= lo50 <= fit.endpoint <= hi50 <= hi99
    assert hi99 - lo99 > 2 * (hi50 - lo50)


def test_constant_maxima_have_an_exact_interval():
    # alpha = 0: a linear margin, whose gradient norm is the same everywhere.
    result = clever_score(CubicMargin(alpha=0.0), torch.zeros(4, dtype=torch.float64), radius=1.0, seed=0)
    assert result.fit_method == "max"
    assert result.interval == (result.score, result.score)


def test_score_interval_in_repr_json_and_old_records():
    result = clever_score(CubicMargin(), torch.zeros(8, dtype=torch.float64), radius=1.0, seed=0)
    lo, hi = result.interval
    assert lo < result.score < hi
    assert f"[{lo:.4g}, {hi:.4g}]" in repr(result)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["interval"] == [lo, hi] and data["confidence"] == 0.95
    assert CleverResult.from_dict(data).interval == (lo, hi)
    # A record saved before intervals existed: the interval is unknown, not invented.
    for key in ("interval", "confidence"):
        data.pop(key)
    for t in data["per_target"].values():
        t.pop("interval")
    old = CleverResult.from_dict(data)
    assert old.interval is None and old.confidence == 0.95


def test_confidence_is_a_setting():
    x = torch.zeros(8, dtype=torch.float64)
    narrow = clever_score(CubicMargin(), x, radius=1.0, seed=0, confidence=0.5)
    wide = clever_score(CubicMargin(), x, radius=1.0, seed=0, confidence=0.99)
    assert narrow.score == wide.score and narrow.confidence == 0.5
    assert wide.interval[0] < narrow.interval[0] <= narrow.interval[1] < wide.interval[1]
    for bad in (0, 1, 1.5, -0.1, "high", math.nan):
        with pytest.raises(InvalidInputError, match="confidence"):
            clever_score(CubicMargin(), x, radius=1.0, seed=0, confidence=bad)


def test_report_interval_of_statistics():
    xs = torch.zeros(6, 8, dtype=torch.float64) + torch.linspace(-0.2, 0.2, 6, dtype=torch.float64)[:, None]
    report = clever_scores(CubicMargin(b=2.0), xs, radius=1.0, seed=0)
    for name in ("mean", "median", "min", "max", "q10"):
        lo, hi = report.interval(name)
        assert lo <= report.statistic(name) <= hi
    # "min" of fixed inputs: only the scores' own uncertainty; never above the lowest score's own interval.
    low = report[report.worst(1)[0]]
    assert report.interval("min")[1] <= low.interval[1] + 1e-12
    data = report.to_dict()
    assert data["mean_interval"] == list(report.interval("mean"))
    assert "mean=" in repr(report) and "[" in repr(report)
    assert CleverReport.from_dict(json.loads(json.dumps(data))).interval("mean") == report.interval("mean")


def test_statistic_interval_combines_input_spread_and_score_uncertainty():
    points = np.linspace(1.0, 2.0, 30)
    exact = statistic_interval(points, [None] * 30, "mean", 0.95, over="inputs")
    noisy = statistic_interval(points, [(p - 0.3, p + 0.3) for p in points], "mean", 0.95, over="inputs")
    # Exact scores: the bootstrap standard error of a mean of 30 spread values (sd 0.29 / sqrt(30)).
    assert exact[1] - exact[0] == pytest.approx(2 * 1.96 * points.std() / math.sqrt(30), rel=0.15)
    # Each score +-0.3 at 95% (sd 0.153) adds variance 0.153^2 / 30 to the mean's.
    expected = 2 * 1.96 * math.sqrt((points.std() ** 2 + 0.153**2) / 30)
    assert noisy[1] - noisy[0] == pytest.approx(expected, rel=0.15)


def test_the_estimator_noise_interval_holds_the_inputs_fixed_and_the_input_sampling_one_resamples_them():
    # Widely spread scores, each known to +-0.001: the estimator's noise is tiny, the input-to-input spread is not.
    points = np.array([0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.55])
    intervals = [(p - 0.001, p + 0.001) for p in points]
    estimator = statistic_interval(points, intervals, "mean", 0.95)  # the default kind
    assert estimator == statistic_interval(points, intervals, "mean", 0.95, over="estimator")
    inputs = statistic_interval(points, intervals, "mean", 0.95, over="inputs")
    assert estimator[0] <= points.mean() <= estimator[1]
    # sd of the mean of 10 scores of sd 0.001 / 1.96: about 0.0003; 95% width about 0.0013.
    assert estimator[1] - estimator[0] < 0.003
    # The bootstrap over inputs: about 2 * 1.96 * 0.25 / sqrt(10) = 0.3 wide.
    assert inputs[1] - inputs[0] > 0.2
    for statistic in ("median", "q10"):
        narrow = statistic_interval(points, intervals, statistic, 0.95)
        wide = statistic_interval(points, intervals, statistic, 0.95, over="inputs")
        assert narrow[1] - narrow[0] < 0.01 < wide[1] - wide[0]
    # "min" and "max" are never resampled: both kinds agree.
    for statistic in ("min", "max"):
        assert statistic_interval(points, intervals, statistic, 0.95) == statistic_interval(
            points, intervals, statistic, 0.95, over="inputs"
        )
    report = CleverReport(tuple(_result(p, iv) for p, iv in zip(points, intervals, strict=True)))
    assert report.interval("mean") == estimator and report.interval("mean", over="inputs") == inputs
    with pytest.raises(InvalidInputError, match="interval must be one of estimator, inputs.*'population'"):
        statistic_interval(points, intervals, "mean", 0.95, over="population")


def _result(score: float, interval: tuple[float, float], radius: float = 2.0) -> CleverResult:
    """A first-order result whose deciding target has ``score`` and ``interval`` (fit fields not used)."""
    from pytest_clever.stats.target_score import TargetScore

    target = TargetScore(0, score, 1.0, 1.0 / score, 0.0, 0.0, "weibull", 1.0, 1.0, 1.0, 0.1, 0.5, interval=interval)
    return CleverResult(score, 0, 1, 2.0, radius, 1, {0: target}, 10, 16, 0, 0.0)


def test_a_score_at_the_radius_is_capped_and_says_so():
    capped, free = _result(2.0, (2.0, 2.0)), _result(1.5, (1.4, 1.6))
    assert capped.capped and not free.capped
    assert "capped at the radius" in repr(capped) and "capped" not in repr(free)
    data = capped.to_dict()
    assert data["capped"] is True
    assert data["capped_note"] == "capped at the radius: the ball is too small to see this model's decision boundary"
    assert free.to_dict()["capped"] is False and "capped_note" not in free.to_dict()
    assert CleverResult.from_dict(json.loads(json.dumps(data))).capped


def test_paired_change_of_identical_runs_is_zero_and_of_a_loss_is_negative():
    points = np.linspace(1.0, 2.0, 30)
    ivs = [(p * 0.95, p * 1.05) for p in points]
    change, lo, hi = paired_change_interval(points, ivs, points, ivs, "mean", 0.95)
    assert change == 0 and lo < 0 < hi and hi - lo < 0.05
    change, lo, hi = paired_change_interval(
        0.7 * points, [(0.7 * a, 0.7 * b) for a, b in ivs], points, ivs, "mean", 0.95
    )
    assert change == pytest.approx(-0.3) and lo < -0.3 < hi < -0.25


def test_second_order_interval_maps_the_curvature_end_point():
    # CubicMargin's Hessian is 2 alpha x_1 e_1 e_1^T: spectral norm up to 2 alpha R.
    result = clever_score(CubicMargin(b=0.2), torch.zeros(8, dtype=torch.float64), radius=1.0, seed=0, order=2)
    t = result.per_target[result.target]
    assert t.fit_method == "weibull"
    # The score formula recovered from the stored fields gives back the score at the fitted end point.
    assert t.score_at(t.endpoint, result.radius) == pytest.approx(result.score, rel=1e-9)
    lo, hi = result.interval
    assert lo < result.score < hi
    # A larger curvature bound, a smaller radius.
    assert t.score_at(2 * t.endpoint, result.radius) < result.score
