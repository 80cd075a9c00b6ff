"""First order on many classes: fits skipped where their bracket cannot decide the minimum, with the same result."""

import pytest
import torch
from torch import nn

from pytest_clever import clever_score
from pytest_clever._engine.first_order import UNFITTED, sample_targets, score_targets
from pytest_clever._engine.maxima import Problem
from pytest_clever.core.validation import check_settings
from pytest_clever.stats.evt import fit_endpoint


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
    skipped = sum(s.fit_method == UNFITTED for seed in range(6) for s in score_targets(*sampled(seed)).values())
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
