"""points_in_ball: hypothesis examples stay in the Lp ball and the bounds, reach its surface, shrink to x0."""

import math

import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st

from pytest_clever import InvalidInputError
from pytest_clever.extras.strategies import points_in_ball

from ..helpers import Linear, exact_linear_score

NORMS = [1, 2, math.inf]
X0 = torch.tensor([[0.2, 0.9, 0.0], [0.5, 1.0, 0.7]])  # an input of shape (2, 3) in [0, 1]


def distance(x, x0, norm):
    return float(torch.linalg.vector_norm((x.double() - x0.double()).flatten(), ord=norm))


@settings(max_examples=60)
@given(data=st.data(), norm=st.sampled_from(NORMS), radius=st.floats(0.0, 3.0))
def test_examples_lie_in_the_ball_and_the_bounds(data, norm, radius):
    x = data.draw(points_in_ball(X0, norm, radius, bounds=(0.0, 1.0)))
    assert x.shape == X0.shape and x.dtype == X0.dtype
    assert distance(x, X0, norm) <= radius * (1 + 1e-12)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


@settings(max_examples=40)
@given(data=st.data(), norm=st.sampled_from(NORMS))
def test_rounding_never_leaves_a_tiny_ball_around_a_large_input(data, norm):
    # Near 1000 a float32 ulp is 6e-5: a careless cast would overshoot a radius of 1e-4.
    x0 = torch.full((4,), 1000.1)
    x = data.draw(points_in_ball(x0, norm, 1e-4))
    assert distance(x, x0, norm) <= 1e-4


@pytest.mark.parametrize("norm", NORMS)
def test_failing_examples_shrink_towards_x0(norm):
    x0 = torch.zeros(5)
    found = find(points_in_ball(x0, norm, 1.0), lambda x: float(x[2]) > 0.3, settings=settings(max_examples=500))
    assert 0.3 < float(found[2]) <= 0.4  # shrunk close to the smallest failing distance
    assert torch.count_nonzero(found) == 1  # and along the failing coordinate only
    assert torch.equal(find(points_in_ball(x0, norm, 1.0), lambda x: True), x0)


def test_the_surface_of_the_ball_is_reachable():
    corner = find(points_in_ball(torch.zeros(3), math.inf, 0.5), lambda x: bool((x.abs() == 0.5).all()))
    assert corner.abs().tolist() == [0.5, 0.5, 0.5]
    point = find(points_in_ball(torch.zeros(2), 2, 1.0), lambda x: distance(x, torch.zeros(2), 2) >= 0.999)
    assert distance(point, torch.zeros(2), 2) == pytest.approx(1.0, abs=1e-3)


def test_bad_arguments_are_rejected():
    with pytest.raises(InvalidInputError, match="unknown norm 3"):
        points_in_ball(X0, 3, 1.0)
    with pytest.raises(InvalidInputError, match="radius must be a finite number >= 0"):
        points_in_ball(X0, 2, -1.0)
    with pytest.raises(InvalidInputError, match="outside bounds"):
        points_in_ball(X0, 2, 1.0, bounds=(0.0, 0.5))
    with pytest.raises(InvalidInputError, match="floating-point"):
        points_in_ball(torch.zeros(3, dtype=torch.long), 2, 1.0)


# The README example: a model whose minimal L2 distortion at x0 is known exactly.
WEIGHT = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 0.0], [0.3, 0.3, -1.0]])
BIAS = torch.tensor([0.5, 0.0, 0.1])
MODEL = Linear(WEIGHT, BIAS).eval()
POINT = torch.tensor([0.4, -0.3, 0.2])
SAFE = exact_linear_score(WEIGHT, BIAS, POINT, 2, math.inf)


@settings(max_examples=50)
@given(points_in_ball(POINT, norm=2, radius=0.99 * SAFE))
def test_prediction_is_stable_inside_the_exact_radius(x):
    with torch.no_grad():
        assert int(MODEL(x.unsqueeze(0)).argmax()) == 0


def test_hypothesis_finds_a_counterexample_beyond_the_exact_radius():
    with torch.no_grad():
        flipped = find(
            points_in_ball(POINT, norm=2, radius=1.5 * SAFE),
            lambda x: int(MODEL(x.unsqueeze(0)).argmax()) != 0,
            settings=settings(max_examples=2000),
        )
    assert SAFE <= distance(flipped, POINT, 2) <= 1.5 * SAFE


# Image-sized inputs (above COORDINATE_CHOICES_MAX values): a seeded direction keeps hypothesis's data small.
IMAGE = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))  # values in [0, 1]
IMAGE_RADII = {1: 10.0, 2: 0.5, math.inf: 8 / 255}


@settings(max_examples=30, deadline=None)
@given(data=st.data(), norm=st.sampled_from(NORMS))
def test_image_sized_examples_lie_in_the_ball_and_the_bounds(data, norm):
    radius = IMAGE_RADII[norm]
    x = data.draw(points_in_ball(IMAGE, norm, radius, bounds=(0.0, 1.0)))
    assert x.shape == IMAGE.shape and x.dtype == IMAGE.dtype
    assert distance(x, IMAGE, norm) <= radius * (1 + 1e-12)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


@pytest.mark.parametrize("norm", [2, math.inf])
@pytest.mark.parametrize("x0", [IMAGE, torch.full((64,), 0.5)], ids=["3x32x32", "64 values"])
def test_examples_spread_through_the_ball(x0, norm):
    radius = 0.2  # clipping to [0, 1] may pull a point towards x0, so part of the spread is the strategy's
    fractions = []

    @settings(max_examples=100, derandomize=True, database=None, deadline=None)
    @given(points_in_ball(x0, norm, radius, bounds=(0.0, 1.0)))
    def draw(x):
        fractions.append(distance(x, x0, norm) / radius)

    draw()
    fractions.sort()
    assert len(fractions) == 100
    assert fractions[50] >= 0.5  # the median: the points do not bunch at x0
    assert fractions[25] < 0.9 and fractions[90] > 0.75  # neither all near the surface nor none


@pytest.mark.parametrize("norm", NORMS)
def test_image_sized_failing_examples_shrink_towards_x0(norm):
    radius = IMAGE_RADII[norm]
    found = find(
        points_in_ball(IMAGE, norm, radius),
        lambda x: distance(x, IMAGE, norm) > 0.3 * radius,
        settings=settings(max_examples=200, deadline=None),
    )
    assert 0.3 * radius < distance(found, IMAGE, norm) <= 0.4 * radius
    assert torch.equal(find(points_in_ball(IMAGE, norm, radius), lambda x: True), IMAGE)


def test_the_corners_of_an_image_sized_linf_ball_are_reachable():
    x0 = torch.zeros(3, 32, 32)
    corner = find(points_in_ball(x0, math.inf, 0.5), lambda x: bool((x.abs() == 0.5).all()))
    assert corner.abs().unique().tolist() == [0.5]
