"""Extreme value fit of batch maxima: the reverse Weibull end point (numpy/scipy only).

Batch maxima ``b`` of a bounded quantity (gradient norms, Hessian norms)
follow a reverse Weibull law whose finite right end point estimates the
quantity's maximum over the ball. scipy's ``weibull_min`` describes ``-b``;
its location is minus the end point.

Recipe (after the original CLEVER code, see docs/maths.md, "The extreme-value fit"):

- rescale the maxima to ``z = (max(b) - b) / range(b)`` so that the optimiser
  works on numbers of order one (``z`` follows ``weibull_min`` too, with
  location ``(max(b) - L) / range``);
- maximise the likelihood with a small penalty ``0.01 * shape**2`` that keeps
  the shape from running off (and the end point with it), from several
  initial shapes; keep the fit with the best Kolmogorov-Smirnov p-value;
- reject fits whose end point lies more than ``MAX_GAP_RANGES`` ranges above
  the observed maximum (a diverged fit, not an estimate) or below it (scipy's
  penalised likelihood can leave data points outside the support);
- fall back to the plain sample maximum when the maxima are degenerate or no
  fit reaches a p-value of ``FALLBACK_PVALUE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: Initial shapes tried, most often successful first (the original code's set).
INITIAL_SHAPES: tuple[float, ...] = (5.0, 10.0, 20.0, 1.0, 50.0, 100.0, 0.1)
#: Penalty weight on the shape parameter, added to the negative log-likelihood.
SHAPE_PENALTY = 0.01
#: Below this KS p-value no fit is trusted and the sample maximum is used.
FALLBACK_PVALUE = 1e-3
#: Below this KS p-value the fit is reported as weak (``TargetScore.weak``; a warning is issued).
WEAK_PVALUE = 0.05
#: ``EndpointFit.reason`` when every batch maximum is the same (the maximum is then exact).
CONSTANT_MAXIMA = "all batch maxima are equal"
#: A start whose fit reaches this KS p-value ends the search: more starts only
#: guard against poor local optima, and this fit is not one.
GOOD_PVALUE = 0.2
#: A fitted end point further than this many ranges above max(b) is rejected.
MAX_GAP_RANGES = 5.0


@dataclass(frozen=True)
class EndpointFit:
    """The estimated right end point of the batch maxima and how it was obtained.

    ``shape``, ``loc`` and ``scale`` parametrise ``scipy.stats.weibull_min``
    for the negated maxima in their original units (so ``endpoint == -loc``
    for a Weibull fit); they are NaN when ``method == "max"``.
    """

    endpoint: float
    method: str  # "weibull" or "max"
    shape: float
    loc: float
    scale: float
    ks_statistic: float
    ks_pvalue: float
    sample_max: float
    n: int
    reason: str = ""

    def result_fields(self) -> dict[str, Any]:
        """The fit as ``TargetScore`` keyword arguments (shared by first and second order)."""
        return {
            "sample_max": self.sample_max,
            "fit_method": self.method,
            "shape": self.shape,
            "loc": self.loc,
            "scale": self.scale,
            "ks_statistic": self.ks_statistic,
            "ks_pvalue": self.ks_pvalue,
            "fit_reason": self.reason,
        }


def _penalised_nelder_mead(func: Any, x0: Sequence[float], args: tuple = (), disp: int = 0) -> np.ndarray:
    """Optimizer hook for ``rv_continuous.fit``: Nelder-Mead on the NLL plus a shape penalty."""

    from scipy import optimize

    def objective(params: np.ndarray) -> float:
        return func(params, *args) + SHAPE_PENALTY * params[0] ** 2

    return optimize.fmin(objective, x0, disp=0)


def _fallback(maxima: np.ndarray, reason: str) -> EndpointFit:
    top = float(np.max(maxima))
    nan = math.nan
    return EndpointFit(top, "max", nan, nan, nan, nan, nan, top, len(maxima), reason)


def fit_endpoint(maxima: np.ndarray | Sequence[float]) -> EndpointFit:
    """Estimate the right end point of the distribution of ``maxima`` (reverse Weibull MLE).

    Starts are tried in ``INITIAL_SHAPES`` order; the search stops early at a
    fit with a comfortable p-value (``GOOD_PVALUE``) or once two starts reach
    the same optimum with an acceptable one, since further starts would only
    repeat it. Each fit costs ~10 ms, and there is one per target class.
    """
    from scipy import stats  # here, so that results.py can import this module's constants cheaply

    b = np.asarray(maxima, dtype=np.float64).ravel()
    if b.size == 0 or not np.all(np.isfinite(b)):
        raise ValueError("batch maxima must be a non-empty array of finite numbers")
    top, spread = float(b.max()), float(b.max() - b.min())
    if spread <= 1e-6 * max(abs(top), 1e-30):  # equal up to float32 rounding
        return _fallback(b, CONSTANT_MAXIMA)
    z = (top - b) / spread

    best: tuple[float, float, float, float, float] | None = None  # (p, ks, c, loc_z, scale_z)
    seen: list[tuple[float, float]] = []
    for c0 in INITIAL_SHAPES:
        with np.errstate(all="ignore"):
            c, loc_z, scale_z = stats.weibull_min.fit(z, c0, optimizer=_penalised_nelder_mead)
        if not (np.isfinite([c, loc_z, scale_z]).all() and c > 0 and scale_z > 0):
            continue
        if loc_z >= 0 or -loc_z > MAX_GAP_RANGES:
            # loc_z >= 0: scipy's penalised likelihood left observed maxima outside the
            # support (an end point below the data); far below: a diverged fit.
            continue
        ks = stats.kstest(z, "weibull_min", args=(c, loc_z, scale_z))
        if not np.isfinite(ks.pvalue):
            continue
        if best is None or ks.pvalue > best[0]:
            best = (float(ks.pvalue), float(ks.statistic), float(c), float(loc_z), float(scale_z))
        repeated = any(abs(loc_z - l) <= 1e-3 and abs(c - s) <= 1e-2 * max(c, 1.0) for l, s in seen)
        seen.append((float(loc_z), float(c)))
        if best[0] >= GOOD_PVALUE or (repeated and best[0] >= WEAK_PVALUE):
            break

    if best is None:
        return _fallback(b, "every Weibull fit diverged or was ill-conditioned")
    pvalue, ks_stat, c, loc_z, scale_z = best
    if pvalue < FALLBACK_PVALUE:
        return _fallback(b, f"best Weibull fit has KS p-value {pvalue:.2g} < {FALLBACK_PVALUE}")
    endpoint = top - loc_z * spread
    # The KS test is invariant under the affine map back to original units.
    return EndpointFit(
        endpoint=endpoint,
        method="weibull",
        shape=c,
        loc=-endpoint,
        scale=scale_z * spread,
        ks_statistic=ks_stat,
        ks_pvalue=pvalue,
        sample_max=top,
        n=int(b.size),
    )



#: Relative widening of :func:`endpoint_bracket`, so that rounding in the fit's
#: ``top - loc_z * spread`` can never put an end point outside the bracket.
BRACKET_SLACK = 1e-9


def endpoint_bracket(maxima: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on what :func:`fit_endpoint` returns, per column of ``maxima`` ``(n_batches, T)``, without fitting.

    An accepted Weibull end point lies in ``(max, max + MAX_GAP_RANGES * range]``
    and every fallback is the sample maximum itself, so the end point is in
    ``[max, max + MAX_GAP_RANGES * range]`` (widened by ``BRACKET_SLACK``, far
    beyond rounding). Columns ``fit_endpoint`` rejects (non-finite) get ``(-inf, inf)``.
    """
    b = np.asarray(maxima, dtype=np.float64)
    with np.errstate(all="ignore"):  # non-finite columns are replaced below
        top = b.max(axis=0)
        high = top + MAX_GAP_RANGES * (top - b.min(axis=0))
        low, high = top - BRACKET_SLACK * np.abs(top), high + BRACKET_SLACK * np.abs(high)
    finite = np.isfinite(b).all(axis=0)
    return np.where(finite, low, -np.inf), np.where(finite, high, np.inf)
