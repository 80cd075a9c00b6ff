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
  fit reaches a p-value of ``FALLBACK_PVALUE`` (``WEAK_PVALUE`` for discrete
  maxima, at most ``DISCRETE_SHARE`` of them distinct: a law of a few atoms
  is not a reverse Weibull, and its sample maximum is the natural estimate).

Tied maxima (piecewise-linear nets have piecewise-constant gradients, so their
batch maxima take few distinct values): a largest value attained by
``TOP_ATOM_TIES`` or more batches is an atom at the top of the law (a
continuous law ties with probability 0), and the sample maximum is its end
point; otherwise the KS check compares the fitted law with the empirical one
at the observed values only (:func:`ks_test`), where ties leave it valid.

:func:`endpoint_interval` gives the confidence interval of the end point: the
profile likelihood of the penalised fit (docs/maths.md, "Uncertainty").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
#: ``EndpointFit.reason`` when the largest value recurs (an atom at the top: the maximum is the end point).
TOP_ATOM = "the largest batch maximum recurs (an atom at the top: piecewise-constant values)"
#: Batches that must attain the largest value for it to count as an atom. A value hit by
#: k of n batches is missed by a whole run with probability about exp(-k): 5% at k = 3.
TOP_ATOM_TIES = 3
#: Relative tolerance under which two maxima count as equal (float32 rounding of one value).
TIE_RTOL = 1e-6
#: ``EndpointFit.reason`` when tied maxima fit no Weibull law: a discrete law, whose estimate is the sample maximum.
DISCRETE_MAXIMA = (
    "the batch maxima take few distinct values and fit no Weibull law (a piecewise-constant "
    "statistic, e.g. a ReLU net's gradient norm): the sample maximum is the estimate"
)
#: Maxima with at most this share of distinct values are discrete.
DISCRETE_SHARE = 0.5
#: The upper quantile whose distance below max(b) bounds a discrete law's unseen atoms (see endpoint_interval).
DISCRETE_QUANTILE = 0.9


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


#: Fallback reasons under which the sample maximum is the end point itself (not weak, zero-width interval).
EXACT_REASONS = (CONSTANT_MAXIMA, TOP_ATOM)


def _fallback(maxima: np.ndarray, reason: str) -> EndpointFit:
    top = float(np.max(maxima))
    nan = math.nan
    return EndpointFit(top, "max", nan, nan, nan, nan, nan, top, len(maxima), reason)


def ks_test(z: np.ndarray, c: float, loc: float, scale: float) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic and p-value of ``z`` against ``weibull_min(c, loc, scale)``, valid for ties.

    Without ties this is scipy's two-sided test. With ties the empirical CDF
    jumps where the continuous law cannot, and the usual statistic reads
    every jump as misfit (a ReLU net's maxima, with 15 distinct values of
    100, fail at p < 1e-6 though the fit is fine). There the statistic is
    taken at the distinct observed values only, comparing
    ``#(z <= v) / n`` with ``F(v)``: under the fitted law that is the usual
    binomial deviation at a subset of points, so the Kolmogorov p-value is
    conservative (it rejects less often than its level).
    """
    from scipy import stats

    values, counts = np.unique(z, return_counts=True)
    if len(values) == len(z):
        result = stats.kstest(z, "weibull_min", args=(c, loc, scale))
        return float(result.statistic), float(result.pvalue)
    ecdf = np.cumsum(counts) / len(z)
    statistic = float(np.max(np.abs(ecdf - stats.weibull_min.cdf(values, c, loc, scale))))
    return statistic, float(stats.kstwo.sf(statistic, len(z)))


def _profile_loglik(z: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Penalised log-likelihood of ``z`` maximised over shape and scale, at each location ``-gap``.

    With the location fixed, the scale's optimum is closed form
    (``scale**c = mean((z + gap)**c)``), which leaves a concave function of
    the shape: a golden-section search over ``log c``, vectorised over the gaps.
    ``z`` is ``(n,)`` or ``(C, n)`` (C samples at once); the result is ``(G,)`` or ``(C, G)``.
    """
    n = z.shape[-1]
    log_x = np.log(z[..., None, :] + gaps[:, None])  # (..., G, n)
    sum_log_x = log_x.sum(axis=-1)

    def loglik(log_c: np.ndarray) -> np.ndarray:
        c = np.exp(log_c)
        scaled = c[..., None] * log_x
        top = scaled.max(axis=-1)
        log_mean = top + np.log(np.exp(scaled - top[..., None]).sum(axis=-1)) - math.log(n)
        return n * log_c - n * log_mean + (c - 1) * sum_log_x - n - SHAPE_PENALTY * c**2

    # Shapes below 1 make the likelihood unbounded as the end point nears max(b):
    # the search keeps c >= 1, as a reverse Weibull of batch maxima has in practice.
    lo, hi = np.zeros(log_x.shape[:-1]), np.full(log_x.shape[:-1], math.log(1000.0))
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        left_better = loglik(a) > loglik(b)
        hi, lo = np.where(left_better, b, hi), np.where(left_better, lo, a)
    return loglik((lo + hi) / 2)


