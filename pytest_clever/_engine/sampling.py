"""Uniform samples from an Lp ball around an input, clipped to the input bounds.

Every function takes an explicit ``torch.Generator`` so that scores are
reproducible and the user's global RNG state is never touched.
"""

from __future__ import annotations

import math

import torch

from pytest_clever.core.seeds import derive_seed


def sample_ball_deltas(
    n: int,
    shape: torch.Size | tuple[int, ...],
    norm: float,
    radius: float,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw ``n`` perturbations uniformly from the Lp ball of ``radius``.

    Returns a tensor of shape ``(n, *shape)``. ``norm`` is 1.0, 2.0 or inf.
    L2: Gaussian direction on the unit sphere times ``R * U**(1/d)``;
    L1: exponential variates with random signs on the unit L1 sphere times
    ``R * U**(1/d)``; Linf: every coordinate uniform in ``[-R, R]``.
    """
    d = math.prod(shape)

    def uniform(*size: int) -> torch.Tensor:
        return torch.rand(*size, generator=generator, dtype=dtype, device=device)

    if math.isinf(norm):
        deltas = (uniform(n, d) * 2.0 - 1.0) * radius
    else:
        if norm == 2.0:
            direction = torch.randn(n, d, generator=generator, dtype=dtype, device=device)
        elif norm == 1.0:
            # -log(U) is Exp(1); random signs make it symmetric.
            magnitude = -torch.log1p(-uniform(n, d))
            signs = torch.randint(0, 2, (n, d), generator=generator, device=device)
            direction = magnitude * (signs.to(dtype) * 2.0 - 1.0)
        else:  # pragma: no cover - parse_norm guarantees 1, 2 or inf
            raise ValueError(f"unsupported norm {norm}")
        direction = direction / torch.linalg.vector_norm(direction, ord=norm, dim=1, keepdim=True)
        radii = radius * uniform(n, 1).pow(1.0 / d)
        deltas = direction * radii
    return deltas.reshape(n, *shape)


def sample_ball(
    x0: torch.Tensor,
    n: int,
    norm: float,
    radius: float,
    generator: torch.Generator,
    bounds: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Draw ``n`` points uniformly from the Lp ball around ``x0``, then clip to ``bounds``.

    Clipping moves every coordinate towards ``x0`` (which lies inside the
    bounds), so clipped points stay inside the ball.
    """
    deltas = sample_ball_deltas(n, x0.shape, norm, radius, generator, dtype=x0.dtype, device=x0.device)
    points = x0.unsqueeze(0) + deltas
    if bounds is not None:
        points = points.clamp_(bounds[0], bounds[1])
    return points


def point_generators(seed: int, first: int, n: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator for each of the points ``first .. first + n - 1`` of a run, seeded from ``(seed, index)``.

    For per-point random draws (second order's Lanczos start vectors) that do
    not depend on how the points are chunked.
    """
    return [torch.Generator(device=device).manual_seed(derive_seed(seed, "point", k)) for k in range(first, first + n)]
