"""The second-order CLEVER radius: where the Taylor lower bound of the margin reaches zero.

Pure Python (``math``), so that results can map a curvature interval to a
score interval without torch, and the engine shares the same formula.
"""

from __future__ import annotations

import math


def second_order_radius(margin: float, gradient_norm: float, curvature: float) -> float:
    """The root ``(-a + sqrt(a^2 + 2 M g)) / M`` of ``g - a r - M r^2 / 2``, written without cancellation.

    ``g`` is the ``margin``, ``a`` the ``gradient_norm`` and ``M`` the ``curvature``.
    Tends to ``g / a`` as ``M -> 0``; infinite when both ``a`` and ``M`` vanish.
    """
    denominator = gradient_norm + math.sqrt(gradient_norm**2 + 2.0 * curvature * margin)
    return 2.0 * margin / denominator if denominator > 0 else math.inf
