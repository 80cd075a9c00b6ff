"""Progress of a scoring call: events (:class:`ProgressEvent`), the call's tracker, and the default stderr line.

``clever_score(..., progress=True)`` prints a throttled line to stderr
(:class:`ProgressLine`); ``progress=callable`` hands every event to the
callable instead (the pytest plugin routes them to its terminal). Events:

- ``"start"``: once, before the first input;
- ``"input"``: an input's targets are resolved and its sampling begins;
- ``"chunk"``: after each chunk of sampled points (``points_done`` grows);
- ``"scored"``: an input is scored (``inputs_done`` grows; after the first,
  ``first_input_s`` holds its time and ``remaining_s`` the estimate for the rest);
- ``"done"``: once, after the last input, also when scoring failed.

In rounds (``precision=``/``budget=``, several inputs sampled in turn) there is no per-input
sequence: a ``"round"`` event opens each round (``round``, ``sampling``: inputs still sampled),
``points_done`` counts the call's points against the cap of every input (``points_total``), a
``"scored"`` event comes as each input stops, and ``remaining_s`` stays None (the rounds end when
precision or the gate's decision is reached, which no rate predicts).

On an executor (``clever_scores(..., executor=...)``) the workers sample out
of sight: a call sends ``"start"``, one ``"scored"`` per input as its result
arrives (in completion order), and ``"done"``.

The sampling loops report chunks through :func:`points_done`, a no-op
outside a tracked call, so no progress object is threaded through them.
Pure Python: nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TextIO

#: What ``progress=`` accepts: False/None (silent), True (stderr line) or a callable taking events.
ProgressSetting = bool | None | Callable[["ProgressEvent"], None]


@dataclass(frozen=True)
class ProgressEvent:
    """Where a scoring call stands (times in seconds since the call started).

    ``points_done``/``points_total`` and ``targets`` describe input
    ``input_index`` (0-based); ``remaining_s`` is None until there is a rate to
    extrapolate from.
    """

    stage: str
    input_index: int
    inputs_done: int
    inputs_total: int
    points_done: int
    points_total: int
    targets: int
    elapsed: float
    first_input_s: float | None
    remaining_s: float | None
    #: The round of sampling the call is in (0: no rounds) and how many inputs are still being sampled.
    round: int = 0
    sampling: int = 0


class _Tracker:
    """Counts the work of one call and turns it into events for ``sink``."""

    def __init__(
        self, sink: Callable[[ProgressEvent], None], inputs_total: int, points_total: int, rounds: bool = False
    ) -> None:
        self.sink, self.started, self.in_rounds = sink, time.perf_counter(), rounds
        # In rounds the points are the call's, against every input's cap.
        total = points_total * inputs_total if rounds else points_total
        self.event = ProgressEvent("start", 0, 0, inputs_total, 0, total, 0, 0.0, None, None)
        self.input_started = self.started

    def _emit(self, stage: str, **changes: Any) -> None:
        now = time.perf_counter()
        event = replace(self.event, stage=stage, elapsed=now - self.started, **changes)
        self.event = replace(event, remaining_s=self._remaining(event, now))
        self.sink(self.event)

    def _remaining(self, e: ProgressEvent, now: float) -> float | None:
        """Extrapolate: the mean time of finished inputs, or the current input's sampling rate."""
        if e.stage in ("start", "done") or self.in_rounds:
            return 0.0 if e.stage == "done" else None
        left_after_this = e.inputs_total - e.inputs_done - (0 if e.stage == "scored" else 1)
        if e.inputs_done:
            per_input = (self.input_started - self.started if e.stage != "scored" else e.elapsed) / e.inputs_done
            in_this = 0.0 if e.stage == "scored" else max(0.0, per_input - (now - self.input_started))
            return in_this + left_after_this * per_input
        if e.points_done and e.points_total:
            spent = now - self.input_started
            per_input = spent * e.points_total / e.points_done
            return per_input - spent + left_after_this * per_input
        return None

    def start(self) -> None:
        self._emit("start")

    def input(self, targets: int) -> None:
        """The next input's targets are resolved; its sampling starts (in rounds: every input's, up front)."""
        if self.in_rounds:
            self.event = replace(self.event, targets=max(self.event.targets, targets))
            return
        self.input_started = time.perf_counter()
        self._emit("input", input_index=self.event.inputs_done, targets=targets, points_done=0)

    def round(self, number: int, sampling: int) -> None:
        """Round ``number`` (1-based) starts, with ``sampling`` inputs still being sampled."""
        self._emit("round", round=number, sampling=sampling)

    def points(self, n: int) -> None:
        self._emit("chunk", points_done=min(self.event.points_total, self.event.points_done + n))

    def scored(self) -> None:
        done = self.event.inputs_done + 1
        first = self.event.first_input_s
        if self.in_rounds:  # inputs share the rounds: no input has a time of its own
            self._emit("scored", inputs_done=done, sampling=max(0, self.event.sampling - 1))
            return
        if first is None:
            first = time.perf_counter() - self.input_started
        # input_index follows the count: on an executor inputs finish out of order and send no "input".
        self._emit(
            "scored", input_index=done - 1, inputs_done=done, first_input_s=first, points_done=self.event.points_total
        )

    def done(self) -> None:
        self._emit("done")


