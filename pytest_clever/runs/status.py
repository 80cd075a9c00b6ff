"""The pass/fail policy of a scored call: what its gates say about it, as a record's ``status``.

A call is held to its threshold gate (when it has a threshold) and to an
attack cross-check (when it ran one). Pure Python.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_clever.runs.gates import GateVerdict

#: What a record's ``status`` can be.
STATUSES = ("recorded", "passed", "failed")


def decide_status(verdict: GateVerdict | None, contradicted: Sequence[int] | None) -> str:
    """``failed`` when the threshold gate failed or an attack contradicted a score; ``passed`` when a
    gate held (the threshold's, or the attack check's, a gate of its own); ``recorded`` without gates.

    ``verdict`` is the threshold gate's (None without a threshold); ``contradicted`` the inputs an
    attack cross-check contradicted (None without a check).
    """
    if (verdict is not None and not verdict.passed) or contradicted:
        return "failed"
    if verdict is None and contradicted is None:
        return "recorded"
    return "passed"
