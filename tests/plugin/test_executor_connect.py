"""A dask:// or ray:// address that does not answer: one try per pytest process, one line per test."""

from __future__ import annotations

import re
import subprocess
import sys

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
def test_an_unreachable_dask_scheduler_costs_one_timeout_per_session_and_one_line_per_test(tmp_path):
    pytest.importorskip("distributed")
    (tmp_path / "test_two.py").write_text(TWO_TESTS)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--clever-executor=dask://127.0.0.1:1",
        "--clever-executor-connect-timeout=3",
        "--durations=0",
        "--durations-min=0",
        "-rN",  # no short summary: it repeats each failure's line, in full where CI is set
        "test_two.py",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert "2 failed" in result.stdout, output
    line = "executor 'dask://127.0.0.1:1': cannot connect to 127.0.0.1:1 (connect timeout 3 s; OSError: "
    assert output.count(line) == 2, output  # once per test, in the failure's one line
    seconds = call_seconds(result.stdout)
    assert seconds["test_first"] >= 2.5, seconds  # the one attempt waited for its timeout
    assert seconds["test_second"] < 0.5, seconds  # the failure was remembered
    assert "Traceback" not in output and "distributed/" not in output, output


def test_a_failed_connection_is_tried_once_per_process(monkeypatch):
    # A stand-in for distributed's Client: a real failed Client in this process leaves state behind that
    # breaks a later local Ray instance's serialisation; the real one runs in a subprocess (test above).
    from pytest_clever._engine import executor_specs

    tries = []

    def refuse(address, timeout):
        tries.append((address, timeout))
        raise OSError(f"Timed out trying to connect to tcp://{address} after {timeout:g} s\nand a second line")

    monkeypatch.setattr(executor_specs, "_connect_dask", refuse)
    spec = "dask://127.0.0.1:1"
    try:
        with pytest.raises(ExecutorError) as first:
            executor_from_spec(spec, connect_timeout=0.5)
        with pytest.raises(ExecutorError) as second:
            executor_from_spec(spec, connect_timeout=0.5)
        assert tries == [("127.0.0.1:1", 0.5)]
        assert second.value is not first.value and str(second.value) == str(first.value)
        assert "\n" not in str(first.value) and first.value.__cause__ is None
        assert str(first.value).startswith(
            f"executor {spec!r}: cannot connect to 127.0.0.1:1 (connect timeout 0.5 s; OSError: Timed out trying to "
            "connect to tcp://127.0.0.1:1 after 0.5 s); this pytest process does not try again"
        )
    finally:
        close_executors()  # the next session tries again
    with pytest.raises(ExecutorError):
        executor_from_spec(spec, connect_timeout=0.5)
    assert len(tries) == 2
    close_executors()


RAY_TWICE = """
import time
from pytest_clever._engine.executor_specs import executor_from_spec
for _ in range(2):
    started = time.perf_counter()
    try:
        executor_from_spec("ray://127.0.0.1:1", connect_timeout=2)
    except Exception as exc:
        print(type(exc).__name__, round(time.perf_counter() - started, 2), str(exc).count(chr(10)), exc, flush=True)
"""


@pytest.mark.slow  # a subprocess: a failed Ray Client connection leaves state in its process
def test_a_ray_address_that_does_not_answer_is_one_line_and_tried_once(tmp_path):
    pytest.importorskip("ray")
    script = tmp_path / "ray_twice.py"
    script.write_text(RAY_TWICE)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120).stdout
    first, second = out.splitlines()[-2:]
    assert first.startswith("ExecutorError ") and second.startswith("ExecutorError "), out
    assert first.split()[2] == second.split()[2] == "0", out  # no newline in either message
    assert first.split(" ", 3)[3] == second.split(" ", 3)[3], out
    assert first.split(" ", 3)[3].startswith("executor 'ray://127.0.0.1:1': cannot connect to 127.0.0.1:1 ("), out
    assert float(second.split()[1]) < 0.1, out  # remembered, not tried again


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
