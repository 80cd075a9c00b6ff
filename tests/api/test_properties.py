"""Properties of the score that hold for every model and input, checked with hypothesis on tiny models.

Linear-model exactness of untargeted scores lives in test_linear_exact.py; here: the cap at R,
invariance to shifting and scaling the logits, targeted exactness (with bounds), and the attack
check agreeing with the exact distance on random linear models.
"""

import math
import warnings

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from torch import nn

from pytest_clever import attack_check, clever_score

from ..helpers import SMALL_SAMPLE, Linear, exact_linear_score

pytestmark = pytest.mark.usefixtures("one_torch_thread")

seeds = st.integers(0, 2**31 - 1)
norms = st.sampled_from([1, 2, math.inf])


class Shifted(nn.Module):
    """``scale * model(x) + shift``: the same classifier, other logits."""

    def __init__(self, model, scale=1.0, shift=0.0):
        super().__init__()
        self.model, self.scale, self.shift = model, scale, shift

    def forward(self, x):
        return self.scale * self.model(x) + self.shift


def tiny_mlp(seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model.eval()


def model_and_input(seed: int):
    model = tiny_mlp(seed)
    x0 = torch.randn(3, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        top2 = model(x0.unsqueeze(0))[0].topk(2).values
    assume(float(top2[0] - top2[1]) > 1e-2)  # near ties: the relative comparisons below degenerate
    return model, x0


def score(model, x0, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weak fits on 10 batch maxima are expected here
        return clever_score(model, x0, seed=0, **SMALL_SAMPLE, **kw)


@settings(max_examples=15)
@given(seed=seeds, norm=norms, radius=st.floats(1e-3, 50.0))
def test_scores_never_exceed_the_radius(seed, norm, radius):
    model, x0 = model_and_input(seed)
    result = score(model, x0, norm=norm, radius=radius)
    assert 0 < result.score <= radius
    assert all(0 < t.score <= radius for t in result.per_target.values())
    assert result.score == min(t.score for t in result.per_target.values())


@settings(max_examples=10)
@given(seed=seeds, norm=norms, shift=st.floats(-10.0, 10.0))
def test_adding_a_constant_to_all_logits_changes_nothing(seed, norm, shift):
    model, x0 = model_and_input(seed)
    base = score(model, x0, norm=norm, radius=5.0)
    shifted = score(Shifted(model, shift=shift), x0, norm=norm, radius=5.0)
    assert (shifted.predicted, shifted.target) == (base.predicted, base.target)
    for j, t in base.per_target.items():
        assert shifted.per_target[j].lipschitz == t.lipschitz  # identical gradients, identical fit
        assert shifted.per_target[j].score == pytest.approx(t.score, rel=1e-4)


@settings(max_examples=10)
@given(seed=seeds, norm=norms, scale=st.floats(0.05, 20.0))
def test_scaling_all_logits_changes_nothing(seed, norm, scale):
    # Margin and Lipschitz constant scale alike, so g / L is scale-free; the EVT fit
    # normalises the maxima, so its end point scales along.
    model, x0 = model_and_input(seed)
    base = score(model, x0, norm=norm, radius=5.0)
    scaled = score(Shifted(model, scale=scale), x0, norm=norm, radius=5.0)
    assert (scaled.predicted, scaled.target) == (base.predicted, base.target)
    for j, t in base.per_target.items():
        assert scaled.per_target[j].lipschitz == pytest.approx(scale * t.lipschitz, rel=1e-3)
        assert scaled.per_target[j].score == pytest.approx(t.score, rel=1e-3)


def random_linear(seed: int, k: int, d: int):
    gen = torch.Generator().manual_seed(seed)
    weight, bias, x0 = torch.randn(k, d, generator=gen), torch.randn(k, generator=gen), torch.rand(d, generator=gen)
    logits = weight @ x0 + bias
    assume(float(logits.topk(2).values.diff().abs()) > 1e-3)
    return Linear(weight, bias), weight, bias, x0


@settings(max_examples=20)
@given(seed=seeds, norm=norms, k=st.integers(2, 5), d=st.integers(1, 8), data=st.data())
def test_targeted_scores_are_exact_on_linear_models_even_with_bounds(seed, norm, k, d, data):
    model, weight, bias, x0 = random_linear(seed, k, d)
    predicted = int((weight @ x0 + bias).argmax())
    target = data.draw(st.sampled_from([j for j in range(k) if j != predicted]))
    # Clipping samples to [0, 1] moves them, but a linear margin's gradient is the same everywhere.
    result = clever_score(model, x0, norm=norm, radius=20.0, target=target, bounds=(0.0, 1.0), seed=0, **SMALL_SAMPLE)
    assert result.target == target and list(result.per_target) == [target]
    assert result.score == pytest.approx(exact_linear_score(weight, bias, x0, norm, 20.0, target), rel=0.01)


@settings(max_examples=8)
@given(seed=seeds, norm=st.sampled_from([2, math.inf]), k=st.integers(2, 4), d=st.integers(1, 6))
@example(seed=981, norm=2, k=3, d=3)  # the nearest class is not the largest other logit at x0
def test_attack_finds_the_exact_distance_of_random_linear_models(seed, norm, k, d):
    model, weight, bias, x0 = random_linear(seed, k, d)
    exact = exact_linear_score(weight, bias, x0, norm, math.inf)
    result = clever_score(model, x0, norm=norm, radius=2 * exact, seed=0, **SMALL_SAMPLE)
    check = attack_check(model, x0, result, steps=30, restarts=2)
    assert not check.contradicts
    assert exact * (1 - 1e-4) <= check.distortion <= 1.02 * exact
