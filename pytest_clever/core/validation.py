"""The one validator of settings: every public function and the pytest settings parsers call it.

Pure Python (no torch, no numpy): ``settings.py``, which pytest imports on
every run, parses marker, ini and CLI values with these checks. Every check
raises :class:`~pytest_clever.errors.InvalidInputError` (a ``ValueError``)
with a message that starts with the setting's name. Checks of tensors and
model outputs live in :mod:`pytest_clever._engine.inputs`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from pytest_clever.core.norms import parse_norm
from pytest_clever.errors import InvalidInputError, see

#: Defaults sized so a 10-class, 64-input model scores in about a second on
#: 2 CPU cores. The paper's high-fidelity settings are n_batches=500,
#: batch_size=1024 (about 40x the work).
DEFAULT_N_BATCHES = 100
DEFAULT_BATCH_SIZE = 128
#: Fewest batch maxima that still support a three-parameter Weibull fit.
MIN_BATCHES = 10
#: Curvature measures of second order: the Hessian spectral norm, or only its negative part.
CURVATURE_METHODS = ("spectral", "negative")
#: Statistics a threshold can apply to, besides "qNN" quantiles.
STATISTICS = ("min", "mean", "median", "max")
#: Seeds are non-negative 63-bit integers (they fit a signed 64-bit generator seed).
SEED_LIMIT = 2**63


@dataclass(frozen=True)
class Settings:
    """Validated sampling settings shared by every input of a run."""

    norm: float
    radius: float
    n_batches: int
    batch_size: int
    bounds: tuple[float, float] | None
    order: int


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """An integer (not a bool, not a float) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = True) -> float:
    """A finite real number above ``minimum`` (``strict``) or at least ``minimum``."""
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or (value <= minimum if strict else value < minimum)
    ):
        hint = see("how-to/gate-a-release.md") if name == "radius" and strict else ""
        raise InvalidInputError(f"{name} must be a finite number {bound}, got {value!r}{hint}")
    return float(value)


def check_radius(radius: Any) -> float:
    """The radius of the sampling ball: a finite number > 0."""
    return check_number("radius", radius)


def check_order(order: Any) -> int:
    if isinstance(order, bool) or order not in (1, 2):
        raise InvalidInputError(f"order must be 1 or 2, got {order!r}")
    return int(order)


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed: an integer (no bool, no float) with ``0 <= seed < 2**63``."""
    value = check_int(name, seed, 0)
    if value >= SEED_LIMIT:
        raise InvalidInputError(f"{name} must be an integer below 2**63, got {seed!r}")
    return value


def as_class_index(value: Any) -> int | None:
    """``value`` as a class index (an int, a numpy integer, a 0-d integer tensor or array, >= 0), else None.

    Bools and floats (even ``2.0``) are not class indices. Callers raise with
    a message naming their setting (``label``, ``target``, ``targets``).
    """
    if not isinstance(value, numbers.Number) and getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()  # a 0-d tensor or array, without importing torch or numpy
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        return None
    return int(value)


def check_curvature(curvature: Any) -> str:
    if curvature not in CURVATURE_METHODS:
        raise InvalidInputError(
            f"curvature must be one of {', '.join(map(repr, CURVATURE_METHODS))}, got {curvature!r}"
        )
    return curvature


def check_flag(name: str, value: Any) -> bool:
    """``True`` or ``False`` itself (a string such as "false" would be true in Python: an error)."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    return value


def check_chunk_size(chunk_size: Any) -> int | None:
    """``None`` (chosen per device) or a number of points >= 1."""
    return None if chunk_size is None else check_int("chunk_size", chunk_size, 1)


def check_bounds(bounds: Any) -> tuple[float, float] | None:
    """``None`` or a pair ``(lo, hi)`` of floats with ``lo < hi``."""
    return None if bounds is None else check_bound_pair(bounds)


def check_bound_pair(bounds: Any) -> tuple[float, float]:
    """A pair ``(lo, hi)`` of floats with ``lo < hi``."""
    try:
        lo, hi = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise InvalidInputError(f"bounds must be a pair (lo, hi) of numbers, got {bounds!r}") from None
    if not lo < hi:
        raise InvalidInputError(f"bounds must satisfy lo < hi, got {bounds!r}")
    return lo, hi


#: Default level of the confidence intervals of scores and statistics.
DEFAULT_CONFIDENCE = 0.95


