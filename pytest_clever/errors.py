"""Exceptions and warnings raised by pytest-clever, in one place.

Every error is a subclass of :class:`CleverError` (itself a ``ValueError``),
so callers can catch the whole family at once. Messages name the problem and,
where it helps, the fix. This module imports nothing heavy.
"""

from __future__ import annotations


def see(page: str) -> str:
    """A pointer to a documentation page (a path under ``docs/``), appended to messages that need more context."""
    return f" (see the documentation page docs/{page})"


class CleverError(ValueError):
    """Base class of every error raised by pytest-clever."""


class InvalidInputError(CleverError):
    """The input, the model's output or a setting cannot give a meaningful score."""


class MisclassifiedInputError(CleverError):
    """The model does not predict the expected label, or two classes tie at the top."""


class ModelError(CleverError):
    """Calling the model failed; the original exception is chained."""


class NotTwiceDifferentiableError(InvalidInputError):
    """Second-order CLEVER was asked of a model without usable second derivatives (ReLU, max-pool, ...)."""


class GradientMaskingError(CleverError):
    """Gradients are zero or non-finite where the margin visibly changes."""


class CleverWarning(UserWarning):
    """Something about an estimate the user should know (weak fit, eval mode, ...)."""


class WeakFitWarning(CleverWarning):
    """The extreme-value fit behind a score is poor; the score is less trustworthy."""


class ExecutorError(CleverError):
    """Scoring on an executor failed: the model cannot be shipped, a task failed in a worker, or a worker was lost."""
