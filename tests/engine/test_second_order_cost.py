"""Second order's cost controls: the chunk sizer's budget, the activation-memory probe, Lanczos row pruning."""

import math

import pytest
import torch

from pytest_clever import clever_score
from pytest_clever._engine import maxima
from pytest_clever._engine.curvature import batch_max_rule, krylov_slack, value_bounds
from pytest_clever._engine.lanczos import RitzState, lanczos
from pytest_clever._engine.memory import bytes_per_row
from pytest_clever.extras.digits import DIGITS_BOUNDS, DigitsCNN, cached_digits_cnn, load_digits_data

CPU = torch.device("cpu")


def test_chunk_sizer_takes_the_smaller_of_the_row_cap_and_the_memory_budget():
    mib = 2**20
    assert maxima.default_chunk_size(1024, 1, CPU, budget=256 * mib) == maxima.CPU_CHUNK  # rows cap
    assert maxima.default_chunk_size(1024, 9, CPU, budget=256 * mib) == maxima.CPU_CHUNK // 9
    assert maxima.default_chunk_size(10 * mib, 9, CPU, budget=256 * mib) == 25  # memory caps
    assert maxima.default_chunk_size(300 * mib, 1, CPU, budget=256 * mib) == 1  # never below one point
    assert maxima.default_chunk_size(mib, 1, CPU) == maxima.CHUNK_BYTES // mib  # CPU default budget


def test_activation_probe_scales_with_the_model_width_and_order():
    x = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    narrow = DigitsCNN("softplus", width=8).eval()
    wide = DigitsCNN("softplus", width=32).eval()
    first_narrow, first_wide = (bytes_per_row(m, x, 0, [1, 2], order=1) for m in (narrow, wide))
    second_narrow = bytes_per_row(narrow, x, 0, [1, 2], order=2)
    # Conv activations grow 4x with the width (the 64-unit linear layer does not).
    assert 3.0 < first_wide / first_narrow < 4.2
    # Double backward keeps the backward pass's tensors too.
    assert 1.5 < second_narrow / first_narrow < 3.0
    # A linear model saves almost nothing but still costs its input.
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    assert bytes_per_row(linear, x, 0, [1, 2], order=1) == pytest.approx(2 * 64 * 4, rel=0.5)


def test_krylov_slack_matches_the_random_start_bound():
    eps = krylov_slack(100, 30, failure=1e-6)
    assert 1.648 * math.sqrt(100) * math.exp(-math.sqrt(eps) * 59) == pytest.approx(1e-6)
    assert math.isinf(krylov_slack(100, 3, failure=1e-6))
    assert krylov_slack(100, 60) < krylov_slack(100, 30)


@pytest.mark.parametrize("method", ["spectral", "negative"])
def test_upper_bounds_hold_and_pruning_keeps_group_maxima(method):
    gen = torch.Generator().manual_seed(0)
    rows, d = 24, 120
    a = torch.randn(rows, d, d, generator=gen, dtype=torch.float64)
    h = (a + a.transpose(1, 2)) / 2 * torch.linspace(0.5, 1.5, rows, dtype=torch.float64).view(-1, 1, 1)
    eig = torch.linalg.eigvalsh(h)
    exact = eig.abs().amax(1) if method == "spectral" else (-eig[:, 0]).clamp_min(0)
    hvp = lambda v: torch.einsum("rij,rj->ri", h, v)  # noqa: E731
    start = torch.randn(rows, d, generator=gen, dtype=torch.float64)
    finite = []

    def check(state: RitzState) -> torch.Tensor:
        lower, upper = value_bounds(state, method, d)
        assert bool((lower <= exact + 1e-9).all())
        assert bool((upper >= exact - 1e-9).all())
        finite.append(bool(torch.isfinite(upper).all()))
        return torch.zeros_like(state.running)

    lanczos(hvp, start, tol=1e-10, max_steps=d, may_stop=check)
    assert any(finite)  # the check is not vacuous

    groups = torch.arange(rows) // 6
    floor = torch.full((4,), -math.inf, dtype=torch.float64)
    pruned = lanczos(hvp, start, tol=1e-10, max_steps=d, may_stop=batch_max_rule(groups, floor, method, d))
    value = (
        torch.maximum(pruned.lambda_max.abs(), pruned.lambda_min.abs())
        if method == "spectral"
        else (-pruned.lambda_min).clamp_min(0)
    )
    got = torch.zeros(4, dtype=torch.float64).scatter_reduce(0, groups, value, "amax")
    want = torch.zeros(4, dtype=torch.float64).scatter_reduce(0, groups, exact, "amax")
    assert torch.allclose(got, want, rtol=1e-8)