#: Gaps (end point above max(b), in ranges of the maxima) at which the profile is evaluated.
_PROFILE_GAPS = np.geomspace(1e-4, MAX_GAP_RANGES, 80)


def endpoint_interval(
    maxima: np.ndarray | Sequence[float], *, method: str, reason: str, endpoint: float, confidence: float
) -> tuple[float, float]:
    """Confidence interval ``(lo, hi)`` at ``confidence`` of the end point a fit of ``maxima`` returned.

    - Weibull fits (``method == "weibull"``): the profile likelihood; the end
      points whose profile deviance ``2 (l_max - l_p)`` stays below the
      chi-square(1) quantile at ``confidence`` (Wilks). The search covers what
      the fit may return, ``[max(b), max(b) + MAX_GAP_RANGES * range]``; an
      interval that reaches the upper edge says the data cannot bound the end
      point any tighter. Coverage of the true end point, measured on reverse
      Weibull maxima at n = 100: 93-94% at 95% (tests/stats/test_intervals.py).
    - Exact fallbacks (``EXACT_REASONS``): zero width.
    - Discrete maxima (``DISCRETE_MAXIMA``): from ``max(b)`` to ``max(b)``
      plus its distance above the ``DISCRETE_QUANTILE`` quantile: an atom
      above ``max(b)`` unseen in n batches is rare (per batch below ~3 / n
      at 95%), and the top decile shows how far apart atoms that rare lie.
      A heuristic, not a likelihood interval.
    - Other fallbacks: no likelihood to profile; the end point lies above
      ``max(b)``, and an accepted fit would have put it at most
      ``MAX_GAP_RANGES`` ranges above, which is the interval.
    """
    b = np.asarray(maxima, dtype=np.float64).ravel()
    top, spread = float(b.max()), float(b.max() - b.min())
    if method != "weibull":
        if reason in EXACT_REASONS:
            return top, top
        if reason == DISCRETE_MAXIMA:
            return top, 2 * top - float(np.quantile(b, DISCRETE_QUANTILE))
        return top, top + MAX_GAP_RANGES * spread
    from scipy import stats

    z = (top - b) / spread
    gap_fit = (endpoint - top) / spread
    gaps = np.unique(np.r_[_PROFILE_GAPS, max(gap_fit, _PROFILE_GAPS[0])])  # a gap of 0 has no likelihood
    profile = _profile_loglik(z, gaps)
    deviance = 2 * (profile.max() - profile)
    threshold = stats.chi2.ppf(confidence, 1)
    inside = np.nonzero(deviance <= threshold)[0]
    first, last = int(inside[0]), int(inside[-1])

    def crossing(i: int, j: int) -> float:
        """Linear interpolation of the gap where the deviance crosses the threshold between grid points i, j."""
        if not 0 <= j < len(gaps):
            return float(gaps[i]) if j >= 0 else 0.0
        d_i, d_j = deviance[i], deviance[j]
        return float(gaps[i] + (gaps[j] - gaps[i]) * (threshold - d_i) / (d_j - d_i))

    lo_gap = min(crossing(first, first - 1), gap_fit)
    hi_gap = max(crossing(last, last + 1), gap_fit)
    return (top + lo_gap * spread, top + hi_gap * spread)


def has_likelihood(maxima: np.ndarray) -> np.ndarray:
    """Per column of ``maxima`` ``(n, C)``: finite, not constant and no recurring largest value.

    The columns :func:`fit_endpoint` would try to fit (the others are its exact fallbacks).
    """
    b = np.asarray(maxima, dtype=np.float64)
    with np.errstate(all="ignore"):
        top, spread = b.max(axis=0), b.max(axis=0) - b.min(axis=0)
        ties = np.count_nonzero(b >= top - TIE_RTOL * np.abs(top), axis=0)
        return np.isfinite(b).all(axis=0) & (spread > 1e-6 * np.abs(top)) & (ties < TOP_ATOM_TIES)


