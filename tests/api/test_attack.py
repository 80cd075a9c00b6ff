"""attack_check: PGD inside the CLEVER ball finds exact distortions on linear models and catches overestimates."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from pytest_clever import AttackCheck, InvalidInputError, attack_check, attack_checks, clever_score, clever_scores
from pytest_clever.core.seeds import derive_seed

from ..helpers import SMALL_SAMPLE, exact_linear_score

pytestmark = pytest.mark.usefixtures("one_torch_thread")

X0 = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.2])


class Cliff(nn.Module):
    """Gentle margin slope except a steep drop beyond x_1 = 0.5, which samples of a 200-d ball miss."""

    def forward(self, x):
        margin = 1.0 - 0.01 * x[:, 0] - 100.0 * torch.relu(x[:, 0] - 0.5)
        return torch.stack([margin, torch.zeros_like(margin)], 1)


@pytest.mark.parametrize("norm", [1, 2, math.inf])
def test_finds_the_exact_minimal_distortion_of_a_linear_model(linear_model, norm):
    model, weight, bias = linear_model
    result = clever_score(model, X0, norm=norm, radius=10.0, seed=0, **SMALL_SAMPLE)
    check = attack_check(model, X0, result, seed=0)
    exact = exact_linear_score(weight, bias, X0, norm, 10.0)
    # No adversarial example can be closer than the exact distance; PGD gets within 2% of it.
    assert exact * (1 - 1e-4) <= check.distortion <= 1.02 * exact
    assert not check.contradicts and check.found and check.ratio >= 1
    assert check.norm == float(norm) and check.score == result.score
    assert model(check.example.unsqueeze(0)).argmax() == check.adversarial_class != result.predicted
    assert torch.linalg.vector_norm(check.example - X0, ord=norm) == pytest.approx(check.distortion)


def test_targeted_result_is_attacked_towards_its_target(linear_model):
    model, weight, bias = linear_model
    predicted = int((weight @ X0 + bias).argmax())
    target = next(j for j in range(4) if j != predicted)
    result = clever_score(model, X0, radius=10.0, target=target, seed=0, **SMALL_SAMPLE)
    check = attack_check(model, X0, result)
    exact = exact_linear_score(weight, bias, X0, 2, 10.0, target)
    assert check.adversarial_class == target and check.targeted
    assert exact * (1 - 1e-4) <= check.distortion <= 1.02 * exact
    logits = model(check.example.unsqueeze(0))[0]
    assert logits[target] > logits[predicted]


def test_catches_a_score_that_overestimates():
    x0 = torch.zeros(200)
    result = clever_score(Cliff(), x0, radius=1.0, seed=0, **SMALL_SAMPLE)
    assert result.score == 1.0  # the samples never saw the cliff
    check = attack_check(Cliff(), x0, result, seed=0)
    assert check.contradicts and check.adversarial_class == 1
    # The exact minimal distortion solves 1 - 0.01 t - 100 (t - 0.5) = 0: t = 0.50995.
    assert 0.50995 <= check.distortion <= 0.515
    assert "contradicts=True" in repr(check) and "distortion=0.51" in repr(check)
    assert check.to_dict()["contradicts"] is True and "example" not in check.to_dict()


def test_an_inflated_score_is_contradicted_and_an_exact_one_is_not(linear_model):
    model, _, _ = linear_model
    result = clever_score(model, X0, radius=10.0, seed=0, **SMALL_SAMPLE)
    assert not attack_check(model, X0, result).contradicts
    inflated = dataclasses.replace(result, score=1.1 * result.score)
    assert attack_check(model, X0, inflated).contradicts


def test_nothing_found_inside_a_small_radius(linear_model):
    model, weight, bias = linear_model
    radius = exact_linear_score(weight, bias, X0, 2, 10.0) / 2
    result = clever_score(model, X0, radius=radius, seed=0, **SMALL_SAMPLE)
    check = attack_check(model, X0, result)
    assert check.distortion is None and check.example is None and check.adversarial_class is None
    assert not check.contradicts and check.ratio == math.inf
    assert "none within radius" in repr(check)


def test_respects_the_bounds_of_the_result():
    # The cliff lies at x_1 = 0.51, outside the valid range: the attack must not step there.
    x0 = torch.zeros(200)
    result = clever_score(Cliff(), x0, radius=1.0, bounds=(-1.0, 0.505), seed=0, **SMALL_SAMPLE)
    check = attack_check(Cliff(), x0, result)
    assert check.distortion is None and not check.contradicts


def test_deterministic_leaves_global_rng_and_model_untouched(linear_model):
    model, _, _ = linear_model
    result = clever_score(model, X0, norm=math.inf, radius=10.0, seed=0, **SMALL_SAMPLE)
    model.train()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = attack_check(model, X0, result, seed=5, restarts=3, steps=20)
    again = attack_check(model, X0, result, seed=5, restarts=3, steps=20)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == again and torch.equal(first.example, again.example)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())


def test_a_result_of_another_input_is_rejected(linear_model):
    model, weight, bias = linear_model
    result = clever_score(model, X0, radius=10.0, seed=0, **SMALL_SAMPLE)
    other = next(
        x
        for x in torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
        if int((weight @ x + bias).argmax()) != result.predicted
    )
    with pytest.raises(InvalidInputError, match="pass the input the result belongs to"):
        attack_check(model, other, result)
    with pytest.raises(InvalidInputError, match="steps must be an integer >= 1"):
        attack_check(model, X0, result, steps=0)


def test_attack_checks_pairs_inputs_and_results(linear_model):
    model, weight, bias = linear_model
    xs = torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    report = clever_scores(model, xs, radius=10.0, seed=1, **SMALL_SAMPLE)
    checks = attack_checks(model, xs, report, seed=7)
    assert [c.seed for c in checks] == [derive_seed(7, i) for i in range(3)]
    assert all(isinstance(c, AttackCheck) and not c.contradicts for c in checks)
    for c, x in zip(checks, xs, strict=True):
        assert c.distortion == pytest.approx(exact_linear_score(weight, bias, x, 2, 10.0), rel=0.02)
    with pytest.raises(InvalidInputError, match="got 2 inputs for 3 results"):
        attack_checks(model, xs[:2], report)


def test_a_score_over_a_subset_of_classes_is_attacked_towards_that_subset_only(linear_model):
    """An adversarial example for a class outside ``targets`` contradicts nothing: it was not scored."""
    model, weight, bias = linear_model
    logits = weight @ X0 + bias
    c = int(logits.argmax())
    exact = {j: exact_linear_score(weight, bias, X0, 2, 10.0, target=j) for j in range(len(logits)) if j != c}
    nearest = min(exact, key=exact.get)
    subset = sorted(j for j in exact if j != nearest)
    closest_in_subset = min(exact[j] for j in subset)
    assert len(subset) == 2 and closest_in_subset > 1.05 * exact[nearest]
    result = clever_score(model, X0, norm=2, radius=10.0, seed=0, targets=subset, **SMALL_SAMPLE)
    assert result.score == pytest.approx(closest_in_subset, rel=1e-4)
    check = attack_check(model, X0, result, seed=0)
    assert check.adversarial_class in subset and not check.contradicts
    assert closest_in_subset * (1 - 1e-4) <= check.distortion <= 1.02 * closest_in_subset
    everything = attack_check(model, X0, clever_score(model, X0, norm=2, radius=10.0, seed=0, **SMALL_SAMPLE), seed=0)
    assert everything.adversarial_class == nearest and everything.distortion <= 1.02 * exact[nearest]
