"""The engine's seams: one sampling loop for both orders, one seed scheme, one validator, one notes ladder."""

import hashlib
import math

import pytest
import torch
from torch import nn

from pytest_clever import InvalidInputError, TargetScore, clever_score, clever_scores
from pytest_clever._engine import first_order
from pytest_clever._engine import maxima
from pytest_clever._engine import second_order
from pytest_clever._engine.diagnostics import score_notes
from pytest_clever.core.seeds import derive_seed
from pytest_clever.core.settings import OPTIONS
from pytest_clever.core.validation import check_settings


class SmoothMLP(nn.Module):
    def __init__(self, d: int = 4, k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Linear(d, 16), nn.Softplus(), nn.Linear(16, k))

    def forward(self, x):
        return self.net(x)


def _run(order_module, monkeypatch, chunk_size, **extra):
    """Sample with ``chunk_size`` from a fixed pool of points (so the chunking is all that differs)."""
    model = SmoothMLP().double().eval().requires_grad_(False)
    x0 = torch.tensor([0.2, -0.1, 0.3, 0.05], dtype=torch.float64)
    settings = check_settings(norm=2, radius=0.5, n_batches=10, batch_size=6, bounds=None)
    pool = (x0 + 0.5 * torch.rand(maxima.sample_block(x0), 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) - 0.25)
    drawn = []

    def fixed_points(x, n, norm, radius, generator, bounds):
        start = sum(drawn)
        drawn.append(n)
        return pool[start : start + n]

    monkeypatch.setattr(maxima, "sample_ball", fixed_points)
    with torch.no_grad():
        logits0 = model(x0.unsqueeze(0))[0]
    predicted = int(logits0.argmax())
    targets = [j for j in range(3) if j != predicted]
    problem = maxima.Problem(model, x0, logits0[predicted] - logits0[targets], predicted, targets,
                             0, chunk_size)
    samples = order_module.sample_targets(problem, settings, **extra)
    # The points come in blocks of the random stream, whatever the chunking: one block holds all 60.
    assert drawn == [maxima.sample_block(x0)]
    return samples


@pytest.mark.parametrize("order_module, extra", [(first_order, {}), (second_order, {"curvature": "spectral"})])
def test_both_orders_give_the_same_maxima_in_chunks_as_in_one_chunk(order_module, extra, monkeypatch):
    whole = _run(order_module, monkeypatch, 60, **extra)
    chunked = _run(order_module, monkeypatch, 7, **extra)  # chunks straddle batch boundaries
    assert whole.sampled.maxima.shape == (10, 2) and bool((whole.sampled.maxima > 0).all())
    # Lanczos start vectors are drawn per point, so they do not depend on the chunking either.
    torch.testing.assert_close(chunked.sampled.maxima, whole.sampled.maxima, rtol=1e-9, atol=0)
    torch.testing.assert_close(chunked.sampled.slopes, whole.sampled.slopes, rtol=1e-9, atol=0)
    assert whole.sampled.margin_varies and whole.sampled.zero_share == chunked.sampled.zero_share == 0.0
    if order_module is second_order:
        torch.testing.assert_close(chunked.curvature_lower_bound, whole.curvature_lower_bound, rtol=1e-9, atol=0)
        torch.testing.assert_close(chunked.gradient_change, whole.gradient_change, rtol=1e-9, atol=0)