def endpoint_upper_bounds(maxima: np.ndarray, *, confidence: float) -> np.ndarray:
    """Upper ends of the profile-likelihood intervals at ``confidence`` of every column of ``maxima`` ``(n, C)``.

    The upper end :func:`endpoint_interval` gives a Weibull fit, without fitting (the profile's maximum
    stands in for the fit) and for all columns in one vectorised pass (a loop of :func:`endpoint_interval`
    costs ~8 ms a column). NaN for columns without a likelihood: non-finite, constant, or whose largest
    value recurs ``TOP_ATOM_TIES`` times (see :func:`fit_endpoint`).
    """
    from scipy import stats

    b = np.asarray(maxima, dtype=np.float64).T  # (C, n)
    out = np.full(b.shape[0], math.nan)
    usable = has_likelihood(maxima)
    if not usable.any():
        return out
    b = b[usable]
    top, spread = b.max(axis=1), b.max(axis=1) - b.min(axis=1)
    profile = _profile_loglik((top[:, None] - b) / spread[:, None], _PROFILE_GAPS)  # (C, G)
    deviance = 2 * (profile.max(axis=1, keepdims=True) - profile)
    threshold = stats.chi2.ppf(confidence, 1)
    last = len(_PROFILE_GAPS) - 1 - np.argmax((deviance <= threshold)[:, ::-1], axis=1)
    after = np.minimum(last + 1, len(_PROFILE_GAPS) - 1)
    rows = np.arange(len(last))
    d_i, d_j = deviance[rows, last], deviance[rows, after]
    g_i, g_j = _PROFILE_GAPS[last], _PROFILE_GAPS[after]
    with np.errstate(all="ignore"):  # at the grid's upper edge after == last: the edge itself
        gap = np.where(after > last, g_i + (g_j - g_i) * (threshold - d_i) / (d_j - d_i), g_i)
    out[usable] = top + gap * spread
    return out


#: Factor on the upper side of a score's end-point interval (the lower side of the score's): the
#: end point of few maxima is biased low (the score high), and the profile likelihood does not see
#: it. Measured on the digits CNN (top-1, radius 2, 13 inputs x 2 seeds, prefixes of 200 x 128
#: against an independent 1000 x 128 score; benchmarks/bench_budget.py repeats it): the plain 95%
#: interval covered that reference in 24/26 cases at 100 batches, 23/26 at 45, and stopped at
#: precision=0.1 in 21/26; widened by 1.5 (chosen on the first 7 inputs): 26/26, 26/26 and 25/26.
#: Scores of 100 x 128 lay a median 3.9% above the reference (81% of cases above it, up to 20.7%).
BIAS_WIDENING = 1.5


def score_endpoint_interval(
    maxima: np.ndarray | Sequence[float], *, method: str, reason: str, endpoint: float, confidence: float
) -> tuple[float, float]:
    """:func:`endpoint_interval` with its upper side widened by ``BIAS_WIDENING``: the interval scores report.

    The score's interval is meant to cover what more points would give (SPEC, "Sampling budgets"),
    not only the end point of the law the maxima were drawn from; fewer points err towards a higher score.
    """
    lo, hi = endpoint_interval(maxima, method=method, reason=reason, endpoint=endpoint, confidence=confidence)
    return lo, endpoint + BIAS_WIDENING * (hi - endpoint)


def fit_endpoint(maxima: np.ndarray | Sequence[float]) -> EndpointFit:
    """Estimate the right end point of the distribution of ``maxima`` (reverse Weibull MLE).

    Starts are tried in ``INITIAL_SHAPES`` order; the search stops early at a
    fit with a comfortable p-value (``GOOD_PVALUE``) or once two starts reach
    the same optimum with an acceptable one, since further starts would only
    repeat it. Each fit costs ~10 ms, and there is one per target class.
    """
    from scipy import stats  # here, so that target_score.py can import this module's constants cheaply

    b = np.asarray(maxima, dtype=np.float64).ravel()
    if b.size == 0 or not np.all(np.isfinite(b)):
        raise ValueError("batch maxima must be a non-empty array of finite numbers")
    top, spread = float(b.max()), float(b.max() - b.min())
    if spread <= 1e-6 * max(abs(top), 1e-30):  # equal up to float32 rounding
        return _fallback(b, CONSTANT_MAXIMA)
    if np.count_nonzero(b >= top - TIE_RTOL * abs(top)) >= TOP_ATOM_TIES:
        return _fallback(b, TOP_ATOM)
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
        ks_stat, ks_p = ks_test(z, c, loc_z, scale_z)
        if not np.isfinite(ks_p):
            continue
        if best is None or ks_p > best[0]:
            best = (ks_p, ks_stat, float(c), float(loc_z), float(scale_z))
        repeated = any(
            abs(loc_z - seen_loc) <= 1e-3 and abs(c - seen_c) <= 1e-2 * max(c, 1.0) for seen_loc, seen_c in seen
        )
        seen.append((float(loc_z), float(c)))
        if best[0] >= GOOD_PVALUE or (repeated and best[0] >= WEAK_PVALUE):
            break

    if best is None and len(np.unique(b)) <= DISCRETE_SHARE * b.size:
        return _fallback(b, DISCRETE_MAXIMA)
    if best is None:
        return _fallback(b, "every Weibull fit diverged or was ill-conditioned")
    pvalue, ks_stat, c, loc_z, scale_z = best
    discrete = len(np.unique(b)) <= DISCRETE_SHARE * b.size
    if discrete and pvalue < WEAK_PVALUE:
        return _fallback(b, DISCRETE_MAXIMA)
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
