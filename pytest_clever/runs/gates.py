"""Gates that know the noise: threshold modes and paired baseline rules (pure logic, no torch).

Every score carries a confidence interval (``CleverResult.interval``) and
every statistic of a report one too (``CleverReport.interval``), so a gate
can say what evidence it needs. Module level imports are pure Python (the
plugin may import this cheaply); numpy is imported where intervals are computed.

**Threshold gate modes** (``threshold_gate``), for a statistic ``s`` with
interval ``[lo, hi]`` and a bar ``b``:

- ``point`` (the default): pass iff ``s >= b``;
- ``significant-fail``: fail only if significantly below the bar, i.e. iff
  ``hi < b`` (noise never fails a build; a real shortfall does);
- ``significant-pass``: pass only if significantly above the bar, i.e. iff
  ``lo >= b`` (a certificate-like gate: the noise must not carry the pass).

The interval is of the kind the ``interval`` setting names
(:data:`~pytest_clever.core.validation.INTERVAL_KINDS`): ``estimator`` (the
default) holds the inputs fixed, so ``significant-fail`` forgives only the
estimator's noise on these inputs; ``inputs`` reads them as a sample of a
population and adds the spread from input to input (much wider: with 10
inputs a mean well below the bar passes ``significant-fail``). The verdict names the kind.
Without an interval (a score whose fit gave none, or a record read from a
file without intervals) every mode compares the point value, and the verdict says so.

**Baseline rules** (:mod:`pytest_clever.runs.rules`, ``STAT:DROP[:significant]``)
are applied to a run and its baseline by :func:`compare_paired`.

Runs are **paired**: each input of the run is matched with the same input of
the baseline (same test, same call) by its fingerprint, a hash of its bytes,
dtype and shape (:func:`pair_inputs`; by position only when a side has no
fingerprints), so the change's interval comes from a bootstrap over the pairs
(see :func:`pytest_clever.stats.intervals.paired_change_interval`) and each
input's own delta has an interval (:func:`input_deltas`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from pytest_clever.core.validation import (
    ESTIMATOR_NOISE,
    GATE_MODES,
    INTERVAL_KIND_TEXT,
    POINT_GATE,
    check_gate_mode,
)
from pytest_clever.runs.rules import ChangeRule

Interval = tuple[float, float]
T = TypeVar("T")


@dataclass(frozen=True)
class GateVerdict:
    """The outcome of a threshold gate and the sentence that explains it."""

    passed: bool
    value: float
    interval: Interval | None
    bar: float
    mode: str
    #: The interval's kind (``core.validation.INTERVAL_KINDS``); None when not known (an older record).
    over: str | None = ESTIMATOR_NOISE

    @property
    def message(self) -> str:
        """The value (and interval), the bar, and how the mode decided."""
        shown = f"{self.value:.4g}"
        if self.interval is not None:
            shown += f" [{self.interval[0]:.4g}, {self.interval[1]:.4g}]"
        if self.mode == POINT_GATE or self.interval is None:
            how = "" if self.mode == POINT_GATE else f" (point value: no interval to test {self.mode})"
            relation = ">=" if self.passed else "<"
            return f"{shown} {relation} {self.bar:.4g}{how}"
        if self.mode == "significant-fail":
            verdict = "significantly below" if not self.passed else "not significantly below"
        else:
            verdict = "significantly above" if self.passed else "not significantly above"
        kind = f"; interval of {INTERVAL_KIND_TEXT[self.over]}" if self.over in INTERVAL_KIND_TEXT else ""
        return f"{shown} is {verdict} {self.bar:.4g} ({self.mode}{kind})"


def threshold_gate(
    value: float, interval: Interval | None, bar: float, mode: str = POINT_GATE, over: str | None = ESTIMATOR_NOISE
) -> GateVerdict:
    """Whether ``value`` (with its ``interval``, None if unknown) clears ``bar`` under ``mode``.

    ``over`` names the interval's kind for the verdict's message (None: unknown); it does not change the verdict.
    """
    mode = check_gate_mode(mode)
    if mode == POINT_GATE or interval is None:
        passed = value >= bar
    elif mode == "significant-fail":
        passed = not interval[1] < bar
    else:
        passed = interval[0] >= bar
    return GateVerdict(bool(passed), value, interval, bar, mode, over)


@dataclass(frozen=True)
class ChangeVerdict:
    """A rule applied to a paired run and its baseline.

    ``change`` is relative (a fraction) or absolute as the rule's drop is;
    ``interval`` its confidence interval, None when compared by point values
    (``by_points``: a side without intervals).
    """

    rule: ChangeRule
    before: float
    now: float
    change: float
    interval: Interval | None
    failure: str | None

    @property
    def by_points(self) -> bool:
        """Whether the rule compared point values (no interval on one side)."""
        return self.interval is None

    @property
    def failed(self) -> bool:
        """Whether the rule failed (``failure`` says why)."""
        return self.failure is not None


def compare_paired(
    rule: ChangeRule,
    now: Sequence[float],
    now_intervals: Sequence[Interval | None],
    before: Sequence[float],
    before_intervals: Sequence[Interval | None],
    confidence: float,
) -> ChangeVerdict:
    """Apply ``rule`` to a run (``now``) and its baseline (``before``), scores paired input by input."""
    import numpy as np

    from pytest_clever.stats.intervals import paired_change_interval, statistic_rows

    stat, drop = rule.drop.statistic, rule.drop
    s_now = float(statistic_rows(np.asarray(now, dtype=np.float64), stat))
    s_before = float(statistic_rows(np.asarray(before, dtype=np.float64), stat))
    known = all(iv is not None for iv in (*now_intervals, *before_intervals))
    if not known:
        change = s_now / s_before - 1 if drop.relative else s_now - s_before
        failure = drop.fails(s_before, s_now)
        if failure and rule.significant:
            failure += " (compared by point values: the baseline has no intervals)"
        return ChangeVerdict(rule, s_before, s_now, change, None, failure)
    change, lo, hi = paired_change_interval(
        now, now_intervals, before, before_intervals, stat, confidence, relative=drop.relative
    )
    failure = drop.fails(s_before, s_now)
    if rule.significant:
        failure = None
        if hi < -drop.drop:
            if drop.relative:
                shown = f"{change:+.1%} [{lo:+.1%}, {hi:+.1%}]"
            else:
                shown = f"{change:+.4g} [{lo:+.4g}, {hi:+.4g}]"
            failure = (
                f"{stat} dropped {s_before:.4g} -> {s_now:.4g} ({shown}), significantly more than allowed ({rule}), "
                f"by the paired {confidence:.0%} interval of estimator noise (inputs fixed)"
            )
    return ChangeVerdict(rule, s_before, s_now, change, (lo, hi), failure)


@dataclass(frozen=True)
class InputPairing:
    """Which input of a run is which input of its baseline.

    ``pairs`` holds ``(index in the run, index in the baseline)``, in the run's order;
    ``only_now`` and ``only_before`` the inputs without a partner. ``by_position`` says why the
    inputs were paired by position (a side without fingerprints); None when paired by fingerprint.
    """

    pairs: tuple[tuple[int, int], ...]
    only_now: tuple[int, ...] = ()
    only_before: tuple[int, ...] = ()
    by_position: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every input on both sides has its partner: the two runs scored the same inputs."""
        return not self.only_now and not self.only_before

    def align(self, now: Sequence[T], before: Sequence[T]) -> tuple[list[T], list[T]]:
        """The paired entries of per-input lists ``now`` and ``before``, partner beside partner."""
        return [now[i] for i, _ in self.pairs], [before[j] for _, j in self.pairs]