def test_one_chunk_sizer_for_both_orders():
    cpu = torch.device("cpu")
    # First order: one row per point; second order: one row per point and target.
    assert maxima.default_chunk_size(100, 1, cpu) == maxima.CPU_CHUNK
    assert maxima.default_chunk_size(100, 9, cpu) == maxima.CPU_CHUNK // 9
    assert maxima.default_chunk_size(maxima.CHUNK_BYTES // 10, 1, cpu) == 10
    assert first_order.chunk_size_for(9, torch.zeros(1, 8, 8)) == 1024


# --- seeds -------------------------------------------------------------------------------


def test_derive_seed_is_the_sha256_text_scheme():
    digest = hashlib.sha256("5\x1ftests/test_a.py::test_b\x1f\x1f0".encode()).digest()
    assert derive_seed(5, "tests/test_a.py::test_b", "", 0) == int.from_bytes(digest[:8], "big") >> 1
    seeds = {derive_seed(0, i) for i in range(100)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("bad", [-1, 2**63, 1.0, True, "3"])
def test_seeds_are_validated_in_one_place(bad, linear_model):
    with pytest.raises(InvalidInputError, match="seed must be an integer"):
        derive_seed(bad, "x")
    with pytest.raises(InvalidInputError, match="seed must be an integer"):
        clever_score(linear_model[0], torch.zeros(6), radius=1.0, seed=bad, n_batches=10, batch_size=4)


def test_clever_scores_seeds_each_input_with_derive_seed(linear_model):
    model = linear_model[0]
    xs = torch.randn(2, 6, generator=torch.Generator().manual_seed(2))
    report = clever_scores(model, xs, radius=1.0, seed=11, n_batches=10, batch_size=8)
    for i, result in enumerate(report):
        assert result.seed == derive_seed(11, i)
        alone = clever_score(model, xs[i], radius=1.0, seed=derive_seed(11, i), n_batches=10, batch_size=8)
        assert alone.per_target == result.per_target


# --- one validator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [("radius", -1.0), ("radius", math.nan), ("n_batches", 5), ("batch_size", 0), ("order", 3), ("seed", -2),
     ("bounds", (1.0, 0.0))],
)
def test_the_api_and_the_settings_parsers_raise_the_same_error(name, value, linear_model):
    with pytest.raises(InvalidInputError) as from_api:
        clever_score(linear_model[0], torch.zeros(6), **{"radius": 1.0, name: value})
    with pytest.raises(InvalidInputError) as from_settings:
        OPTIONS[name].parse(value)
    assert str(from_api.value) == str(from_settings.value) and str(from_api.value).startswith(name)
    with pytest.raises(ValueError, match=f"^marker: {name} must"):
        OPTIONS[name].check(value, "marker")


def test_settings_parsers_accept_ini_text():
    assert OPTIONS["n_batches"].parse("12") == 12 and OPTIONS["n_batches"].parse(12.0) == 12
    assert OPTIONS["radius"].parse("0.5") == 0.5 and OPTIONS["order"].parse(" 2 ") == 2
    assert OPTIONS["bounds"].parse("0, 1") == (0.0, 1.0) and OPTIONS["seed"].parse("7") == 7
    with pytest.raises(InvalidInputError, match="n_batches must be an integer >= 10, got 12.5"):
        OPTIONS["n_batches"].parse("12.5")
    with pytest.raises(InvalidInputError, match="radius must be a number, got 'wide'"):
        OPTIONS["radius"].parse("wide")


# --- one notes ladder ------------------------------------------------------------------------


def _target(**fields):
    base = dict(target=1, score=0.5, margin=1.0, lipschitz=2.0, lipschitz_lower_bound=0.0, sample_max=2.0,
                fit_method="weibull", shape=3.0, loc=-2.0, scale=1.0, ks_statistic=0.1, ks_pvalue=0.5)
    return TargetScore(**{**base, **fields})


@pytest.mark.parametrize("order", [1, 2])
def test_both_orders_share_the_weak_fit_and_fallback_notes(order):
    second = dict(curvature=2.0, curvature_lower_bound=0.0, curvature_method="spectral", solver_converged=1.0)
    extra = second if order == 2 else {}
    assert score_notes({1: _target(**extra)}, 1, radius=1.0, order=order) == ()
    (weak,) = score_notes({1: _target(ks_pvalue=0.01, **extra)}, 1, radius=1.0, order=order)
    assert "weak Weibull fit" in weak and "KS p-value 0.01" in weak and "Troubleshooting" in weak
    fallback = _target(fit_method="max", fit_reason="every Weibull fit diverged", **extra)
    (note,) = score_notes({1: fallback}, 1, radius=1.0, order=order)
    what = "curvature" if order == 2 else "Lipschitz"
    assert f"the sample maximum 2 was used as {what} estimate" in note
    exact = _target(fit_method="max", fit_reason="all batch maxima are equal", **extra)
    assert not exact.weak and score_notes({1: exact}, 1, radius=1.0, order=order) == ()
