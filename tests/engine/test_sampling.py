"""Uniform sampling in Lp balls: support, bounds, and the radial law of a uniform ball."""

import math

import pytest
import torch
from scipy import stats

from pytest_clever._engine.sampling import sample_ball, sample_ball_deltas


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("norm", [1.0, 2.0, math.inf])
@pytest.mark.parametrize("shape", [(5,), (1, 4, 4)])
def test_deltas_lie_in_the_ball(norm, shape):
    deltas = sample_ball_deltas(4000, shape, norm, 0.7, _gen())
    assert deltas.shape == (4000, *shape)
    lengths = torch.linalg.vector_norm(deltas.flatten(1), ord=norm, dim=1)
    assert float(lengths.max()) <= 0.7 * (1 + 1e-5)
    # The ball is filled, not just its centre: lengths reach close to R.
    assert float(lengths.max()) > 0.6


@pytest.mark.parametrize("norm", [1.0, 2.0])
@pytest.mark.parametrize("d", [2, 3, 10])
def test_radial_law_is_that_of_a_uniform_ball(norm, d):
    # For a uniform point in a d-dimensional ball, (||x|| / R)^d ~ U(0, 1).
    radius = 1.5
    deltas = sample_ball_deltas(5000, (d,), norm, radius, _gen(d))
    u = (torch.linalg.vector_norm(deltas, ord=norm, dim=1).double() / radius) ** d
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3


@pytest.mark.parametrize("norm", [1.0, 2.0])
def test_directions_are_symmetric(norm):
    # Every coordinate of a uniform ball sample is symmetric about 0 with equal spread.
    deltas = sample_ball_deltas(20000, (4,), norm, 1.0, _gen(1)).double()
    assert torch.allclose(deltas.mean(0), torch.zeros(4, dtype=torch.double), atol=0.02)
    spread = deltas.abs().mean(0)
    assert float(spread.max() / spread.min()) < 1.05


def test_linf_coordinates_are_uniform():
    deltas = sample_ball_deltas(5000, (3,), math.inf, 0.25, _gen(2))
    u = (deltas[:, 0].double() + 0.25) / 0.5
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-3


@pytest.mark.parametrize("norm", [1.0, 2.0, math.inf])
def test_points_are_clipped_to_bounds_and_stay_in_the_ball(norm):
    x0 = torch.tensor([0.0, 0.05, 0.5, 1.0])
    points = sample_ball(x0, 3000, norm, 0.3, _gen(3), bounds=(0.0, 1.0))
    assert float(points.min()) >= 0.0 and float(points.max()) <= 1.0
    lengths = torch.linalg.vector_norm(points - x0, ord=norm, dim=1)
    assert float(lengths.max()) <= 0.3 * (1 + 1e-5)


def test_same_generator_seed_gives_same_points():
    x0 = torch.zeros(6)
    a = sample_ball(x0, 100, 2.0, 1.0, _gen(7))
    b = sample_ball(x0, 100, 2.0, 1.0, _gen(7))
    c = sample_ball(x0, 100, 2.0, 1.0, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
