"""Hypothesis strategies for robustness property tests.

>>> from hypothesis import given
>>> from pytest_clever.extras.strategies import points_in_ball
>>> @given(points_in_ball(x0, norm=2, radius=0.1, bounds=(0, 1)))
... def test_prediction_is_stable(x):
...     assert model(x.unsqueeze(0)).argmax() == label

Unlike CLEVER (an estimate) or an attack (a search), a failing property test
hands you a concrete counterexample, shrunk towards ``x0``.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from pytest_clever._engine.inputs import as_input_tensor, check_in_bounds
from pytest_clever._engine.sampling import sample_ball_deltas
from pytest_clever.core.norms import parse_norm
from pytest_clever.core.validation import check_bounds, check_number

#: Grid of the unit coordinates and of the finest radial step (2**20 steps per unit).
RESOLUTION = 2**20
#: Coarse radial steps. Hypothesis draws integers up to 256 about uniformly (larger ones mostly
#: small), but in a tuple of choices it sets each to 0 about a quarter of the time.
RADIAL_STEPS = 256
#: The coarse radius is the largest of this many choices, so it is 0 (x0) only when all are:
#: spread like the radius of a uniform point of a 3-dimensional ball, favouring the boundary.
RADIAL_DRAWS = 3
#: Inputs up to this many values get one hypothesis choice per coordinate (shrinking then
#: zeroes as many coordinates as it can); larger ones a direction drawn from a seed, so that
#: hypothesis's data stays small whatever the input size.
COORDINATE_CHOICES_MAX = 64
#: Most coordinates a sparse seeded direction changes.
SPARSE_MAX = 16
#: Seeded direction shapes, in shrinking order (hypothesis draws the first most often).
_DENSE, _CORNER, _SPARSE = 0, 1, 2


def _radial_fraction(*choices: int) -> float:
    """Distance from x0 as a fraction of the radius, from ``RADIAL_DRAWS`` coarse steps and one fine offset.

    Increasing in every choice and 0 only when all are 0, so shrinking goes towards x0; the fine
    offset keeps a resolution of ``2**-20`` steps for a shrunk counterexample.
    """
    *coarse, fine = choices
    return min(1.0, (max(coarse) + fine / RESOLUTION) / RADIAL_STEPS)


def _seeded_direction(n: int, p: float, shape: int, seed: int) -> torch.Tensor:
    """A float64 vector of ``n`` values from ``seed``: dense, an Linf corner, or sparse."""
    generator = torch.Generator().manual_seed(seed)
    # A uniform point of the unit ball: its direction follows the ball's own law.
    direction = sample_ball_deltas(1, (n,), p, 1.0, generator, dtype=torch.float64)[0]
    if shape == _CORNER:
        direction = torch.where(direction < 0, -1.0, 1.0).to(torch.float64)
    elif shape == _SPARSE:
        count = int(torch.randint(1, min(n, SPARSE_MAX) + 1, (1,), generator=generator))
        kept = torch.randperm(n, generator=generator)[:count]
        direction = torch.zeros(n, dtype=torch.float64).index_copy_(0, kept, direction[kept])
    return direction


def points_in_ball(
    x0: torch.Tensor,
    norm: int | float | str = 2,
    radius: float = 1.0,
    bounds: tuple[float, float] | None = None,
) -> st.SearchStrategy[torch.Tensor]:
    """Tensors ``x`` with ``||x - x0||_norm <= radius`` and every value in ``bounds``.

    The results have the shape, dtype and device of ``x0``. Each example is
    ``x0 + radius * s * u`` with ``u`` on the unit sphere of the norm and ``s``
    in [0, 1], then clipped to ``bounds`` (clipping moves towards ``x0``, so the
    point stays in the ball). Hypothesis controls a few numbers whatever the
    input size:

    * ``s``: the largest of three coarse steps (1/256) plus a fine offset, so
      that the examples spread through the ball and favour its boundary
      (about two thirds lie beyond ``radius / 2``); the surface (``s = 1``,
      e.g. the corners of the Linf ball) is reachable.
    * ``u``: for inputs of up to ``COORDINATE_CHOICES_MAX`` values, one choice
      per coordinate (on a grid of 2**-20), normalised; for larger inputs, a
      seed for the direction of a uniform point of the ball, or its sign
      pattern (a corner of the Linf ball), or its restriction to at most
      ``SPARSE_MAX`` coordinates.

    Hypothesis shrinks ``s`` towards 0, so a failing example shrinks towards
    ``x0`` (for small inputs, along as few coordinates as possible). Values are
    rounded towards ``x0`` when cast to its dtype, so the bound holds for the
    returned tensor itself (measured in float64, up to its rounding).
    """
    x0 = as_input_tensor(x0).detach()
    p = parse_norm(norm)
    radius = check_number("radius", radius, strict=False)
    bounds = check_bounds(bounds)
    check_in_bounds(x0, bounds)
    base = x0.flatten().to(device="cpu")
    base64 = base.double()
    n = base.numel()
    # Integers, not floats: hypothesis shrinks integers towards 0 by size, but floats towards
    # "simple" values such as 1.0, which would shrink away from x0.
    steps = [st.integers(0, RADIAL_STEPS)] * RADIAL_DRAWS
    fraction = st.builds(_radial_fraction, *steps, st.integers(0, RESOLUTION))
    direction: st.SearchStrategy[torch.Tensor]
    if n <= COORDINATE_CHOICES_MAX:
        coordinate = st.integers(-RESOLUTION, RESOLUTION)
        direction = st.lists(coordinate, min_size=n, max_size=n).map(
            lambda coords: torch.tensor(coords, dtype=torch.float64)
        )
    else:
        direction = st.builds(
            lambda shape, seed: _seeded_direction(n, p, shape, seed),
            st.integers(_DENSE, _SPARSE),
            st.integers(0, 2**32 - 1),
        )

    def build(draw: tuple[float, torch.Tensor]) -> torch.Tensor:
        s, u = draw
        length = float(torch.linalg.vector_norm(u, ord=p))
        if length > 0.0:
            u = u / length
        target = base64 + radius * s * u
        if bounds is not None:
            target = target.clamp(bounds[0], bounds[1])
        x = target.to(base.dtype)
        # A cast that rounded a coordinate away from x0 could leave the ball: step it one ulp back.
        away = (x.double() - base64).abs() > (target - base64).abs()
        x = torch.where(away, torch.nextafter(x, base), x)
        return x.reshape(x0.shape).to(x0.device)

    return st.tuples(fraction, direction).map(build)


__all__ = ["points_in_ball"]
