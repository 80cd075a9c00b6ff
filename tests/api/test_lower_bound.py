"""Validity: CLEVER against exact or attack-found minimal distortions.

CLEVER estimates the minimal adversarial distortion; a sound estimate stays
below it. On 2-D toy networks the exact minimal distortion is found by an
exhaustive boundary search (rays in every direction plus bisection, checked
against a brute-force grid); on the digits CNN a PGD attack gives an upper
bound of it. The measured shares are printed (run with ``-s``) and asserted.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from pytest_clever import InvalidInputError, attack_checks, clever_score, clever_scores

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RADIUS = 1.0
TOY_SEEDS = (0, 1, 2)
POINTS_PER_TOY = 8


def toy_mlp(seed: int, activation: type[nn.Module]) -> nn.Sequential:
    """2 inputs -> 16 -> 16 -> 3 classes; weights scaled so decision boundaries cross [-1, 1]^2."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 16), activation(), nn.Linear(16, 16), activation(), nn.Linear(16, 3))
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 3 / math.sqrt(layer.in_features))
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.5)
    return model.eval()


@torch.no_grad()
def exact_distortion(
    model: nn.Module,
    x0: torch.Tensor,
    norm: float,
    radius: float,
    n_dirs: int = 720,
    n_steps: int = 200,
    iters: int = 40,
) -> float:
    """The minimal ``norm`` distortion that changes the prediction of a 2-D model (inf beyond ``radius``).

    Every point at distance t lies on a ray x0 + t u with ||u|| = 1; walk each
    of ``n_dirs`` rays in steps of radius / n_steps to its first point of
    another class, then bisect to the boundary. The minimum over rays is exact
    up to the angular resolution (relative error ~1e-5 for a locally flat boundary).
    """
    c = int(model(x0[None]).argmax())
    theta = torch.arange(n_dirs, dtype=torch.float64) * (2 * math.pi / n_dirs)
    u = torch.stack([theta.cos(), theta.sin()], 1)
    u = u / torch.linalg.vector_norm(u, ord=norm, dim=1, keepdim=True)
    t = torch.arange(1, n_steps + 1, dtype=torch.float64) * (radius / n_steps)
    points = x0.double()[None, None] + t[None, :, None] * u[:, None, :]
    other = model(points.float().reshape(-1, 2)).argmax(1).reshape(n_dirs, n_steps) != c
    crosses = other.any(1)
    if not crosses.any():
        return math.inf
    k = other.float().argmax(1)[crosses]
    u = u[crosses]
    lo = torch.where(k > 0, t[(k - 1).clamp(min=0)], torch.zeros(len(k), dtype=torch.float64))
    hi = t[k]
    for _ in range(iters):
        mid = (lo + hi) / 2
        flipped = model((x0.double() + mid[:, None] * u).float()).argmax(1) != c
        hi, lo = torch.where(flipped, mid, hi), torch.where(flipped, lo, mid)
    return float(hi.min())


@torch.no_grad()
def _coarse_distance(model: nn.Module, xs: torch.Tensor, norm: float) -> torch.Tensor:
    """Per input, the nearest point of another class on 90 rays x 25 steps: an upper bound of the exact distance."""
    theta = torch.arange(90) * (2 * math.pi / 90)
    u = torch.stack([theta.cos(), theta.sin()], 1)
    u = u / torch.linalg.vector_norm(u, ord=norm, dim=1, keepdim=True)
    t = torch.arange(1, 26) * (RADIUS / 50)
    points = xs[:, None, None] + t[None, None, :, None] * u[None, :, None, :]
    classes = model(points.reshape(-1, 2)).argmax(1).reshape(len(xs), -1)
    other = classes != model(xs).argmax(1)[:, None]
    distance = t.repeat(90)[None].expand_as(other)
    return torch.where(other, distance, torch.full_like(distance, math.inf)).min(1).values


def toy_cases(activation: type[nn.Module], norm: float):
    """(model, x0, exact distortion) with the boundary inside half the radius, so the cap at R cannot help."""
    cases = []
    for seed in TOY_SEEDS:
        model = toy_mlp(seed, activation)
        candidates = torch.rand(60, 2, generator=torch.Generator().manual_seed(100 + seed)) * 2 - 1
        found = 0
        for x0 in candidates[_coarse_distance(model, candidates, norm) < RADIUS / 2]:
            exact = exact_distortion(model, x0, norm, RADIUS)
            if 1e-3 < exact < RADIUS / 2:
                cases.append((model, x0, exact))
                found += 1
                if found == POINTS_PER_TOY:
                    break
    return cases


