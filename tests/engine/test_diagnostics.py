"""The notes ladder both orders share: weak fits and fallbacks to the sample maximum."""

import pytest

from pytest_clever import TargetScore
from pytest_clever._engine.diagnostics import score_notes


def _target(**fields):
    base = dict(
        target=1,
        score=0.5,
        margin=1.0,
        lipschitz=2.0,
        lipschitz_lower_bound=0.0,
        sample_max=2.0,
        fit_method="weibull",
        shape=3.0,
        loc=-2.0,
        scale=1.0,
        ks_statistic=0.1,
        ks_pvalue=0.5,
    )
    return TargetScore(**{**base, **fields})


@pytest.mark.parametrize("order", [1, 2])
def test_both_orders_share_the_weak_fit_and_fallback_notes(order):
    second = dict(curvature=2.0, curvature_lower_bound=0.0, curvature_method="spectral", solver_converged=1.0)
    extra = second if order == 2 else {}
    assert score_notes({1: _target(**extra)}, 1, radius=1.0, order=order) == ()
    (weak,) = score_notes({1: _target(ks_pvalue=0.01, **extra)}, 1, radius=1.0, order=order)
    assert "weak Weibull fit" in weak and "KS p-value 0.01" in weak and "docs/how-to/troubleshooting.md" in weak
    fallback = _target(fit_method="max", fit_reason="every Weibull fit diverged", **extra)
    (note,) = score_notes({1: fallback}, 1, radius=1.0, order=order)
    what = "curvature" if order == 2 else "Lipschitz"
    assert f"the sample maximum 2 was used as {what} estimate" in note
    exact = _target(fit_method="max", fit_reason="all batch maxima are equal", **extra)
    assert not exact.weak and score_notes({1: exact}, 1, radius=1.0, order=order) == ()
