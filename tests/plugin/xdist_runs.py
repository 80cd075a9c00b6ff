"""The same pytester project run serially and under two xdist workers, for tests that compare the two."""

from __future__ import annotations

import json
from typing import Any

import pytest


def serial_and_xdist(pytester: pytest.Pytester, passed: int) -> dict[str, tuple[pytest.RunResult, dict[str, Any]]]:
    """``{"serial": ..., "xdist": ...}``: each run's result (``passed`` tests passed) and its
    ``--clever-json`` document. Skips the test when pytest-xdist is not installed.
    """
    pytest.importorskip("xdist")
    runs = {}
    for label, args in (("serial", ()), ("xdist", ("-n", "2"))):
        result = pytester.runpytest_subprocess(*args, f"--clever-json={label}.json")
        result.assert_outcomes(passed=passed)
        runs[label] = (result, json.loads((pytester.path / f"{label}.json").read_text()))
    return runs
