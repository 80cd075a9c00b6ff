"""Second-order CLEVER: exact quadratic oracles, Hessian norms against full Hessians, error paths."""

import json
import math

import pytest
import torch
from torch import nn

from pytest_clever import (
    CleverResult,
    InvalidInputError,
    NotTwiceDifferentiableError,
    TargetScore,
    WeakFitWarning,
    clever_score,
    clever_scores,
)
from pytest_clever._engine.curvature import SolverOptions, margin_curvatures
from pytest_clever._engine.second_order import second_order_radius
from pytest_clever.extras.digits import DIGITS_BOUNDS, DigitsCNN, cached_digits_cnn

from ..helpers import SMALL_SAMPLE


class Quadratic(nn.Module):
    """Logits ``[g(x), 0]`` with ``g(x) = c + s ||A(x - x0)||^2 / 2 + w.(x - x0)``: constant Hessian ``s A^T A``."""

    def __init__(self, a: torch.Tensor, w: torch.Tensor, x0: torch.Tensor, c: float, sign: float = -1.0) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("w", w)
        self.register_buffer("x0", x0)
        self.c, self.sign = c, sign

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x - self.x0
        g = self.c + self.sign * 0.5 * (z @ self.a.T).pow(2).sum(1) + z @ self.w
        return torch.stack([g, torch.zeros_like(g)], dim=1)


def _quadratic(sign=-1.0, d=6):
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(d, d, generator=gen) / math.sqrt(d)
    w = torch.randn(d, generator=gen)
    x0 = torch.randn(d, generator=gen)
    return Quadratic(a, w, x0, c=1.5, sign=sign), a, w, x0


def _closed_form(a_matrix, w, c, norm):
    m = float(torch.linalg.matrix_norm(a_matrix.T @ a_matrix, ord=2))
    d = w.numel()
    k2 = 1.0 if norm <= 2 else float(d)
    grad = float(torch.linalg.vector_norm(w, ord={1.0: math.inf, 2.0: 2.0, math.inf: 1.0}[norm]))
    return (-grad + math.sqrt(grad**2 + 2 * m * k2 * c)) / (m * k2), m, grad


# --- exact oracles ---------------------------------------------------------------------


@pytest.mark.parametrize("curvature", ["spectral", "negative"])
@pytest.mark.parametrize("norm", [2, 1, math.inf])
def test_quadratic_margin_matches_the_closed_form(norm, curvature):
    model, a, w, x0 = _quadratic()
    expected, m, grad = _closed_form(a, w, 1.5, float(norm))
    result = clever_score(model, x0, norm=norm, radius=10.0, order=2, curvature=curvature, seed=0, **SMALL_SAMPLE)
    assert result.order == 2 and result.target == 1
    s = result.per_target[1]
    assert s.curvature == pytest.approx(m, rel=1e-3)
    assert s.gradient_norm == pytest.approx(grad, rel=1e-5)
    assert s.curvature_method == curvature and s.solver_converged == 1.0 and s.solver_steps >= 1
    assert result.score == pytest.approx(expected, rel=0.01)
    assert result.score < 10.0 and result.score < 1.5 / grad  # not capped, and tighter than g/a
    assert result.consistent and not result.notes


def test_convex_quadratic_has_no_negative_curvature():
    # Hessian +A^T A: the "negative" bound is 0 (score g/a, noted); "spectral" stays conservative.
    model, a, w, x0 = _quadratic(sign=+1.0)
    expected, m, grad = _closed_form(a, w, 1.5, 2.0)
    with pytest.warns(WeakFitWarning, match="convex"):
        negative = clever_score(model, x0, radius=10.0, order=2, curvature="negative", seed=0, **SMALL_SAMPLE)
    assert negative.per_target[1].curvature == 0.0
    assert negative.score == pytest.approx(1.5 / grad, rel=1e-5)
    assert any("convex" in note for note in negative.notes)
    spectral = clever_score(model, x0, radius=10.0, order=2, curvature="spectral", seed=0, **SMALL_SAMPLE)
    assert spectral.score == pytest.approx(expected, rel=0.01)