def pair_inputs(now: Sequence[str | None], before: Sequence[str | None]) -> InputPairing:
    """Pair the inputs of a run and its baseline by their fingerprints (``CleverResult.fingerprint``).

    ``now`` and ``before`` hold each input's fingerprint, None for an input without one (a layout
    without fingerprints). When a side lacks any, input ``i`` pairs with input ``i``, as far as both
    go, and ``by_position`` says which side lacked them. An input listed twice pairs its first
    occurrence with the other side's first, its second with the second, and so on.
    """
    now_known = [f for f in now if f is not None]
    before_known = [f for f in before if f is not None]
    missing_now, missing_before = len(now_known) < len(now), len(before_known) < len(before)
    if missing_now or missing_before:
        if missing_now and missing_before:
            side = "neither run has"
        else:
            side = "the baseline has" if missing_before else "this run has"
        n_now, n_before = len(now), len(before)
        common = min(n_now, n_before)
        return InputPairing(
            tuple((i, i) for i in range(common)),
            tuple(range(common, n_now)),
            tuple(range(common, n_before)),
            by_position=f"{side} no input fingerprints",
        )
    waiting: dict[str, list[int]] = {}
    for j, fingerprint in enumerate(before_known):
        waiting.setdefault(fingerprint, []).append(j)
    pairs, only_now = [], []
    for i, fingerprint in enumerate(now_known):
        queue = waiting.get(fingerprint)
        if queue:
            pairs.append((i, queue.pop(0)))
        else:
            only_now.append(i)
    only_before = sorted(j for queue in waiting.values() for j in queue)
    return InputPairing(tuple(pairs), tuple(only_now), tuple(only_before))


def input_deltas(
    now: Sequence[float],
    now_intervals: Sequence[Interval | None],
    before: Sequence[float],
    before_intervals: Sequence[Interval | None],
    pairing: InputPairing | None = None,
) -> list[tuple[float, float, float]]:
    """Per paired input ``(delta, lo, hi)`` of ``now - before``: the rows of the delta table.

    ``pairing`` (:func:`pair_inputs`) says which inputs are partners; without it input ``i``
    pairs with input ``i`` and both sides must hold the same number of inputs.
    """
    from pytest_clever.stats.intervals import difference_interval

    if pairing is None:
        if len(now) != len(before):
            raise ValueError(f"paired runs need the same inputs, got {len(now)} and {len(before)} scores")
        pairing = InputPairing(tuple((i, i) for i in range(len(now))))
    now, before = pairing.align(now, before)
    now_intervals, before_intervals = pairing.align(now_intervals, before_intervals)
    pairs = zip(now, now_intervals, before, before_intervals, strict=True)
    return [difference_interval(n, ni, b, bi) for n, ni, b, bi in pairs]


__all__ = [
    "GATE_MODES",
    "POINT_GATE",
    "ChangeRule",
    "ChangeVerdict",
    "GateVerdict",
    "InputPairing",
    "check_gate_mode",
    "compare_paired",
    "input_deltas",
    "pair_inputs",
    "threshold_gate",
]
