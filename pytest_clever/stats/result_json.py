"""The JSON of results: the floats JSON lacks, and the fields of older result layouts.

Results carry no layout version of their own (records and run files do:
:mod:`pytest_clever.runs.schema`), so each upgrade here recognises an older
layout by its fields and changes only what it lacks or names differently;
``TargetScore.from_dict`` and ``CleverResult.from_dict`` apply them before reading.

Pure Python.
"""

from __future__ import annotations

import math
from typing import Any

#: Names of the second-order solver fields in older layouts -> their names now.
RENAMED_TARGET_FIELDS = {"power_iterations": "solver_steps", "power_converged": "solver_converged"}


def json_float(value: float | None) -> float | str | None:
    """NaN becomes None (JSON has no NaN); infinities become the strings "inf" and "-inf"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def from_json_float(value: Any) -> float:
    """The float :func:`json_float` wrote: None is NaN."""
    if value is None:
        return math.nan
    return float(value)


def interval_to_json(interval: tuple[float, float] | None) -> list[float | str | None] | None:
    """An interval as a JSON pair (None stays None)."""
    return None if interval is None else [json_float(float(v)) for v in interval]


def interval_from_json(value: Any) -> tuple[float, float] | None:
    """The interval :func:`interval_to_json` wrote."""
    return None if value is None else (from_json_float(value[0]), from_json_float(value[1]))


def upgrade_target_score(data: dict[str, Any]) -> dict[str, Any]:
    """A ``TargetScore`` dict with the current field names (the solver fields were renamed)."""
    return {RENAMED_TARGET_FIELDS.get(k, k): v for k, v in data.items()}


def upgrade_result(data: dict[str, Any]) -> dict[str, Any]:
    """A ``CleverResult`` dict with ``targets``: layouts without target selection said
    ``targeted`` for the one class ``target``, and all classes otherwise."""
    if "targets" in data:
        return data
    return {**data, "targets": data["target"] if data.get("targeted") else "all"}
