"""Screening of target classes: which classes cannot decide an untargeted score, from a first few points.

An untargeted first-order score is ``min_j g_j / L_j`` over every class ``j`` but the predicted one,
and costs one backward pass per class and point. After the first ``n`` points (all classes), most
classes of a many-class model are far from deciding the minimum; :func:`screen_targets` names them,
so that the remaining points are sampled for the others only.

The rule, for margins ``g_j >= 0``, per-point statistics ``v[i, j]`` (gradient dual norms) and the
radius ``R``:

- the lead ``best = min_k min(g_k / m_k, R)``, with ``m_k`` the largest ``v[:, k]``. A fit of batch
  maxima that include these points puts ``L_k`` at or above ``m_k`` (an accepted Weibull end point lies
  above the sample maximum, every fallback is the sample maximum), so ``best`` is a CERTAIN upper bound
  on the score the full run reports;
- per class, ``U_j``: an upper confidence bound on the Lipschitz end point, the upper end of the profile
  likelihood interval (``evt.endpoint_upper_bounds``) of the maxima of ``sub_batches`` sub-batches of
  the points, at the stricter level ``1 - (1 - confidence) / LEVEL_DIVISOR``;
- class ``j`` is screened out when ``min(g_j / U_j, R) > best``: its score's lower confidence bound lies
  strictly above a certain upper bound of the minimum (strictly: an equal score could still win the tie
  on the class index).

Why no Bonferroni correction over the classes: the answer (the minimum and its class) changes only
when the class that attains the true minimum, ``j*``, is screened out. Screening any other class
changes nothing, whatever its bound. And ``j*`` is screened out only if ``g_j* / U_j* > best >=
g_j* / L_j*`` (its score is at most the minimum, which ``best`` bounds), that is ``U_j* < L_j*``: its
own bound fails, which happens with probability at most ``1 - level`` for that one class. The
stricter level guards against the sub-batch maxima of few points fitting the reverse Weibull law
loosely (the profile likelihood's coverage is measured at 100 maxima, tests/stats/test_intervals.py).

Shortcuts that change no decision: a class with ``min(g_j / m_j, R) <= best`` survives with no bound
computed (``U_j >= m_j``); a class whose bound from the fit's bracket ``max + MAX_GAP_RANGES * range``
(above every profile bound, ``evt.endpoint_bracket``) already screens it out is screened with that
looser bound, so only the classes between need a profile likelihood. A class without a likelihood
(constant or tied sub-batch maxima, non-finite values) survives, and any negative or NaN margin stops
the screening (its bound points the other way): every class survives.

Pure numpy/scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pytest_clever.stats.evt import MAX_GAP_RANGES, endpoint_upper_bounds, has_likelihood

#: Sub-batches the screening points are split into (16 maxima of 8 points out of 128 points).
SCREEN_SUB_BATCHES = 16
#: The bounds ``U_j`` are taken at ``1 - (1 - confidence) / LEVEL_DIVISOR`` (99.5% at 95%).
LEVEL_DIVISOR = 10


@dataclass(frozen=True)
class ScreenResult:
    """What the screening decided for ``T`` classes (columns), from ``points`` points.

    ``survivors`` are the columns still sampled, in order; ``lipschitz_bound[j]`` is ``U_j`` and
    ``lower[j]`` the score's lower bound ``min(g_j / U_j, R)`` for screened columns (NaN where no
    bound was needed); ``best`` the certain upper bound of the minimum; ``level`` the bounds' level.
    """

    survivors: tuple[int, ...]
    lipschitz_bound: np.ndarray
    lower: np.ndarray
    best: float
    points: int
    level: float

    @property
    def screened(self) -> tuple[int, ...]:
        """The columns screened out, in order."""
        kept = set(self.survivors)
        return tuple(j for j in range(len(self.lower)) if j not in kept)


def screening_level(confidence: float) -> float:
    """The level of the bounds ``U_j``: ``1 - (1 - confidence) / LEVEL_DIVISOR``."""
    return 1 - (1 - confidence) / LEVEL_DIVISOR


def _scores(margins: np.ndarray, lipschitz: np.ndarray, radius: float) -> np.ndarray:
    """``min(g / L, R)``, with ``R`` where ``L`` is not positive (``radius.first_order_score``, vectorised)."""
    with np.errstate(all="ignore"):
        score = np.where(lipschitz > 0, np.minimum(margins / lipschitz, radius), radius)
    return np.where(np.isnan(lipschitz), math.nan, score)  # no bound, no score


def screen_targets(
    point_values: np.ndarray,
    margins: np.ndarray,
    *,
    radius: float,
    confidence: float,
    sub_batches: int = SCREEN_SUB_BATCHES,
) -> ScreenResult:
    """Screen the columns of ``point_values`` ``(n, T)`` (per-point statistic) with margins ``g`` ``(T,)``.

    See the module docstring for the rule. ``n`` must be a multiple of ``sub_batches``.
    """
    v = np.asarray(point_values, dtype=np.float64)
    g = np.asarray(margins, dtype=np.float64)
    n, n_targets = v.shape
    if n % sub_batches or g.shape != (n_targets,):
        raise ValueError(f"{n} points must split into {sub_batches} sub-batches; margins must have {n_targets}")
    level = screening_level(confidence)
    bound, lower = np.full(n_targets, math.nan), np.full(n_targets, math.nan)
    everyone = tuple(range(n_targets))
    if not (g >= 0).all():  # a negative or NaN margin: its bound g / m points the other way
        return ScreenResult(everyone, bound, lower, math.nan, n, level)
    finite = np.isfinite(v).all(axis=0)
    with np.errstate(all="ignore"):
        lead = _scores(g, v.max(axis=0), radius)
    best = float(lead[finite].min()) if finite.any() else math.nan
    candidates = finite & (lead > best)
    if not candidates.any():
        return ScreenResult(everyone, bound, lower, best, n, level)
    maxima = v[:, candidates].reshape(sub_batches, n // sub_batches, -1).max(axis=1)  # (sub_batches, C)
    top, spread = maxima.max(axis=0), maxima.max(axis=0) - maxima.min(axis=0)
    bracket = top + MAX_GAP_RANGES * spread
    usable = has_likelihood(maxima)
    upper = np.where(usable & (_scores(g[candidates], bracket, radius) > best), bracket, math.nan)
    needed = usable & np.isnan(upper)
    if needed.any():
        upper[needed] = endpoint_upper_bounds(maxima[:, needed], confidence=level)
    bound[candidates] = upper
    lower[candidates] = _scores(g[candidates], upper, radius)  # NaN bounds stay NaN
    out = candidates.copy()
    out[candidates] = lower[candidates] > best  # NaN compares False: survives
    lower[~out], bound[~out] = math.nan, math.nan
    survivors = tuple(int(j) for j in np.nonzero(~out)[0])
    return ScreenResult(survivors, bound, lower, best, n, level)


__all__ = ["LEVEL_DIVISOR", "SCREEN_SUB_BATCHES", "ScreenResult", "screen_targets", "screening_level"]