def check_confidence(confidence: Any) -> float:
    """A confidence level strictly between 0 and 1 (e.g. 0.95)."""
    value = check_number("confidence", confidence)
    if not 0.0 < value < 1.0:
        raise InvalidInputError(f"confidence must lie strictly between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return value


#: First round of batches when ``precision=`` or ``budget=`` chooses the count (an explicit ``n_batches`` replaces it).
DEFAULT_FIRST_ROUND = 20
#: Default cap on the batches of one input when ``precision=`` or ``budget=`` chooses the count.
DEFAULT_MAX_BATCHES = 1000
#: Growth of the batch count from one round to the next (each round refits and re-checks the interval).
ROUND_GROWTH = 1.5


#: Why an input's sampling stopped (``CleverResult.stop_reason``): its fixed ``n_batches``; its interval
#: reached ``precision``; its ``max_batches``; the call's ``budget`` ran out; the gate's decision was settled.
STOP_FIXED, STOP_PRECISION, STOP_CAP, STOP_BUDGET, STOP_DECISION = "fixed", "precision", "cap", "budget", "decision"
STOP_REASONS = (STOP_FIXED, STOP_PRECISION, STOP_CAP, STOP_BUDGET, STOP_DECISION)


@dataclass(frozen=True)
class Stopping:
    """When sampling stops: a fixed count, or rounds until ``precision``, the cap or ``budget`` seconds.

    ``first`` is the batches of the first round (the fixed count when not adaptive); ``cap`` the most
    batches one input gets; ``precision`` the relative half-width the score's interval must reach;
    ``budget`` the seconds a call may spend.
    """

    first: int
    cap: int
    precision: float | None = None
    budget: float | None = None

    @property
    def adaptive(self) -> bool:
        """Whether the batch count is chosen while sampling (precision, budget or a gate decision)."""
        return self.precision is not None or self.budget is not None

    def next_total(self, done: int) -> int:
        """Batches an input has after the round that follows ``done`` batches (at most the cap)."""
        return min(self.cap, max(done + 1, math.ceil(done * ROUND_GROWTH)))


def check_stopping(n_batches: Any, precision: Any, max_batches: Any, budget: Any) -> Stopping:
    """Validate ``n_batches`` against ``precision``, ``max_batches`` and ``budget`` (all may be None).

    Without ``precision`` and ``budget``, ``n_batches`` (default ``DEFAULT_N_BATCHES``) is the fixed
    count and ``max_batches`` has nothing to cap: an error. With either, ``n_batches`` is the first
    round (default ``DEFAULT_FIRST_ROUND``) and ``max_batches`` the cap (default ``DEFAULT_MAX_BATCHES``);
    a first round above the cap contradicts it.
    """
    if precision is not None:
        precision = check_number("precision", precision)
        if not precision < 1:
            raise InvalidInputError(
                f"precision is the relative half-width of the score's interval and must lie strictly between "
                f"0 and 1 (e.g. 0.1 for +-10%), got {precision!r}"
            )
    if budget is not None:
        budget = check_number("budget", budget)
    fixed = n_batches if n_batches is None else check_int("n_batches", n_batches, MIN_BATCHES)
    cap = max_batches if max_batches is None else check_int("max_batches", max_batches, MIN_BATCHES)
    if precision is None and budget is None:
        if cap is not None:
            raise InvalidInputError(
                f"max_batches={cap} caps the rounds of precision= or budget=, which are not set: give one of "
                "them, or n_batches= alone for a fixed count"
            )
        return Stopping(first=fixed or DEFAULT_N_BATCHES, cap=fixed or DEFAULT_N_BATCHES)
    cap = DEFAULT_MAX_BATCHES if cap is None else cap
    first = min(DEFAULT_FIRST_ROUND, cap) if fixed is None else fixed
    if first > cap:
        raise InvalidInputError(
            f"n_batches={first} contradicts max_batches={cap}: with precision= or budget= n_batches is the "
            "first round of batches and max_batches the most an input gets"
        )
    return Stopping(first=first, cap=cap, precision=precision, budget=budget)


def parse_statistic(value: Any) -> str:
    """Parse "min", "mean", "median", "max" or "qNN" with 0 <= NN <= 100 (case and blanks ignored)."""
    text = str(value).strip().lower()
    if text in STATISTICS or (
        text.startswith("q") and text[1:].isascii() and text[1:].isdigit() and 0 <= int(text[1:]) <= 100
    ):
        return text
    raise InvalidInputError(f"unknown statistic {value!r}: use min, mean, median, max or qNN (e.g. q10)")


def check_settings(
    *,
    norm: Any,
    radius: Any,
    n_batches: Any,
    batch_size: Any,
    bounds: Any,
    order: Any = 1,
) -> Settings:
    """Validate and normalise the settings of a CLEVER run."""
    return Settings(
        norm=parse_norm(norm),
        radius=check_radius(radius),
        n_batches=check_int("n_batches", n_batches, MIN_BATCHES),
        batch_size=check_int("batch_size", batch_size),
        bounds=check_bounds(bounds),
        order=check_order(order),
    )


#: The gate mode that compares the statistic itself: the default, and what a threshold without a mode means.
POINT_GATE = "point"
#: Threshold gate modes, the default first.
GATE_MODES: tuple[str, ...] = (POINT_GATE, "significant-fail", "significant-pass")


def check_gate_mode(mode: object) -> str:
    """One of ``GATE_MODES`` (case and blanks ignored), else a usage error naming them."""
    text = str(mode).strip().lower()
    if text not in GATE_MODES:
        raise InvalidInputError(f"gate mode must be one of {', '.join(GATE_MODES)}, got {mode!r}")
    return text


#: The interval of a statistic over inputs that treats the inputs as fixed: only each score's own
#: interval (the estimator's noise) enters. The default: a test's inputs are a fixed set.
ESTIMATOR_NOISE = "estimator"
#: The interval that treats the inputs as a sample of a population: a bootstrap over inputs as well.
INPUT_SAMPLING = "inputs"
#: Kinds of a statistic's interval (the ``interval`` setting), the default first.
INTERVAL_KINDS: tuple[str, ...] = (ESTIMATOR_NOISE, INPUT_SAMPLING)
#: How each kind is named in summaries and failure messages.
INTERVAL_KIND_TEXT = {
    ESTIMATOR_NOISE: "estimator noise: inputs fixed, each score's own interval",
    INPUT_SAMPLING: "input sampling: bootstrap over inputs plus each score's own interval",
}


def check_interval_kind(kind: object) -> str:
    """One of ``INTERVAL_KINDS`` (case and blanks ignored), else a usage error naming them."""
    text = str(kind).strip().lower()
    if text not in INTERVAL_KINDS:
        raise InvalidInputError(
            f"interval must be one of {', '.join(INTERVAL_KINDS)} (estimator noise with the inputs fixed, "
            f"or input sampling with the inputs resampled too), got {kind!r}"
        )
    return text


#: Seconds an executor run may go with no input coming back before it fails naming the pending inputs:
#: longer than one input at the paper's high-fidelity settings on a GPU (minutes), shorter than a CI job's limit.
DEFAULT_EXECUTOR_TIMEOUT = 1800.0
#: Seconds a ``dask://`` or ``ray://`` executor address is given to answer, once per pytest process.
DEFAULT_CONNECT_TIMEOUT = 10.0


def check_timeout(name: str, value: Any) -> float:
    """A number of seconds: finite and > 0."""
    return check_number(name, value)


#: Values of the ``screen`` setting: ``auto`` screens first-order scores over at least
#: ``SCREEN_FROM_TARGETS`` classes whose first round has more than ``SCREEN_POINTS`` points.
SCREEN_AUTO, SCREEN_ON, SCREEN_OFF = "auto", "on", "off"
SCREEN_MODES = (SCREEN_AUTO, SCREEN_ON, SCREEN_OFF)
#: Points of every class the screening round samples before it screens classes out (``stats.screening``).
SCREEN_POINTS = 128
#: Fewest classes ``screen="auto"`` screens: below, one backward pass per class costs little
#: next to the screening's own fits (benchmarks/bench_screening.py).
SCREEN_FROM_TARGETS = 100


def screenable(order: int, first_points: int) -> bool:
    """Whether a score can be screened: first order, and a first round of more than ``SCREEN_POINTS`` points."""
    return order == 1 and first_points > SCREEN_POINTS


def check_screen(screen: Any, *, order: int = 1, first_points: int | None = None) -> str:
    """One of ``SCREEN_MODES`` (case and blanks ignored); ``on`` needs order 1 and a first round above
    ``SCREEN_POINTS`` points (``first_points``: ``n_batches * batch_size`` of the first round)."""
    text = str(screen).strip().lower()
    if text not in SCREEN_MODES:
        raise InvalidInputError(f"screen must be one of {', '.join(SCREEN_MODES)}, got {screen!r}")
    if text == SCREEN_ON and order != 1:
        raise InvalidInputError(
            "screen='on' screens the target classes of first-order scores; order=2 does not support it: "
            "use screen='off' or 'auto' with order=2"
        )
    if text == SCREEN_ON and first_points is not None and first_points <= SCREEN_POINTS:
        raise InvalidInputError(
            f"screen='on' screens classes after {SCREEN_POINTS} points of every class, but the first round has "
            f"{first_points} points (n_batches * batch_size): raise n_batches or batch_size, or use screen='off'"
        )
    return text
