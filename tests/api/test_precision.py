"""precision=, max_batches= and budget=: sampling in rounds on one stream of points, and their bad values."""

from __future__ import annotations

import pytest

from pytest_clever import clever_score, clever_scores
from pytest_clever.core.validation import DEFAULT_FIRST_ROUND, DEFAULT_N_BATCHES
from pytest_clever.errors import InvalidInputError
from tests.helpers import TANH_X0, tanh_net

ROUNDS = dict(radius=0.5, seed=0, batch_size=16)


def test_precision_stops_once_the_interval_is_that_narrow():
    model = tanh_net()
    loose = clever_score(model, TANH_X0, precision=0.05, **ROUNDS)
    tight = clever_score(model, TANH_X0, precision=0.002, **ROUNDS)
    assert (loose.stop_reason, tight.stop_reason) == ("precision", "precision")
    assert loose.precision_reached <= 0.05 and tight.precision_reached <= 0.002
    # Rounds of 20, 30, 45, 68, 102 batches: the tighter precision needs more of them.
    assert loose.n_batches == 30 and tight.n_batches == 102
    assert tight.points == 102 * 16 and all(t.points == 102 * 16 for t in tight.per_target.values())
    assert tight.precision == 0.002 and tight.to_dict()["stop_reason"] == "precision"


def test_a_stopped_run_sampled_a_prefix_of_the_stream():
    """The batches of a run stopped after n batches are those of a fixed run of n batches, bit for bit."""
    model = tanh_net()
    stopped = clever_score(model, TANH_X0, precision=0.002, chunk_size=40, **ROUNDS)
    fixed = clever_score(model, TANH_X0, n_batches=stopped.n_batches, chunk_size=40, **ROUNDS)
    assert stopped.batch_maxima == fixed.batch_maxima
    assert stopped.score == fixed.score and fixed.stop_reason == "fixed"
    again = clever_score(model, TANH_X0, precision=0.002, chunk_size=40, **ROUNDS)
    assert (again.n_batches, again.score) == (stopped.n_batches, stopped.score)


def test_the_cap_and_the_budget_stop_rounds_and_say_so():
    model = tanh_net()
    capped = clever_score(model, TANH_X0, precision=0.0001, max_batches=30, **ROUNDS)
    assert (capped.stop_reason, capped.n_batches) == ("cap", 30)
    assert capped.precision_reached > 0.0001
    spent = clever_score(model, TANH_X0, budget=1e-6, **ROUNDS)
    assert (spent.stop_reason, spent.n_batches) == ("budget", DEFAULT_FIRST_ROUND)
    assert spent.budget == 1e-6 and "stopped: budget" in repr(spent)


def test_a_fixed_count_is_unchanged_and_says_fixed():
    result = clever_score(tanh_net(), TANH_X0, **ROUNDS)
    assert (result.n_batches, result.stop_reason, result.precision) == (DEFAULT_N_BATCHES, "fixed", None)


def test_each_input_of_clever_scores_stops_on_its_own():
    model = tanh_net()
    xs = [TANH_X0, TANH_X0 * 0.5]
    report = clever_scores(model, xs, precision=0.002, **ROUNDS)
    alone = [
        clever_score(model, x, precision=0.002, seed=r.seed, radius=0.5, batch_size=16)
        for x, r in zip(xs, report, strict=True)
    ]
    assert [(r.n_batches, r.score) for r in report] == [(a.n_batches, a.score) for a in alone]
    assert report.settled is None


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(precision=0), "precision must be a finite number > 0"),
        (dict(precision=-0.1), "precision must be a finite number > 0"),
        (dict(precision=1.0), "precision is the relative half-width"),
        (dict(precision=float("nan")), "precision must be a finite number"),
        (dict(budget=0), "budget must be a finite number > 0"),
        (dict(precision=0.1, max_batches=5), "max_batches must be an integer >= 10"),
        (dict(max_batches=200), "max_batches=200 caps the rounds of precision= or budget="),
        (dict(precision=0.1, n_batches=300, max_batches=200), "n_batches=300 contradicts max_batches=200"),
        (dict(precision=0.1, n_batches=2000), "n_batches=2000 contradicts max_batches=1000"),
        (dict(precision=0.1, order=2), "order=2 does not support"),
    ],
)
def test_bad_stopping_settings_fail_before_anything_runs(settings, message):
    def model(x):  # never called: the settings fail first
        raise AssertionError("the model ran")

    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace("+", r"\+")):
        clever_score(model, TANH_X0, radius=0.5, **settings)


def test_precision_on_an_executor_stops_each_input_where_the_serial_run_does():
    from concurrent.futures import ThreadPoolExecutor

    model = tanh_net()
    xs = [TANH_X0, TANH_X0 * 0.5]
    serial = clever_scores(model, xs, precision=0.002, **ROUNDS)
    with ThreadPoolExecutor(2) as pool:
        remote = clever_scores(model, xs, precision=0.002, executor=pool, **ROUNDS)
    assert [(r.n_batches, r.score, r.stop_reason) for r in remote] == [
        (r.n_batches, r.score, r.stop_reason) for r in serial
    ]


def test_progress_in_rounds_counts_rounds_and_the_calls_points_without_a_made_up_estimate():
    events = []
    xs = [TANH_X0, 0.5 * TANH_X0, 0.8 * TANH_X0]
    report = clever_scores(tanh_net(), xs, precision=0.01, progress=events.append, **ROUNDS)
    stages = [e.stage for e in events]
    assert stages[0] == "start" and stages[-1] == "done" and "input" not in stages
    rounds = [e.round for e in events if e.stage == "round"]
    assert rounds == list(range(1, len(rounds) + 1)) and len(rounds) > 2
    # Inputs are reported as they stop, each once; the points are the call's, as sampled.
    assert [e.inputs_done for e in events if e.stage == "scored"] == [1, 2, 3]
    assert events[-1].points_done == sum(r.n_batches * 16 for r in report)
    assert events[-1].points_total == 3 * 1000 * 16  # every input's cap
    assert [e.sampling for e in events if e.stage == "round"][0] == 3
    # How many rounds precision takes is not known in advance: no time estimate until done.
    assert {e.remaining_s for e in events[:-1]} == {None} and {e.first_input_s for e in events} == {None}
