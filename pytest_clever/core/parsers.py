"""Parsers of setting values: ini and CLI values arrive as text, and markers pass Python objects.

The parsers turn text into numbers and leave every rule to :mod:`.validation`, so a marker, an ini key,
a flag and the Python API report a bad value with the same InvalidInputError message.
Pure Python (no torch, no numpy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_clever.core.progress import TERMINAL_MODES
from pytest_clever.core.targets import parse_targets
from pytest_clever.core.validation import (
    check_bound_pair,
    check_confidence,
    check_gate_mode,
    check_int,
    check_interval_kind,
    check_number,
    check_order,
    check_seed,
    check_stopping,
    check_timeout,
)
from pytest_clever.errors import InvalidInputError


def as_number(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from None


def as_int(name: str, value: Any) -> Any:
    value = as_number(name, value)
    # 12.0 from an ini file is the integer 12; 12.5 stays a float and is rejected.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def positive_float(name: str) -> Callable[[Any], float]:
    return lambda value: check_number(name, as_number(name, value))


def non_negative_float(name: str) -> Callable[[Any], float]:
    return lambda value: check_number(name, as_number(name, value), strict=False)


def int_at_least(name: str, minimum: int) -> Callable[[Any], int]:
    return lambda value: check_int(name, as_int(name, value), minimum)


def fraction(name: str) -> Callable[[Any], float]:
    # The range rule lives in check_stopping, which reports precision's bounds in one message.
    return lambda value: check_stopping(None, as_number(name, value), None, None).precision  # type: ignore[return-value]


def order(value: Any) -> int:
    return check_order(as_int("order", value))


def seed(value: Any) -> int:
    return check_seed(as_int("seed", value))


def confidence(value: Any) -> float:
    return check_confidence(as_number("confidence", value))


def gate(value: Any) -> str:
    return check_gate_mode(value)


def interval_kind(value: Any) -> str:
    return check_interval_kind(value)


def bounds(value: Any) -> tuple[float, float]:
    parts = value.replace(",", " ").split() if isinstance(value, str) else value
    try:
        pair = len(parts) == 2
    except TypeError:
        pair = False
    if not pair:
        raise InvalidInputError(f"bounds must be two numbers lo, hi, got {value!r}")
    return check_bound_pair(parts)


def device(value: Any) -> str:
    return str(value).strip()


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def boolean(name: str) -> Callable[[Any], bool]:
    def parse(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise InvalidInputError(f"{name} must be true or false, got {value!r}")

    return parse


def targets(value: Any) -> str:
    """A target specification in its canonical text ("all", "top-2", "3,5"); see :mod:`.targets`."""
    return str(parse_targets(value))


def seconds(name: str) -> Callable[[Any], float]:
    return lambda value: check_timeout(name, as_number(name, value))


#: Schemes of executor addresses: the plugin connects to the scheduler there.
EXECUTOR_SCHEMES = ("dask://", "ray://")


def executor(value: Any) -> Any:
    """``module:factory``, ``dask://HOST:PORT``, ``ray://HOST:PORT``, or (as a fixture argument) an executor object."""
    if hasattr(value, "submit"):
        return value
    text = str(value).strip()
    module, sep, name = text.partition(":")
    if any(text.startswith(s) and len(text) > len(s) for s in EXECUTOR_SCHEMES) or (
        sep and name.isidentifier() and all(part.isidentifier() for part in module.split("."))
    ):
        return text
    raise InvalidInputError(
        "executor must be module:factory (e.g. mypkg.cluster:make_executor), dask://HOST:PORT or ray://HOST:PORT, "
        f"got {value!r}"
    )


def progress_mode(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in TERMINAL_MODES:
        raise InvalidInputError(f"progress must be one of {', '.join(TERMINAL_MODES)}, got {value!r}")
    return text
