"""A score's interval reaches below the profile-likelihood one: fewer points bias the score upwards."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_clever import clever_score
from pytest_clever.stats.evt import BIAS_WIDENING, endpoint_interval, fit_endpoint, score_endpoint_interval
from tests.helpers import TANH_X0, tanh_net


def _maxima() -> np.ndarray:
    rng = np.random.default_rng(3)
    return 5.0 - rng.weibull(4.0, size=100)


def test_the_upper_side_of_the_end_point_interval_is_widened():
    b = _maxima()
    fit = fit_endpoint(b)
    args = dict(method=fit.method, reason=fit.reason, endpoint=fit.endpoint, confidence=0.95)
    lo, hi = endpoint_interval(b, **args)
    wide_lo, wide_hi = score_endpoint_interval(b, **args)
    assert wide_lo == lo
    assert wide_hi - fit.endpoint == pytest.approx(BIAS_WIDENING * (hi - fit.endpoint), rel=1e-12)
    assert BIAS_WIDENING == 1.5


def test_a_result_reports_the_widened_interval():
    result = clever_score(tanh_net(), TANH_X0, radius=0.5, seed=0, batch_size=16)
    deciding = result.per_target[result.target]
    b = np.asarray(result.batch_maxima)
    lo, hi = endpoint_interval(
        b, method=deciding.fit_method, reason=deciding.fit_reason, endpoint=deciding.endpoint, confidence=0.95
    )
    wide_hi = deciding.endpoint + BIAS_WIDENING * (hi - deciding.endpoint)
    assert result.interval == (deciding.score_at(wide_hi, 0.5), deciding.score_at(lo, 0.5))
    assert result.interval[0] < deciding.score_at(hi, 0.5)  # strictly lower than the plain interval's end
