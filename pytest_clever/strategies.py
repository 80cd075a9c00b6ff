"""Hypothesis strategies for robustness property tests.

>>> from hypothesis import given
>>> from pytest_clever.strategies import points_in_ball
>>> @given(points_in_ball(x0, norm=2, radius=0.1, bounds=(0, 1)))
... def test_prediction_is_stable(x):
...     assert model(x.unsqueeze(0)).argmax() == label

Unlike CLEVER (an estimate) or an attack (a search), a failing property test
hands you a concrete counterexample, shrunk towards ``x0``.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from .norms import parse_norm
from .inputs import as_input_tensor, check_in_bounds
from .validation import check_bounds, check_number


#: Grid of the unit coordinates and of the radial scale (2**20 steps per unit).
RESOLUTION = 2**20


def points_in_ball(
    x0: torch.Tensor,
    norm: int | float | str = 2,
    radius: float = 1.0,
    bounds: tuple[float, float] | None = None,
) -> st.SearchStrategy[torch.Tensor]:
    """Tensors ``x`` with ``||x - x0||_norm <= radius`` and every value in ``bounds``.

    The results have the shape, dtype and device of ``x0``. Each example is
    ``x0 + radius * s * u`` with ``s`` in [0, 1] and ``u`` drawn coordinate-wise
    from [-1, 1] (both on a grid of 2**-20; ``u`` pulled back onto the unit ball when outside it), then
    clipped to ``bounds`` (clipping moves towards ``x0``, so the point stays in
    the ball). Hypothesis shrinks ``s`` and the coordinates of ``u`` towards 0:
    a failing example shrinks towards ``x0``, along as few coordinates as
    possible. The ball's surface (e.g. the corners of the Linf ball) is
    reachable. Values are rounded towards ``x0`` when cast to its dtype, so
    the bound holds for the returned tensor itself (measured in float64,
    up to its rounding).
    """
    x0 = as_input_tensor(x0).detach()
    p = parse_norm(norm)
    radius = check_number("radius", radius, strict=False)
    bounds = check_bounds(bounds)
    check_in_bounds(x0, bounds)
    base = x0.flatten().to(device="cpu")
    base64 = base.double()
    # Integers, not floats: hypothesis shrinks integers towards 0 by size, but floats towards
    # "simple" values such as 1.0, which would shrink away from x0.
    unit = st.lists(st.integers(-RESOLUTION, RESOLUTION), min_size=base.numel(), max_size=base.numel())
    scale = st.integers(0, RESOLUTION)

    def build(draw: tuple[list[int], int]) -> torch.Tensor:
        coords, steps = draw
        u = torch.tensor(coords, dtype=torch.float64) / RESOLUTION
        s = steps / RESOLUTION
        length = float(torch.linalg.vector_norm(u, ord=p))
        if length > 1.0:
            u = u / length
        target = base64 + radius * s * u
        if bounds is not None:
            target = target.clamp(bounds[0], bounds[1])
        x = target.to(base.dtype)
        # A cast that rounded a coordinate away from x0 could leave the ball: step it one ulp back.
        away = (x.double() - base64).abs() > (target - base64).abs()
        x = torch.where(away, torch.nextafter(x, base), x)
        return x.reshape(x0.shape).to(x0.device)

    return st.tuples(unit, scale).map(build)


__all__ = ["points_in_ball"]