def compare(cases, norm, order=1):
    ratios = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weak-fit notes are not what this test measures
        for i, (model, x0, exact) in enumerate(cases):
            score = clever_score(model, x0, norm=norm, radius=RADIUS, order=order, seed=i).score
            assert 0 < score <= RADIUS
            ratios.append(score / exact)
    share = sum(r <= 1 for r in ratios) / len(ratios)
    return share, sorted(ratios)


def test_the_exact_search_agrees_with_a_brute_force_grid():
    model, x0 = toy_mlp(0, nn.Tanh), torch.tensor([0.2, -0.3])
    n = 801
    axis = torch.linspace(-RADIUS, RADIUS, n, dtype=torch.float64)
    spacing = float(axis[1] - axis[0])
    deltas = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        other = model((x0.double() + deltas).float()).argmax(1) != model(x0[None]).argmax()
    for norm in (2.0, math.inf):
        grid = float(torch.linalg.vector_norm(deltas[other], ord=norm, dim=1).min())
        exact = exact_distortion(model, x0, norm, RADIUS)
        assert exact < RADIUS / 2  # the boundary is close: the comparison means something
        # Grid points of another class are at least the exact distance away, and one lies within a cell of it.
        assert exact - 1e-6 <= grid <= exact + spacing * math.sqrt(2)


# One smooth and one piecewise-linear net, one per norm, by default; all four with --run-slow.
@pytest.mark.parametrize(
    "norm, activation",
    [
        pytest.param(2.0, nn.ReLU, id="L2-relu"),
        pytest.param(math.inf, nn.Tanh, id="Linf-tanh", marks=pytest.mark.slow),
        pytest.param(2.0, nn.Tanh, id="L2-tanh", marks=pytest.mark.slow),
        pytest.param(math.inf, nn.ReLU, id="Linf-relu", marks=pytest.mark.slow),
    ],
)
def test_first_order_clever_is_a_lower_bound_on_2d_toys(activation, norm):
    cases = toy_cases(activation, norm)
    assert len(cases) >= 16  # some seeds have few boundaries near [-1, 1]^2
    share, ratios = compare(cases, norm)
    median = ratios[len(ratios) // 2]
    print(
        f"\n2-D toys, {activation.__name__}, {'Linf' if math.isinf(norm) else 'L2'}: CLEVER <= exact "
        f"on {share:.0%} of {len(ratios)} inputs; score/exact median {median:.2f}, max {ratios[-1]:.2f}"
    )
    # Measured: 100% in every configuration, max ratio 0.69-0.90 (24 inputs each).
    assert share >= 0.95, ratios
    # Not vacuous: the scores are a sizeable fraction of the exact distortion, not ~0.
    assert median >= 0.15, ratios


@pytest.mark.slow  # 48 second-order scores at the default sample size
def test_second_order_clever_is_a_lower_bound_on_2d_toys():
    model, x0, _ = toy_cases(nn.Tanh, 2.0)[0]
    try:
        clever_score(model, x0, radius=RADIUS, order=2, seed=0)
    except InvalidInputError as exc:
        if "not available yet" in str(exc):
            pytest.skip("second-order CLEVER (order=2) is not implemented yet")
        raise
    for norm in (2.0, math.inf):
        share, ratios = compare(toy_cases(nn.Tanh, norm), norm, order=2)
        print(f"\n2-D tanh toys, order 2, norm {norm}: CLEVER <= exact on {share:.0%}; ratios {ratios}")
        # No measured share to hold order 2 to: "most of the time".
        assert share >= 0.8, ratios


@pytest.mark.slow  # 20 CLEVER scores and 20 PGD searches with restarts
def test_digits_cnn_clever_is_below_the_pgd_distortion(digits, digits_cnn):
    with torch.no_grad():
        correct = digits_cnn(digits.x_test).argmax(1) == digits.y_test
    xs, ys = digits.x_test[correct][:20], digits.y_test[correct][:20]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = clever_scores(
            digits_cnn, xs, ys, norm=2, radius=2.0, bounds=(0.0, 1.0), n_batches=20, batch_size=64, seed=0
        )
    checks = attack_checks(digits_cnn, xs, report, steps=30, restarts=2, search_rounds=2, seed=0)
    assert all(c.found for c in checks)  # radius 2 holds an adversarial example for every input
    below = [c.score <= c.distortion for c in checks]
    share = sum(below) / len(below)
    ratios = sorted(c.distortion / c.score for c in checks)
    print(
        f"\ndigits CNN, L2: CLEVER <= PGD distortion on {share:.0%} of 20 inputs; "
        f"PGD/CLEVER min {ratios[0]:.2f}, median {ratios[10]:.2f}"
    )
    # Measured: 100% (PGD distortion 1.26x to 2.0x the CLEVER score).
    assert share >= 0.9
    assert sum(c.contradicts for c in checks) <= 2
