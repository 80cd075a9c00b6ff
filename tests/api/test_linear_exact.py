"""Exactness on linear models, where the Lipschitz constant of every margin is known in closed form."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_clever import clever_score, clever_scores

from ..helpers import SMALL_SAMPLE, Linear, exact_linear_score


@pytest.mark.parametrize("norm", [1, 2, math.inf])
def test_untargeted_score_matches_the_closed_form(linear_model, norm):
    model, weight, bias = linear_model
    x0 = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.2])
    result = clever_score(model, x0, norm=norm, radius=10.0, seed=0, **SMALL_SAMPLE)
    expected = exact_linear_score(weight, bias, x0, norm, 10.0)
    assert result.score == pytest.approx(expected, rel=0.01)
    assert result.score < 10.0  # not capped: the test would be vacuous otherwise


@pytest.mark.parametrize("norm", [1, 2, math.inf])
def test_targeted_scores_match_the_closed_form_for_every_class(linear_model, norm):
    model, weight, bias = linear_model
    x0 = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.2])
    predicted = int((weight @ x0 + bias).argmax())
    for j in range(4):
        if j == predicted:
            continue
        result = clever_score(model, x0, norm=norm, radius=10.0, target=j, seed=0, **SMALL_SAMPLE)
        assert result.target == j and result.targeted
        assert list(result.per_target) == [j]
        assert result.score == pytest.approx(exact_linear_score(weight, bias, x0, norm, 10.0, j), rel=0.01)


def test_untargeted_is_the_minimum_of_the_targeted_scores(linear_model):
    model, _, _ = linear_model
    x0 = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.2])
    result = clever_score(model, x0, radius=10.0, seed=0, **SMALL_SAMPLE)
    assert result.score == min(t.score for t in result.per_target.values())
    assert result.per_target[result.target].score == result.score
    assert result.predicted not in result.per_target
    assert len(result.per_target) == 3


def test_score_is_capped_at_the_radius(linear_model):
    model, weight, bias = linear_model
    x0 = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.2])
    radius = exact_linear_score(weight, bias, x0, 2, 100.0) / 2
    result = clever_score(model, x0, radius=radius, seed=0, **SMALL_SAMPLE)
    assert result.score == radius


def test_lipschitz_estimate_is_the_gradient_dual_norm(linear_model):
    model, weight, bias = linear_model
    x0 = torch.zeros(6)
    result = clever_score(model, x0, norm=2, radius=1.0, seed=0, **SMALL_SAMPLE)
    c = result.predicted
    for j, t in result.per_target.items():
        assert t.lipschitz == pytest.approx(float(torch.linalg.vector_norm(weight[c] - weight[j])), rel=1e-4)
        assert t.margin == pytest.approx(float((weight[c] - weight[j]) @ x0 + bias[c] - bias[j]), rel=1e-4)
        # The samples can never prove a linear margin steeper than it is.
        assert t.lipschitz_lower_bound <= t.lipschitz * (1 + 1e-4)
    assert result.consistent


def test_clever_scores_on_linear_model_match_closed_form_per_input(linear_model):
    model, weight, bias = linear_model
    xs = torch.randn(5, 6, generator=torch.Generator().manual_seed(3))
    report = clever_scores(model, xs, radius=10.0, seed=1, **SMALL_SAMPLE)
    expected = [exact_linear_score(weight, bias, x, 2, 10.0) for x in xs]
    assert report.scores.tolist() == pytest.approx(expected, rel=0.01)
    assert report.min == pytest.approx(min(expected), rel=0.01)


matrices = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=25)
@given(
    seed=matrices,
    norm=st.sampled_from([1, 2, math.inf]),
    k=st.integers(2, 5),
    d=st.integers(1, 8),
    radius=st.floats(0.05, 20.0),
)
def test_linear_exactness_holds_for_random_models(seed, norm, k, d, radius):
    gen = torch.Generator().manual_seed(seed)
    weight, bias, x0 = torch.randn(k, d, generator=gen), torch.randn(k, generator=gen), torch.randn(d, generator=gen)
    model = Linear(weight, bias)
    with torch.no_grad():
        logits = model(x0.unsqueeze(0))[0]
    top2 = logits.topk(2).values
    if float(top2[0] - top2[1]) < 1e-3:
        return  # a near tie: scores near 0 are compared relatively, skip the degenerate case
    result = clever_score(model, x0, norm=norm, radius=radius, seed=0, **SMALL_SAMPLE)
    expected = exact_linear_score(weight, bias, x0, norm, radius)
    assert result.score == pytest.approx(expected, rel=0.01)
    assert 0 < result.score <= radius
