"""Margin gradients of many classes: batched over targets, the same bits as one target at a time; a loop fallback."""

import math
import warnings

import pytest
import torch
from torch import nn

from pytest_clever import WeakFitWarning, clever_score


def small_conv(classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(36, classes)
    ).eval()


@pytest.mark.parametrize("ord", [1.0, 2.0, math.inf])
def test_batched_and_looped_gradient_norms_are_the_same_bits(ord):
    from pytest_clever._engine.gradients import margin_gradient_norms, margin_gradients

    model, points = small_conv(40), torch.rand(5, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    targets = [j for j in range(40) if j != 3]
    logits, grads = margin_gradients(model, points, 3, targets)
    reference = torch.linalg.vector_norm(grads.flatten(2), ord=ord, dim=2)
    for block in (1, 7, 32, 64):
        out_logits, norms = margin_gradient_norms(model, points, 3, targets, ord, block)
        assert torch.equal(out_logits, logits) and torch.equal(norms, reference), block


def test_targets_per_pass_rule():
    from pytest_clever._engine.gradients import CPU_BATCHED_FROM, CPU_TARGET_BLOCK, targets_per_pass

    small, large = torch.zeros(3, 32, 32), torch.zeros(3, 64, 64)
    assert targets_per_pass(CPU_BATCHED_FROM - 1, small) == 1
    assert targets_per_pass(CPU_BATCHED_FROM, small) == CPU_TARGET_BLOCK
    assert targets_per_pass(999, large) == 1
    assert targets_per_pass(999, small.to("meta")) == 1


class NumpyBackward(torch.autograd.Function):
    """Identity whose backward goes through numpy: fine in a loop, impossible under vmap."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.from_numpy(grad.detach().numpy().copy())


class NumpyGuarded(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.net = small_conv(classes)

    def forward(self, x):
        return self.net(NumpyBackward.apply(x))


def test_a_backward_that_vmap_cannot_run_falls_back_to_the_loop(monkeypatch):
    import pytest_clever._engine.first_order as first_order
    from pytest_clever._engine.gradients import CPU_BATCHED_FROM

    model = NumpyGuarded(CPU_BATCHED_FROM + 1)
    x0 = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    kwargs = dict(radius=0.5, n_batches=10, batch_size=2, seed=1, targets="all")
    with warnings.catch_warnings():  # 10 batches of 2 points: the fit may well be weak; not the point here
        warnings.simplefilter("ignore", WeakFitWarning)
        batched = clever_score(model, x0, **kwargs)
        monkeypatch.setattr(first_order, "targets_per_pass", lambda n, x: 1)
        looped = clever_score(model, x0, **kwargs)
    assert batched.batch_maxima == looped.batch_maxima and batched.score == looped.score
    assert len(batched.per_target) == CPU_BATCHED_FROM