def test_creeping_ritz_values_run_until_their_residuals_are_small():
    """A spectrum without a gap at its top: Ritz values creep (steady at 1e-3 long before they converge).

    Eigenvalues ``1 - 2 (i / d)^2`` crowd towards 1. Steadiness alone stops every row 3.5e-3 low (a
    higher, unsafe score); the residual rule keeps the rows going until the top is within 1e-3.
    """
    d = 2000
    spectrum = 1 - 2 * (torch.arange(d, dtype=torch.float64) / d) ** 2
    hvp = lambda v: v * spectrum  # noqa: E731
    start = torch.randn(4, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    steady_only = lanczos(hvp, start, residual_tol=math.inf)
    default = lanczos(hvp, start)
    assert (1 - steady_only.lambda_max).min() > 2e-3
    assert (1 - default.lambda_max).max() < 1e-3 and (default.lambda_max <= 1 + 1e-12).all()
    assert default.row_steps.min() > 2 * steady_only.row_steps.max()


def test_the_residual_rule_costs_no_steps_where_the_spectrum_has_a_gap():
    """Well separated extremes: once the values are steady, the residuals are small too."""
    gen = torch.Generator().manual_seed(5)
    d = 400
    spectrum = torch.cat([torch.tensor([3.0, -2.5]), torch.rand(d - 2, generator=gen, dtype=torch.float64) - 0.5])
    hvp = lambda v: v * spectrum.to(v.dtype)  # noqa: E731
    start = torch.randn(6, d, generator=gen, dtype=torch.float64)
    steady_only = lanczos(hvp, start, residual_tol=math.inf)
    default = lanczos(hvp, start)
    assert torch.equal(default.row_steps, steady_only.row_steps)
    assert torch.allclose(default.lambda_max, torch.full((6,), 3.0, dtype=torch.float64), rtol=1e-9)
    assert torch.allclose(default.lambda_min, torch.full((6,), -2.5, dtype=torch.float64), rtol=1e-9)


def test_lanczos_basis_growth_and_row_removal_change_no_value(monkeypatch):
    """The basis grows in place (doubling) and drops stopped rows: values equal a run that never grows."""
    import pytest_clever._engine.lanczos as lanczos_module

    gen = torch.Generator().manual_seed(3)
    rows, d = 10, 50
    a = torch.randn(rows, d, d, generator=gen, dtype=torch.float64)
    h = (a + a.transpose(1, 2)) / 2
    hvp = lambda v: torch.einsum("rij,rj->ri", h, v)  # noqa: E731
    start = torch.randn(rows, d, generator=gen, dtype=torch.float64)
    stop_half = lambda state: state.running & (torch.arange(rows) % 2 == 1) & (state.step >= 7)  # noqa: E731
    runs = []
    for capacity in (1, 4, d):
        monkeypatch.setattr(lanczos_module, "INITIAL_CAPACITY", capacity)
        runs.append(lanczos(hvp, start, tol=0.0, max_steps=d, may_stop=stop_half))
    for run in runs[:2]:
        assert torch.equal(run.lambda_max, runs[-1].lambda_max) and torch.equal(run.lambda_min, runs[-1].lambda_min)
    # Rows that ran to the end spanned the whole space: their Ritz values are the eigenvalues.
    eig = torch.linalg.eigvalsh(h)
    full = torch.arange(rows) % 2 == 0
    assert torch.allclose(runs[-1].lambda_max[full], eig[full, -1], rtol=1e-10)
    assert torch.allclose(runs[-1].lambda_min[full], eig[full, 0], rtol=1e-10)
    assert runs[-1].steps == d


def test_restrict_frees_the_whole_graph_and_gives_the_same_products():
    """The rebuilt operator on a subset of rows equals those rows of the full one; the old graph is freed."""
    from pytest_clever._engine.curvature import MarginHessians

    model = DigitsCNN("softplus").eval()
    points = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    hessians = MarginHessians(model, points, 0, [1, 2])
    v = torch.randn(6, 64, generator=torch.Generator().manual_seed(1))
    full = hessians.hvp(v)
    rows = torch.tensor([1, 4])
    smaller = hessians.restrict(rows)
    # Nothing of the first graph stays reachable (the margins held its forward half).
    assert not any(t.requires_grad for t in (hessians._grads, hessians._margins, hessians._logit_scale))
    assert torch.allclose(smaller(v[rows]), full[rows], rtol=1e-5, atol=1e-7)


# One case in the default run; the other two (CI) cover the negative curvature and another model.
CASES = [
    ("softplus", 0, "spectral"),
    pytest.param("softplus", 1, "negative", marks=pytest.mark.slow),
    pytest.param("tanh", 0, "spectral", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("activation,index,curvature", CASES)
def test_stopping_rows_early_leaves_second_order_scores_as_they_were(activation, index, curvature, monkeypatch):
    """The reference is the same run with every row iterated to convergence (no early stops)."""
    import pytest_clever._engine.second_order as second_order

    x = load_digits_data().x_test[index]
    settings = dict(order=2, curvature=curvature, radius=2.0, bounds=DIGITS_BOUNDS, seed=0, n_batches=10, batch_size=16)
    pruned = clever_score(cached_digits_cnn(activation), x, **settings)
    every_row = second_order.margin_curvatures

    def without_early_stops(*args, groups=None, floor=None, **kwargs):
        return every_row(*args, **kwargs)

    monkeypatch.setattr(second_order, "margin_curvatures", without_early_stops)
    reference = clever_score(cached_digits_cnn(activation), x, **settings)
    assert pruned.score == pytest.approx(reference.score, rel=1e-4)
    assert pruned.batch_maxima == pytest.approx(reference.batch_maxima, rel=1e-4)
