"""Intervals of statistics over inputs, and of paired differences between two runs (numpy only).

Each input's score carries a confidence interval ``(lo, hi)`` at level
``confidence`` (see :func:`pytest_clever.stats.evt.endpoint_interval`). Here a
score is read as a **two-piece normal** with its median at the point score
and its ``(1 -/+ confidence) / 2`` quantiles at ``lo`` and ``hi`` (an
interval of None, unknown, reads as an exact score). A statistic's interval
is a percentile bootstrap of one of two kinds (``over``, see
:data:`~pytest_clever.core.validation.INTERVAL_KINDS`):

- ``"estimator"`` (estimator noise, the default): the inputs are fixed, and
  only each score's own uncertainty enters: every input's score is drawn
  from its two-piece normal. It answers "is the statistic of *these* inputs
  below the bar, or could the estimator's noise explain it?";
- ``"inputs"`` (input sampling): the inputs are a sample of a population,
  so they are also resampled with replacement (for "mean", "median" and
  "qNN"; "min" and "max" of a population are not estimable by resampling a
  sample, so their inputs stay fixed and both kinds agree). It answers
  "is the statistic of the population the inputs were drawn from below the bar?"
  and is wider by the spread from input to input.

:func:`paired_change_interval` compares two runs on the same inputs: the
inputs stay fixed (pairing), the scores of both runs are drawn independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from pytest_clever.core.validation import ESTIMATOR_NOISE, check_interval_kind

#: Bootstrap replicates (the interval's ends move by well under 1% of its width between seeds).
N_BOOTSTRAP = 2000
#: Seed of the bootstrap: the same inputs give the same interval.
BOOTSTRAP_SEED = 0


def statistic_rows(values: np.ndarray, statistic: str) -> np.ndarray:
    """``statistic`` ("min", "mean", "median", "max" or "qNN", already parsed) of each row of ``values``."""
    if statistic in ("min", "mean", "median", "max"):
        return getattr(np, statistic)(values, axis=-1)
    return np.quantile(values, int(statistic[1:]) / 100, axis=-1)


def draw_scores(
    points: np.ndarray,
    intervals: Sequence[tuple[float, float] | None],
    confidence: float,
    index: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Scores of inputs ``index`` (any shape) drawn from their two-piece normals."""
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    lo = np.array([p if iv is None else iv[0] for p, iv in zip(points, intervals, strict=True)], dtype=np.float64)
    hi = np.array([p if iv is None else iv[1] for p, iv in zip(points, intervals, strict=True)], dtype=np.float64)
    below, above = (points - lo) / z, (hi - points) / z
    u = rng.standard_normal(index.shape)
    return points[index] + u * np.where(u < 0, below[index], above[index])


def _indices(n: int, statistic: str, rng: np.random.Generator, n_boot: int, over: str) -> np.ndarray:
    if over == ESTIMATOR_NOISE or statistic in ("min", "max"):
        return np.broadcast_to(np.arange(n), (n_boot, n))
    return rng.integers(0, n, size=(n_boot, n))


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def statistic_interval(
    points: Sequence[float],
    intervals: Sequence[tuple[float, float] | None],
    statistic: str,
    confidence: float,
    *,
    n_boot: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    over: str = ESTIMATOR_NOISE,
) -> tuple[float, float]:
    """Confidence interval of ``statistic`` (parsed) of the scores ``points`` with per-score ``intervals``.

    ``over`` is the interval's kind: ``"estimator"`` (the inputs fixed) or ``"inputs"`` (resampled too).
    """
    over = check_interval_kind(over)
    scores = np.asarray(points, dtype=np.float64)
    rng = np.random.default_rng(seed)
    index = _indices(len(scores), statistic, rng, n_boot, over)
    values = statistic_rows(draw_scores(scores, intervals, confidence, index, rng), statistic)
    lo, hi = _percentiles(values, confidence)
    point = float(statistic_rows(scores, statistic))
    return min(lo, point), max(hi, point)


def paired_change_interval(
    new: Sequence[float],
    new_intervals: Sequence[tuple[float, float] | None],
    old: Sequence[float],
    old_intervals: Sequence[tuple[float, float] | None],
    statistic: str,
    confidence: float,
    *,
    relative: bool = True,
    n_boot: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """Change of ``statistic`` between two runs on the same inputs, and its interval: ``(change, lo, hi)``.

    The change is ``stat(new) / stat(old) - 1`` when ``relative``, else
    ``stat(new) - stat(old)``. Input ``i`` of ``new`` and of ``old`` is the
    same input (same test, same call), so the question is whether the
    statistic over these inputs changed: only the scores' own uncertainty
    enters (independent draws for both runs), not the spread from input to
    input, which the pairing cancels: resampling the inputs as well would
    hide most real losses (benchmarks/bench_intervals.py measures both).
    """
    new_scores, old_scores = np.asarray(new, dtype=np.float64), np.asarray(old, dtype=np.float64)
    if new_scores.shape != old_scores.shape:
        raise ValueError(f"paired runs need the same inputs, got {len(new_scores)} and {len(old_scores)} scores")
    rng = np.random.default_rng(seed)
    index = np.broadcast_to(np.arange(len(new_scores)), (n_boot, len(new_scores)))
    new_stat = statistic_rows(draw_scores(new_scores, new_intervals, confidence, index, rng), statistic)
    old_stat = statistic_rows(draw_scores(old_scores, old_intervals, confidence, index, rng), statistic)
    with np.errstate(divide="ignore", invalid="ignore"):
        if relative:
            change = float(statistic_rows(new_scores, statistic) / statistic_rows(old_scores, statistic) - 1)
            lo, hi = _percentiles(new_stat / old_stat - 1, confidence)
        else:
            change = float(statistic_rows(new_scores, statistic) - statistic_rows(old_scores, statistic))
            lo, hi = _percentiles(new_stat - old_stat, confidence)
    return change, min(lo, change), max(hi, change)


def difference_interval(
    new: float,
    new_interval: tuple[float, float] | None,
    old: float,
    old_interval: tuple[float, float] | None,
) -> tuple[float, float, float]:
    """``new - old`` of one input's two independent scores, and its interval.

    The half-widths of the two scores add in quadrature, each side on its own.
    """
    n_lo, n_hi = new_interval or (new, new)
    o_lo, o_hi = old_interval or (old, old)
    delta = new - old
    return delta, delta - float(np.hypot(new - n_lo, o_hi - old)), delta + float(np.hypot(n_hi - new, old - o_lo))


__all__ = [
    "N_BOOTSTRAP",
    "difference_interval",
    "draw_scores",
    "paired_change_interval",
    "statistic_interval",
    "statistic_rows",
]
