"""Norm names and their duals (pure Python, no torch)."""

from __future__ import annotations

import math

from pytest_clever.errors import InvalidInputError

_ALIASES: dict[str, float] = {
    "1": 1.0,
    "l1": 1.0,
    "2": 2.0,
    "l2": 2.0,
    "inf": math.inf,
    "linf": math.inf,
    "l_inf": math.inf,
    "infinity": math.inf,
}


def parse_norm(norm: object) -> float:
    """Return the perturbation norm as 1.0, 2.0 or ``math.inf``.

    Accepts 1, 2, ``float('inf')`` and the strings "1", "2", "inf", "l1",
    "l2", "linf" (case-insensitive).
    """
    if isinstance(norm, bool):
        raise InvalidInputError(f"norm must be 1, 2 or inf, got {norm!r}")
    if isinstance(norm, (int, float)):
        if norm in (1, 2) or norm == math.inf:
            return float(norm)
    elif isinstance(norm, str) and norm.strip().lower() in _ALIASES:
        return _ALIASES[norm.strip().lower()]
    raise InvalidInputError(f"unknown norm {norm!r}: use 1, 2 or inf (or 'l1', 'l2', 'linf')")


def dual_norm(p: float) -> float:
    """The dual exponent q with 1/p + 1/q = 1 (1 <-> inf, 2 <-> 2)."""
    return {1.0: math.inf, 2.0: 2.0, math.inf: 1.0}[p]


def norm_label(p: float) -> str:
    """Short display name: 'L1', 'L2' or 'Linf'."""
    return {1.0: "L1", 2.0: "L2", math.inf: "Linf"}[p]


def norm_to_json(p: float) -> int | str:
    """JSON-friendly form of a norm: 1, 2 or "inf"."""
    return "inf" if math.isinf(p) else int(p)