def test_linear_model_scores_g_over_a_exactly(linear_model):
    # Zero Hessian and a constant gradient: a genuinely linear margin, not a piecewise-linear one.
    model, weight, bias = linear_model
    x0 = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.2])
    logits = weight @ x0 + bias
    c = int(logits.argmax())
    expected = min(float((logits[c] - logits[j]) / (weight[c] - weight[j]).norm()) for j in range(4) if j != c)
    result = clever_score(model, x0, radius=10.0, order=2, seed=0, **SMALL_SAMPLE)
    assert result.score == pytest.approx(expected, rel=1e-5)
    assert all(t.curvature == 0.0 for t in result.per_target.values())


def test_second_order_radius_limits():
    assert second_order_radius(2.0, 4.0, 0.0) == 0.5
    assert second_order_radius(2.0, 0.0, 1.0) == pytest.approx(2.0)  # sqrt(2 g / M)
    assert second_order_radius(2.0, 4.0, 1e-12) == pytest.approx(0.5)
    assert second_order_radius(2.0, 0.0, 0.0) == math.inf
    # The root of g - a r - M r^2 / 2:
    r = second_order_radius(1.5, 0.7, 3.0)
    assert 1.5 - 0.7 * r - 1.5 * r * r == pytest.approx(0.0, abs=1e-12)


class SmoothMLP(nn.Module):
    def __init__(self, d: int = 8, k: int = 4) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Linear(d, 16), nn.Softplus(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, k))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("method", ["spectral", "negative"])
def test_hessian_curvature_matches_the_full_hessian(method):
    model = SmoothMLP().double().eval().requires_grad_(False)
    points = torch.randn(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    predicted, targets = 1, [0, 2, 3]
    _, estimate = margin_curvatures(
        model,
        points,
        predicted,
        targets,
        method=method,
        generator=torch.Generator().manual_seed(0),
        solver=SolverOptions(tol=1e-12, max_steps=5000),
    )
    assert bool(estimate.converged.all())
    got = estimate.value.view(6, 3)
    for i in range(6):
        for t, j in enumerate(targets):
            # hessian calls the lambda at once, within this iteration: binding j is not needed
            hessian = torch.autograd.functional.hessian(
                lambda x: (lambda z: z[0, predicted] - z[0, j])(model(x.unsqueeze(0))),  # noqa: B023
                points[i],
            )
            if method == "spectral":
                expected = float(torch.linalg.matrix_norm(hessian, ord=2))
            else:
                expected = max(0.0, -float(torch.linalg.eigvalsh(hessian)[0]))
            assert expected > 1e-3  # the comparison is not vacuous
            assert float(got[i, t]) == pytest.approx(expected, rel=1e-4)


# --- piecewise-linear models -----------------------------------------------------------


def test_relu_mlp_gets_a_clear_error():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
    x0 = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.2])
    with pytest.raises(NotTwiceDifferentiableError, match="twice-differentiable.*softplus, tanh, GELU, SiLU"):
        clever_score(model, x0, radius=2.0, order=2, seed=0, **SMALL_SAMPLE)
    assert issubclass(NotTwiceDifferentiableError, InvalidInputError)


def test_relu_maxpool_digits_cnn_gets_a_clear_error(digits):
    # The architecture of the trained ReLU digits CNN (ReLU + max-pool); detection needs no training.
    torch.manual_seed(0)
    model = DigitsCNN("relu").eval()
    with pytest.raises(NotTwiceDifferentiableError, match="piecewise-linear"):
        clever_scores(
            model, digits.x_test[:1], radius=2.0, bounds=DIGITS_BOUNDS, order=2, seed=0, n_batches=10, batch_size=8
        )


# --- a real smooth model ---------------------------------------------------------------


