"""Many classes: fits skipped where their bracket cannot decide the minimum, batched gradients, progress."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pytest_clever import WeakFitWarning, clever_score
from pytest_clever.stats.evt import MAX_GAP_RANGES, endpoint_bracket, fit_endpoint
from pytest_clever._engine.first_order import UNFITTED, sample_targets, score_targets
from pytest_clever._engine.maxima import Problem
from pytest_clever.core.validation import check_settings


def ten_class_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 10)).eval()


def sampled(seed: int, n_batches: int = 40, batch_size: int = 16):
    model = ten_class_net(seed)
    x0 = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits0 = model(x0[None])[0]
    predicted = int(logits0.argmax())
    targets = [j for j in range(10) if j != predicted]
    margins0 = logits0[predicted] - logits0[targets]
    settings = check_settings(norm=2, radius=5.0, n_batches=n_batches, batch_size=batch_size, bounds=None, order=1)
    problem = Problem(model, x0, margins0, predicted, targets, seed)
    return sample_targets(problem, settings), targets, margins0.double().tolist(), settings


def test_bracket_holds_every_fit():
    rng = np.random.default_rng(0)
    maxima = np.stack([3.0 - rng.weibull(s, size=50) for s in (0.5, 1.0, 2.0, 5.0)], axis=1)
    maxima = np.concatenate([maxima, np.full((50, 1), 2.5)], axis=1)  # constant: the fallback
    low, high = endpoint_bracket(maxima)
    for t in range(maxima.shape[1]):
        fit = fit_endpoint(maxima[:, t])
        assert low[t] <= fit.endpoint <= high[t]
        top, spread = maxima[:, t].max(), np.ptp(maxima[:, t])
        assert low[t] == pytest.approx(top) and high[t] == pytest.approx(top + MAX_GAP_RANGES * spread)


def test_bracket_of_non_finite_maxima_is_unbounded():
    low, high = endpoint_bracket(np.array([[1.0, math.inf], [2.0, 1.0]]))
    assert low[1] == -math.inf and high[1] == math.inf and high[0] == pytest.approx(2.0 + MAX_GAP_RANGES)


@pytest.mark.parametrize("seed", range(6))
def test_skipping_fits_decides_exactly_as_fitting_everything(seed):
    samples, targets, margins, settings = sampled(seed)
    pruned = score_targets(samples, targets, margins, settings)
    maxima = samples.sampled.maxima.double().numpy()
    full = {}
    for t, j in enumerate(targets):
        endpoint = fit_endpoint(maxima[:, t]).endpoint
        full[j] = min(margins[t] / endpoint, settings.radius) if endpoint > 0 else settings.radius
    deciding = min(full, key=lambda j: (full[j], j))
    ours = min(pruned.values(), key=lambda s: (s.score, s.target))
    assert (ours.target, ours.score) == (deciding, full[deciding])
    for j, s in pruned.items():
        if s.fit_method == UNFITTED:
            assert s.score > full[deciding] and s.score <= full[j]  # a lower bound of the skipped fit
            assert s.sample_max == maxima[:, targets.index(j)].max() and not s.weak
            assert s.fit_reason.startswith("not fitted: cannot decide the minimum")
        else:
            assert s.score == full[j]
    assert list(pruned) == targets


def test_some_fits_are_skipped():
    skipped = sum(
        s.fit_method == UNFITTED for seed in range(6) for s in score_targets(*sampled(seed)).values()
    )
    assert skipped >= 10  # of 54 targets: the brackets of 10-class nets are narrow enough to prune


def test_unfitted_targets_survive_json_and_are_not_weak():
    model = ten_class_net(1)
    x0 = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1))
    result = clever_score(model, x0, radius=5.0, n_batches=40, batch_size=16, seed=3)
    unfitted = [s for s in result.per_target.values() if s.fit_method == UNFITTED]
    assert unfitted and result.per_target[result.target].fit_method != UNFITTED
    from pytest_clever.stats.results import CleverResult

    again = CleverResult.from_dict(result.to_dict())
    assert again.per_target[unfitted[0].target] == unfitted[0]
    assert not any("unfitted" in note or "not fitted" in note for note in result.notes)


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