_current: contextvars.ContextVar[_Tracker | None] = contextvars.ContextVar("pytest_clever_progress", default=None)


def points_done(n: int) -> None:
    """A sampling loop finished ``n`` more points of the current input (no-op outside a tracked call)."""
    tracker = _current.get()
    if tracker is not None:
        tracker.points(n)


def round_started(number: int, sampling: int) -> None:
    """Round ``number`` of the current call starts, ``sampling`` inputs still sampled (no-op outside a tracked call)."""
    tracker = _current.get()
    if tracker is not None:
        tracker.round(number, sampling)


def input_scored() -> None:
    """An input of the current call is scored (no-op outside a tracked call)."""
    tracker = _current.get()
    if tracker is not None:
        tracker.scored()


def current() -> _Tracker | None:
    """The tracker of the call in progress, if it asked for progress."""
    return _current.get()


@contextlib.contextmanager
def tracking(
    setting: ProgressSetting, inputs_total: int, points_total: int, *, rounds: bool = False
) -> Iterator[_Tracker | None]:
    """Track one scoring call: ``setting`` as ``progress=`` takes it; yields None when silent.

    ``points_total`` is one input's (its cap, in rounds); ``rounds``: inputs are sampled in turn, round by round.
    """
    if not setting:
        yield None
        return
    sink = ProgressLine() if setting is True else setting
    if not callable(sink):
        from pytest_clever.errors import InvalidInputError

        raise InvalidInputError(f"progress must be True, False or a callable taking ProgressEvent, got {setting!r}")
    tracker = _Tracker(sink, inputs_total, points_total, rounds)
    token = _current.set(tracker)
    failed = False
    try:
        tracker.start()
        yield tracker
    except BaseException:
        failed = True
        raise
    finally:
        _current.reset(token)
        if failed:
            # The call's own error is the one to see: a sink that also fails on "done" must not replace it.
            with contextlib.suppress(Exception):
                tracker.done()
        else:
            tracker.done()


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 90 else f"{s / 60:.1f} min"


def describe(e: ProgressEvent) -> str:
    """One line of text for an event."""
    parts = [f"CLEVER: input {min(e.input_index + 1, e.inputs_total)}/{e.inputs_total}"]
    if e.stage == "done":
        parts = [f"CLEVER: {e.inputs_done}/{e.inputs_total} inputs scored"]
    elif e.round:
        parts = [
            f"CLEVER: round {e.round}, {e.sampling} of {e.inputs_total} inputs sampling, {e.inputs_done} stopped",
            f"{e.points_done} points",
        ]
    elif e.stage in ("input", "chunk"):
        parts.append(f"{e.points_done}/{e.points_total} points x {e.targets} targets")
    parts.append(f"{_seconds(e.elapsed)} elapsed")
    if e.first_input_s is not None:
        parts.append(f"first input {_seconds(e.first_input_s)}")
    if e.remaining_s is not None and e.stage != "done":
        parts.append(f"~{_seconds(e.remaining_s)} left")
    return ", ".join(parts)


class ProgressLine:
    """The default renderer: at most one line per ``interval`` seconds on ``stream``, nothing for short calls.

    Silent for the first ``delay`` seconds; after that it shows the first
    input's time and estimate as soon as they exist, then updates. On a TTY the
    line is rewritten in place (``\\r``); otherwise each update is a new line.
    """

    def __init__(self, stream: TextIO | None = None, *, interval: float = 1.0, delay: float = 2.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.delay = interval, delay
        self.last: float | None = None
        self.first_shown = False
        self.width = 0

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage == "done":
            if self.last is not None:
                self._write(describe(event), final=True)
            return
        if event.elapsed < self.delay:
            return
        first_news = event.stage == "scored" and not self.first_shown
        if not first_news and self.last is not None and event.elapsed - self.last < self.interval:
            return
        self.first_shown = self.first_shown or event.first_input_s is not None
        self.last = event.elapsed
        self._write(describe(event), final=False)

    def _write(self, text: str, *, final: bool) -> None:
        tty = getattr(self.stream, "isatty", lambda: False)()
        if tty:
            self.stream.write("\r" + text.ljust(self.width) + ("\n" if final else ""))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


#: Values of ``--clever-progress`` / ``clever_progress``: the plugin's progress of long fixture calls.
TERMINAL_MODES = ("auto", "on", "off")

__all__ = [
    "TERMINAL_MODES",
    "ProgressEvent",
    "ProgressLine",
    "ProgressSetting",
    "current",
    "describe",
    "input_scored",
    "points_done",
    "round_started",
    "tracking",
]
