"""The CLEVER radii: ``min(g / L, R)`` (first order) and where the Taylor lower bound of the margin reaches zero.

Pure Python (``math``), so that results can map an end-point interval to a
score interval without torch, and the engine shares the same formulas.
"""

from __future__ import annotations

import math

#: What a score equal to the radius means: the ball holds no decision change the estimate can see.
CAPPED_NOTE = "capped at the radius: the ball is too small to see this model's decision boundary"


def is_capped(score: float, radius: float) -> bool:
    """Whether ``score`` is the radius itself: both formulas return ``R`` exactly when they cap."""
    return score >= radius


def first_order_score(margin: float, lipschitz: float, radius: float) -> float:
    """``min(margin / L, R)``; ``R`` when ``L`` is not positive (the margin cannot change)."""
    return min(margin / lipschitz, radius) if lipschitz > 0 else radius


def second_order_radius(margin: float, gradient_norm: float, curvature: float) -> float:
    """The root ``(-a + sqrt(a^2 + 2 M g)) / M`` of ``g - a r - M r^2 / 2``, written without cancellation.

    ``g`` is the ``margin``, ``a`` the ``gradient_norm`` and ``M`` the ``curvature``.
    Tends to ``g / a`` as ``M -> 0``; infinite when both ``a`` and ``M`` vanish.
    """
    denominator = gradient_norm + math.sqrt(gradient_norm**2 + 2.0 * curvature * margin)
    return 2.0 * margin / denominator if denominator > 0 else math.inf
