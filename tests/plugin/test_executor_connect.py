"""A dask:// or ray:// address that does not answer: one try per pytest process, one line per test."""

from __future__ import annotations

import re

import pytest

from pytest_clever._engine.executor_specs import close_executors, executor_from_spec
from pytest_clever.errors import ExecutorError

TWO_TESTS = """
import torch
from torch import nn

def _scores(clever):
    torch.manual_seed(0)
    clever.scores(nn.Linear(6, 4), torch.randn(2, 6), radius=1.0, n_batches=10, batch_size=8)

def test_first(clever):
    _scores(clever)

def test_second(clever):
    _scores(clever)
"""


def call_seconds(output: str) -> dict[str, float]:
    """Each test's call duration from ``--durations=0``."""
    found = re.findall(r"^([0-9.]+)s call\s+\S+::(test_\w+)$", output, flags=re.M)
    return {name: float(seconds) for seconds, name in found}


@pytest.mark.slow  # a pytest subprocess that imports torch and distributed
def test_an_unreachable_dask_scheduler_costs_one_timeout_per_session_and_one_line_per_test(pytester):
    pytest.importorskip("distributed")
    pytester.makepyfile(test_two=TWO_TESTS)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--clever-executor=dask://127.0.0.1:1",
        "--clever-executor-connect-timeout=3",
        "--durations=0",
        "--durations-min=0",
    )
    result.assert_outcomes(failed=2)
    output = result.stdout.str() + result.stderr.str()
    line = "executor 'dask://127.0.0.1:1': cannot connect to 127.0.0.1:1 within 3 s"
    assert output.count(line) == 2, output  # once per test, in the failure's one line
    seconds = call_seconds(result.stdout.str())
    assert seconds["test_first"] >= 2.5, seconds  # the one attempt waited for its timeout
    assert seconds["test_second"] < 0.5, seconds  # the failure was remembered
    assert "Traceback" not in output and "distributed/" not in output, output


def test_a_failed_connection_is_tried_once_per_process():
    pytest.importorskip("distributed")
    spec = "dask://127.0.0.1:1"
    try:
        with pytest.raises(ExecutorError) as first:
            executor_from_spec(spec, connect_timeout=0.5)
        with pytest.raises(ExecutorError) as second:
            executor_from_spec(spec, connect_timeout=0.5)
        assert second.value is not first.value and str(second.value) == str(first.value)
        assert "\n" not in str(first.value) and first.value.__cause__ is None
        assert str(first.value).startswith(f"executor {spec!r}: cannot connect to 127.0.0.1:1 within 0.5 s (")
    finally:
        close_executors()  # the next session tries again


def test_a_ray_address_that_does_not_answer_is_one_line_and_tried_once():
    pytest.importorskip("ray")
    spec = "ray://127.0.0.1:1"
    try:
        with pytest.raises(ExecutorError, match=r"^executor 'ray://127.0.0.1:1': ") as first:
            executor_from_spec(spec, connect_timeout=2)
        with pytest.raises(ExecutorError) as second:
            executor_from_spec(spec, connect_timeout=2)
        assert str(second.value) == str(first.value) and "\n" not in str(first.value)
    finally:
        close_executors()


STUCK_FACTORY = """
from concurrent.futures import ThreadPoolExecutor

def make_executor():
    return ThreadPoolExecutor(2)
"""

STUCK_TEST = """
import time
import torch
from torch import nn

class Stuck(nn.Module):
    # Stuck for its first 1.5 s (each forward takes 0.6 s), then fast: the run after the failure ends soon.

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 4)
        self.until = time.time() + 1.5

    def forward(self, x):
        if time.time() < self.until:
            time.sleep(0.6)
        return self.fc(x)

def test_stuck(clever):
    clever.scores(Stuck(), torch.randn(2, 6), radius=1.0, n_batches=10, batch_size=8)
"""


def test_the_executor_timeout_setting_reaches_the_fixture_s_calls(pytester):
    pytester.makepyfile(stuckfactory=STUCK_FACTORY, test_stuck=STUCK_TEST)
    pytester.syspathinsert()
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--clever-executor=stuckfactory:make_executor", "--clever-executor-timeout=0.5"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ExecutorError: no input came back from the executor ThreadPoolExecutor (2 workers) for 0.5 s; "
            "input(s) 0, 1 still pending*"
        ]
    )
