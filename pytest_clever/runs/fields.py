"""Typed reading of record JSON: each reader checks one JSON type and names the field when it is wrong.

``where`` says which record (and part of it) is read, so a malformed file
raises a :class:`RecordError` that points at the field. Pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pytest_clever.errors import CleverError


class RecordError(CleverError):
    """A run record is malformed (the message names the field) or its key occurs twice."""


def get(data: Mapping[str, Any], key: str, where: str) -> Any:
    """``data[key]``, or a RecordError saying the field is missing."""
    if key not in data:
        raise RecordError(f"{where}: missing field {key!r}")
    return data[key]


def _shown(value: Any) -> str:
    """A bad value as the message shows it: JSON's null is how NaN is written, so it says so."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null (NaN)"
    return repr(value)


def number(value: Any, field: str, where: str) -> float:
    """A JSON number (not a bool, not NaN) as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise RecordError(f"{where}: field {field!r} must be a number, got {_shown(value)}")
    return float(value)


def bound(value: Any, field: str, where: str) -> float:
    """An interval bound: a number, or the strings "inf"/"-inf" that results write for infinities."""
    if value in ("inf", "-inf"):
        return float(value)
    return number(value, field, where)


def integer(value: Any, field: str, where: str, minimum: int = 0) -> int:
    """A JSON integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RecordError(f"{where}: field {field!r} must be an integer >= {minimum}, got {value!r}")
    return value


def flag(value: Any, field: str, where: str) -> bool:
    """A JSON true or false."""
    if not isinstance(value, bool):
        raise RecordError(f"{where}: field {field!r} must be true or false, got {value!r}")
    return value


def text(value: Any, field: str, where: str) -> str:
    """A non-empty JSON string."""
    if not isinstance(value, str) or not value:
        raise RecordError(f"{where}: field {field!r} must be a non-empty string, got {value!r}")
    return value


def optional_text(value: Any, field: str, where: str) -> str | None:
    """A non-empty JSON string, or None."""
    return None if value is None else text(value, field, where)


def obj(value: Any, field: str, where: str) -> dict[str, Any]:
    """A JSON object."""
    if not isinstance(value, dict):
        raise RecordError(f"{where}: field {field!r} must be an object, got {type(value).__name__}")
    return value


def optional_obj(value: Any, field: str, where: str) -> dict[str, Any] | None:
    """A JSON object, or None."""
    return None if value is None else obj(value, field, where)


def array(value: Any, field: str, where: str) -> list[Any]:
    """A JSON list."""
    if not isinstance(value, list):
        raise RecordError(f"{where}: field {field!r} must be a list, got {type(value).__name__}")
    return value


def optional_pair(value: Any, field: str, where: str) -> tuple[float, float] | None:
    """Two JSON numbers (bounds, an interval), or None."""
    if value is None:
        return None
    pair = array(value, field, where)
    if len(pair) != 2:
        raise RecordError(f"{where}: field {field!r} must be two numbers, got {value!r}")
    low, high = bound(pair[0], field, where), bound(pair[1], field, where)
    if low > high:
        raise RecordError(f"{where}: field {field!r} must be an interval [low, high] with low <= high, got {value!r}")
    return low, high
