"""pytest-clever: CLEVER robustness scores for PyTorch classifiers, as pytest tests.

The public API is loaded lazily: ``import pytest_clever`` (which pytest does
for the plugin) costs nothing until a name such as :func:`clever_score` is
used, so test runs that never use the plugin do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "clever_score": "api",
    "clever_scores": "api",
    "BPDA": "defences.bpda",
    "CleverResult": "stats.results",
    "CleverReport": "stats.report",
    "TargetScore": "stats.results",
    "CleverError": "errors",
    "CleverWarning": "errors",
    "WeakFitWarning": "errors",
    "InvalidInputError": "errors",
    "MisclassifiedInputError": "errors",
    "ModelError": "errors",
    "ExecutorError": "errors",
    "GradientMaskingError": "errors",
    "attack_check": "attack",
    "attack_checks": "attack",
    "AttackCheck": "attack",
    "points_in_ball": "extras.strategies",
    "NotTwiceDifferentiableError": "errors",
    # For type hints: def test_x(clever: pytest_clever.CleverFixture).
    "CleverFixture": "plugin.fixture",
}

# A literal list, so that linters and type checkers see the TYPE_CHECKING imports below as re-exports.
__all__ = [
    "BPDA",
    "AttackCheck",
    "CleverError",
    "CleverFixture",
    "CleverReport",
    "CleverResult",
    "CleverWarning",
    "ExecutorError",
    "GradientMaskingError",
    "InvalidInputError",
    "MisclassifiedInputError",
    "ModelError",
    "NotTwiceDifferentiableError",
    "TargetScore",
    "WeakFitWarning",
    "__version__",
    "attack_check",
    "attack_checks",
    "clever_score",
    "clever_scores",
    "points_in_ball",
]

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.api import clever_score, clever_scores
    from pytest_clever.attack import AttackCheck, attack_check, attack_checks
    from pytest_clever.defences.bpda import BPDA
    from pytest_clever.errors import (
        CleverError,
        CleverWarning,
        ExecutorError,
        GradientMaskingError,
        InvalidInputError,
        MisclassifiedInputError,
        ModelError,
        NotTwiceDifferentiableError,
        WeakFitWarning,
    )
    from pytest_clever.extras.strategies import points_in_ball
    from pytest_clever.plugin.fixture import CleverFixture
    from pytest_clever.stats.report import CleverReport
    from pytest_clever.stats.results import CleverResult, TargetScore


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_clever' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
