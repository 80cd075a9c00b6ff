"""Sampling in rounds: each input gets batches until its score is precise enough, the gate is decided,
its cap is reached or the call's budget is spent.

Every input starts with a first round (``Stopping.first`` batches); each later round grows its batches
by ``ROUND_GROWTH`` on the same stream of points (``maxima.MaximaRounds``), so a stopped input sampled
exactly a prefix of a longer run. Rounds go input by input, round by round, so that a budget is shared
evenly and a statistic over inputs can be tested after every round. An input stops:

- ``precision``: its interval's relative half-width (``CleverResult.precision_reached``)
  is at most ``precision``, after at least ``MIN_PRECISION_BATCHES`` batches and with a score that moved by
  less than the precision since the round before (the stability rule that keeps the small-sample bias
  of the end point, which points the unsafe way, from stopping an input too early; SPEC "Sampling budgets");
- ``cap``: it has ``max_batches`` batches;
- ``budget``: the next round would end after the call's ``budget`` seconds (estimated from the input's own
  time per batch so far);
- ``decision``: with ``min_score``, the statistic's interval over all inputs lies wholly above or below
  the bar. That interval is taken at a stricter level, ``1 - (1 - confidence) / looks`` for the most
  rounds the schedule allows (Bonferroni over the looks), so looking after every round does not
  multiply the false-decision rate.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence

from pytest_clever._engine.scoring import InputScoring
from pytest_clever.core import progress
from pytest_clever.core.options import ScoreOptions
from pytest_clever.core.validation import (
    STOP_BUDGET,
    STOP_CAP,
    STOP_DECISION,
    STOP_FIXED,
    STOP_PRECISION,
    Stopping,
)
from pytest_clever.stats.evt import score_endpoint_interval
from pytest_clever.stats.intervals import statistic_interval

#: Fewest batches before ``precision`` may stop an input: the profile-likelihood width of a few dozen
#: maxima is itself noisy, and their end point biased low (benchmarks/bench_budget.py).
MIN_PRECISION_BATCHES = 20

#: ``run(states, ...)`` calls ``guard(i, step)`` to run one step of input ``i`` (so that errors name the input).
Guard = Callable[[int, Callable[[], object]], object]


def looks(stopping: Stopping) -> int:
    """The most rounds one input can have: the number of looks a decision rule spends its error over."""
    count, done = 1, stopping.first
    while done < stopping.cap:
        done, count = stopping.next_total(done), count + 1
    return count


def _precise(state: InputScoring, previous: float | None, precision: float) -> bool:
    result = state.result
    assert result is not None
    if result.n_batches < MIN_PRECISION_BATCHES or previous is None:
        return False
    stable = abs(result.score - previous) <= precision * result.score
    return stable and result.precision_reached <= precision


def decision_interval(states: Sequence[InputScoring], options: ScoreOptions) -> tuple[float, float]:
    """The statistic's interval over the inputs' current scores at the decision's stricter level."""
    level = 1 - (1 - options.confidence) / looks(options.stopping)
    scores, intervals = [], []
    for state in states:
        result = state.result
        assert result is not None
        deciding = result.per_target[result.target]
        endpoint = score_endpoint_interval(
            result.batch_maxima,
            method=deciding.fit_method,
            reason=deciding.fit_reason,
            endpoint=deciding.endpoint,
            confidence=level,
        )
        scores.append(result.score)
        intervals.append(deciding.with_interval(endpoint, result.radius).interval)
    return statistic_interval(scores, intervals, options.statistic, level, over=options.interval)


def settled(states: Sequence[InputScoring], options: ScoreOptions) -> bool:
    """Whether the gate's decision is settled: the statistic's interval lies wholly above or below the bar."""
    assert options.min_score is not None
    lo, hi = decision_interval(states, options)
    return lo >= options.min_score or hi < options.min_score


def run(states: Sequence[InputScoring], options: ScoreOptions, started: float, guard: Guard) -> bool | None:
    """Sample every input in rounds until each has stopped; whether the gate's decision was settled.

    Returns None without a gate to decide (no ``min_score``, or a fixed count). ``started`` is when
    the call began (the budget counts from there).
    """
    stopping = options.stopping
    if not stopping.adaptive:
        for i, state in enumerate(states):
            guard(i, functools.partial(state.sample, stopping.first))
            state.stop(STOP_FIXED)
        return None
    deadline = math.inf if stopping.budget is None else started + stopping.budget
    previous: dict[int, float] = {}
    round_number = 1
    progress.round_started(round_number, len(states))
    for i, state in enumerate(states):
        guard(i, functools.partial(state.sample, stopping.first))
    while True:
        for i, state in enumerate(states):
            if not state.active:
                continue
            result = state.result
            assert result is not None
            if stopping.precision is not None and _precise(state, previous.get(i), stopping.precision):
                state.stop(STOP_PRECISION)
            elif result.n_batches >= stopping.cap:
                state.stop(STOP_CAP)
            previous[i] = result.score
        if options.decides and any(s.active for s in states) and settled(states, options):
            for state in states:
                if state.active:
                    state.stop(STOP_DECISION)
        active = [(i, s) for i, s in enumerate(states) if s.active]
        if not active:
            break
        round_number += 1
        progress.round_started(round_number, len(active))
        for i, state in active:
            total = stopping.next_total(state.batches)
            if time.perf_counter() + (total - state.batches) * state.seconds_per_batch() > deadline:
                state.stop(STOP_BUDGET)
                continue
            guard(i, functools.partial(state.sample, total))
    if not options.decides:
        return None
    return settled(states, options)


__all__ = ["MIN_PRECISION_BATCHES", "decision_interval", "looks", "run", "settled"]