@pytest.mark.slow  # second order on a CNN: Hessian-vector products for 9 targets at every sample
def test_smooth_digits_scores_are_finite_and_at_most_the_radius(digits):
    model = cached_digits_cnn("softplus")
    with torch.no_grad():
        ok = model(digits.x_test[:10]).argmax(1) == digits.y_test[:10]
    xs, ys = digits.x_test[:10][ok][:2], digits.y_test[:10][ok][:2]
    report = clever_scores(model, xs, ys, radius=2.0, bounds=DIGITS_BOUNDS, order=2, seed=0, n_batches=10, batch_size=8)
    assert len(report) == 2
    for result in report:
        assert result.order == 2 and len(result.per_target) == 9
        assert math.isfinite(result.score) and 0 < result.score <= 2.0
        for t in result.per_target.values():
            assert t.curvature > 0 and t.gradient_norm > 0 and t.curvature_method == "spectral"
            assert t.score == pytest.approx(min(t.margin / t.lipschitz, 2.0), rel=1e-9)
            assert t.curvature >= t.sample_max


# --- API behaviour -----------------------------------------------------------------------


def test_seed_determinism_json_round_trip_and_model_restoration():
    model = SmoothMLP()
    model.train()
    x0 = torch.randn(8, generator=torch.Generator().manual_seed(4))
    flags = [p.requires_grad for p in model.parameters()]
    first = clever_score(model, x0, radius=1.0, order=2, seed=7, **SMALL_SAMPLE)
    again = clever_score(model, x0, radius=1.0, order=2, seed=7, **SMALL_SAMPLE)
    other = clever_score(model, x0, radius=1.0, order=2, seed=8, **SMALL_SAMPLE)

    def strip(r):
        return {k: v for k, v in r.to_dict().items() if k != "elapsed"}

    assert strip(first) == strip(again)
    assert first.per_target[first.target].curvature != other.per_target[other.target].curvature
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())

    data = json.loads(json.dumps(first.to_dict()))
    loaded = CleverResult.from_dict(data)
    assert loaded.order == 2 and loaded.per_target == first.per_target
    assert "curvature=" in repr(first)
    # First-order JSON written before these fields existed still loads, with defaults.
    old = {
        k: v
        for k, v in data["per_target"][str(first.target)].items()
        if k
        not in (
            "gradient_norm",
            "curvature",
            "curvature_lower_bound",
            "curvature_method",
            "solver_steps",
            "solver_converged",
        )
    }
    legacy = TargetScore.from_dict(old)
    assert math.isnan(legacy.curvature) and legacy.curvature_method == "" and legacy.consistent
    # Files saved before the solver fields were renamed (they always held Lanczos counts) still load.
    saved = data["per_target"][str(first.target)]
    renamed = {
        {"solver_steps": "power_iterations", "solver_converged": "power_converged"}.get(k, k): v
        for k, v in saved.items()
    }
    assert "power_iterations" in renamed and "solver_steps" not in renamed
    assert TargetScore.from_dict(renamed) == first.per_target[first.target]


def test_untargeted_is_the_minimum_and_targeted_matches():
    model = SmoothMLP()
    x0 = torch.randn(8, generator=torch.Generator().manual_seed(5))
    result = clever_score(model, x0, radius=5.0, order=2, seed=0, **SMALL_SAMPLE)
    assert result.score == min(t.score for t in result.per_target.values())
    other = next(j for j in result.per_target if j != result.target)
    targeted = clever_score(model, x0, radius=5.0, order=2, target=other, seed=0, **SMALL_SAMPLE)
    assert list(targeted.per_target) == [other] and targeted.targeted


def test_unknown_curvature_method_is_rejected(linear_model):
    with pytest.raises(InvalidInputError, match="curvature"):
        clever_score(linear_model[0], torch.zeros(6), radius=1.0, order=2, curvature="hessian", **SMALL_SAMPLE)
