"""Screening of target classes in the engine: the survivors' maxima and the deciding score are those of fitting all."""

import inspect
import json
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch
from torch import nn

from pytest_clever import clever_score, clever_scores
from pytest_clever._engine.first_order import SCREENED, rounds
from pytest_clever._engine.maxima import Problem
from pytest_clever.core.options import ScoreOptions
from pytest_clever.core.validation import SCREEN_POINTS, check_settings
from pytest_clever.errors import InvalidInputError
from pytest_clever.stats.results import CleverResult

CLASSES = 80


def many_class_net(seed: int = 0, classes: int = CLASSES) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, classes)).eval()


def an_input(seed: int = 0) -> torch.Tensor:
    return torch.randn(20, generator=torch.Generator().manual_seed(seed))


SETTINGS = {"radius": 2.0, "n_batches": 12, "batch_size": 64}


def score(screen: str, seed: int = 1, **kw) -> CleverResult:
    options = {**SETTINGS, **kw}
    return clever_score(many_class_net(), an_input(), seed=seed, screen=screen, **options)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_deciding_target_and_score_are_those_of_fitting_every_target(seed):
    on, off = score("on", seed), score("off", seed)
    assert on.screened >= CLASSES // 2 and off.screened == 0  # the rule screens most classes out
    assert (on.target, on.score, on.interval) == (off.target, off.score, off.interval)
    assert on.batch_maxima == off.batch_maxima
    for j, s in on.per_target.items():
        if s.fit_method == SCREENED:
            assert s.score > on.score and s.points == SCREEN_POINTS
            assert s.fit_reason.startswith(f"screened out after {SCREEN_POINTS} points")
        else:
            assert s == off.per_target[j]  # a survivor is fitted on the very same maxima


def test_the_result_says_how_many_were_screened_and_after_how_many_points():
    on = score("on")
    screened = [j for j, s in on.per_target.items() if s.fit_method == SCREENED]
    assert on.screened == len(screened) and on.screened_after == SCREEN_POINTS
    assert on.notes[0].startswith(f"screened out {len(screened)} of {CLASSES - 1} targets after 128 points")
    back = CleverResult.from_dict(json.loads(json.dumps(on.to_dict())))
    assert (back.screened, back.screened_after) == (on.screened, SCREEN_POINTS)
    assert back.per_target[screened[0]].fit_method == SCREENED
    old = {k: v for k, v in on.to_dict().items() if k not in ("screened", "screened_after")}
    assert (CleverResult.from_dict(old).screened, CleverResult.from_dict(old).screened_after) == (0, None)


@pytest.mark.parametrize("chunk_size", [None, 100, 128, 300])
def test_the_survivors_batch_maxima_equal_the_unscreened_ones_exactly(chunk_size):
    model, x0 = many_class_net(), an_input()
    with torch.no_grad():
        logits0 = model(x0[None])[0]
    predicted = int(logits0.argmax())
    targets = [j for j in range(CLASSES) if j != predicted]
    margins0 = logits0[predicted] - logits0[targets]
    settings = check_settings(norm=2, radius=2.0, n_batches=12, batch_size=48, bounds=None, order=1)
    problem = Problem(model, x0, margins0, predicted, targets, 5, chunk_size)
    screened, full = rounds(problem, settings, screen=True), rounds(problem, settings)
    for total in (3, 7, 12):  # rounds: the screen happens inside the first, at point 128 of batch 2
        screened.extend(total)
        full.extend(total)
    assert screened.screened is not None and 0 < len(screened.screened.survivors) < len(targets) // 2
    survivors = list(screened.screened.survivors)
    assert torch.equal(screened.sampled().maxima[:, survivors], full.sampled().maxima[:, survivors])
    assert torch.equal(screened.sampled().slopes, full.sampled().slopes)


def test_screening_is_deterministic_under_a_seed():
    a, b = score("on", seed=4), score("on", seed=4)
    assert {**a.to_dict(), "elapsed": 0} == {**b.to_dict(), "elapsed": 0}


def test_auto_screens_from_100_classes_only():
    wide = clever_score(many_class_net(classes=101), an_input(), seed=1, **SETTINGS)
    assert wide.screened_after == SCREEN_POINTS and wide.screened > 0
    narrow = clever_score(many_class_net(classes=99), an_input(), seed=1, **SETTINGS)
    assert narrow.screened_after is None and narrow.screened == 0
    assert not any(s.fit_method == SCREENED for s in narrow.per_target.values())


def test_screening_with_precision_rounds_decides_as_without():
    on = score("on", precision=0.2, n_batches=None, max_batches=60)
    off = score("off", precision=0.2, n_batches=None, max_batches=60)
    assert on.n_batches > 20 and on.screened > 0
    decided = (on.target, on.score, on.n_batches, on.stop_reason)
    assert decided == (off.target, off.score, off.n_batches, off.stop_reason)


def test_screen_values_are_checked():
    with pytest.raises(InvalidInputError, match="screen must be one of auto, on, off"):
        score("maybe")
    with pytest.raises(InvalidInputError, match="order=2 does not support it"):
        score("on", order=2)
    with pytest.raises(InvalidInputError, match="the first round has 120 points"):
        score("on", n_batches=10, batch_size=12)
    assert score(" OFF ").screened_after is None
    # auto with order 2, or with too few points, just does not screen.
    assert score("auto", n_batches=10, batch_size=12).screened_after is None


def test_the_screening_travels_with_clever_scores_and_its_seeds():
    report = clever_scores(many_class_net(), [an_input(0), an_input(1)], seed=3, screen="on", **SETTINGS)
    assert all(r.screened_after == SCREEN_POINTS for r in report.results)
    single = clever_score(many_class_net(), an_input(1), seed=report.results[1].seed, screen="on", **SETTINGS)
    assert single.score == report.results[1].score and single.screened == report.results[1].screened
    assert not math.isnan(report.min)


def test_the_setting_travels_to_process_pool_workers():
    xs = [an_input(0), an_input(1)]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as executor:
        pooled = clever_scores(many_class_net(), xs, seed=3, screen="on", executor=executor, **SETTINGS)
        unscreened = clever_scores(many_class_net(), xs, seed=3, screen="off", executor=executor, **SETTINGS)
    serial = clever_scores(many_class_net(), xs, seed=3, screen="on", **SETTINGS)
    assert [r.screened for r in pooled.results] == [r.screened for r in serial.results]
    assert all(r.screened > 0 for r in pooled.results) and all(r.screened_after is None for r in unscreened.results)
    assert [r.score for r in pooled.results] == [r.score for r in serial.results]


def test_auto_screens_first_order_only_and_only_with_enough_points():
    parameters = inspect.signature(clever_scores).parameters.items()
    defaults = {k: p.default for k, p in parameters if k not in ("model", "xs")}

    def options(**kw):
        return ScoreOptions.from_keywords({**defaults, "radius": 1.0, **kw})

    assert options().screens(100) and not options().screens(99)
    assert not options(order=2).screens(1000)
    assert not options(n_batches=10, batch_size=12).screens(1000)  # 120 points: no more than SCREEN_POINTS
    assert options(screen="on").screens(1) and not options(screen="off").screens(1000)
