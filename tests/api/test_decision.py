"""Rounds that stop once a gate's decision is settled (min_score with precision= or budget=)."""

from __future__ import annotations

import pytest

from pytest_clever import clever_scores
from pytest_clever._engine.rounds import looks
from pytest_clever.core.validation import Stopping
from pytest_clever.errors import InvalidInputError
from tests.helpers import TANH_X0, tanh_net

XS = [TANH_X0, TANH_X0 * 0.9, TANH_X0 * 1.1]
ROUNDS = dict(radius=0.5, seed=0, batch_size=16)


@pytest.mark.parametrize("bar", [0.02, 0.06])
def test_a_bar_far_from_the_statistic_is_decided_after_the_first_round(bar):
    # The mean of the three scores is 0.0399, its interval a fraction of a percent wide.
    report = clever_scores(tanh_net(), XS, precision=0.001, max_batches=200, min_score=bar, **ROUNDS)
    assert report.settled is True
    assert [(r.stop_reason, r.n_batches) for r in report] == [("decision", 20)] * 3
    lo, hi = report.interval("mean")
    assert lo >= bar or hi < bar


def test_a_bar_inside_the_interval_stays_unsettled_and_each_input_stops_on_its_own():
    model = tanh_net()
    bar = clever_scores(model, XS, **ROUNDS).mean
    report = clever_scores(model, XS, precision=0.001, max_batches=200, min_score=bar, **ROUNDS)
    assert report.settled is False
    assert [(r.stop_reason, r.n_batches) for r in report] == [("cap", 200), ("cap", 200), ("precision", 30)]
    spent = clever_scores(model, XS, budget=1e-6, min_score=bar, **ROUNDS)
    assert spent.settled is False and [r.stop_reason for r in spent] == ["budget"] * 3


def test_the_decision_spends_its_error_over_the_looks():
    # Rounds 20, 30, 45, 68, 102, 153, 230, 345, 518, 777, 1000: 11 looks at 1 - 0.05 / 11.
    assert looks(Stopping(first=20, cap=1000, precision=0.1)) == 11
    assert looks(Stopping(first=100, cap=100)) == 1


def test_without_rounds_min_score_changes_nothing():
    model = tanh_net()
    plain = clever_scores(model, XS, **ROUNDS)
    gated = clever_scores(model, XS, min_score=0.02, **ROUNDS)
    assert [r.score for r in gated] == [r.score for r in plain] and gated.settled is None
    assert {r.stop_reason for r in gated} == {"fixed"}


@pytest.mark.parametrize("rounds", [dict(budget=10), dict(min_score=0.01, precision=0.1)])
def test_budget_and_decisions_need_the_rounds_of_this_process(rounds):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool, pytest.raises(InvalidInputError, match="drop executor="):
        clever_scores(tanh_net(), XS, executor=pool, **rounds, **ROUNDS)
    # precision= alone runs on the executor: each input stops on its own there.
    with ThreadPoolExecutor(1) as pool:
        assert len(clever_scores(tanh_net(), XS, executor=pool, precision=0.1, **ROUNDS)) == len(XS)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(min_score=-1), "min_score must be a finite number >= 0"),
        (dict(statistic="q200"), "unknown statistic"),
        (dict(gate="maybe"), "gate mode must be one of"),
        (dict(interval="both"), "interval must be one of"),
    ],
)
def test_bad_gate_settings(settings, message):
    with pytest.raises(InvalidInputError, match=message):
        clever_scores(tanh_net(), XS, **ROUNDS, **settings)
