"""The clever fixture from a user's test: numpy inputs, threads under xdist, keyword typos, weak-fit warnings."""

import json
import os

import pytest


def test_the_fixture_takes_numpy_inputs(pytester):
    pytester.makepyfile(
        """
import numpy as np
import torch
from torch import nn


def test_numpy(clever):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    xs = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    report = clever.scores(model, xs, radius=0.5, n_batches=10, batch_size=16)
    assert len(report.scores) == 2 and report.min > 0
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


FIXTURE_UX = """
import json
import pytest
import torch


def kink(x):
    # A step the gradients cannot see: the sampled margins prove every Lipschitz estimate too low,
    # so each score carries a note (tied or discrete batch maxima alone carry none).
    a = x[:, 0] + 2.0 * (x[:, 1] > 0.3).to(x.dtype)
    return torch.stack([a + 1.0, torch.zeros_like(a), -a], 1)


@pytest.mark.clever(radius=1.0, n_batches=10, batch_size=1)
def test_weak(clever):
    clever.scores(kink, torch.zeros(8, 4))  # the user's line


@pytest.mark.clever(radius=1.0)
def test_typo(clever):
    clever.scores(kink, torch.zeros(1, 4), n_batch=10)
"""


@pytest.mark.slow  # real pytest subprocesses (xdist workers): CI runs it
def test_fixture_threads_under_xdist_keyword_typos_and_weak_fit_warnings(pytester, monkeypatch):
    # One -n 2 run checks the threads, a typo and the warnings.
    pytest.importorskip("xdist")
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    pytester.makepyfile(test_fixture_ux=FIXTURE_UX)
    result = pytester.runpytest_subprocess("-n", "2", "--clever-json=out.json")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # A misspelt keyword: the allowed ones, no traceback into the plugin.
    result.stdout.fnmatch_lines(
        [
            "*clever fixture: unknown keyword argument(s) n_batch (did you mean n_batches?);"
            " allowed: *batch_size*chunk_size*"
        ]
    )
    assert "TypeError" not in out and "pytest_clever/fixture.py" not in out
    doc = json.loads((pytester.path / "out.json").read_text())
    (record,) = doc["records"]
    notes = [n for r in record["results"] for n in r["notes"]]
    assert notes, "the kink model's scores should all carry notes"
    # One summary line per test (count + first note), one warning per call at the user's line.
    result.stdout.fnmatch_lines(
        [
            "CLEVER fit notes*",
            f"  test_fixture_ux.py::test_weak: {len(notes)} note{'s' if len(notes) > 1 else ''}; first (input *): *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*test_fixture_ux.py:15: WeakFitWarning: test_fixture_ux.py::test_weak: "
            f"{len(notes)} weak-fit note*; first: CLEVER input *"
        ]
    )
    assert out.count("WeakFitWarning") == 1
    # Each worker gets its share of the cores, and the record keeps the count.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert record["settings"]["threads"] == max(1, cores // 2)


def test_a_bad_input_in_the_second_call_says_which_call_and_where(pytester):
    from .user_modules import SMALL_SAMPLE_ARGS, linear_module

    pytester.makepyfile(
        test_x=linear_module()
        + f"""

@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_two_calls(clever):
    model = linear()
    clever.scores(model, XS, name="a")
    wrong = ((model(XS).argmax(dim=1) + 1) % 3).tolist()
    clever.scores(model, XS, wrong, name="b")
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    line = next(
        i for i, text in enumerate((pytester.path / "test_x.py").read_text().splitlines(), 1) if "wrong, name" in text
    )
    result.stdout.fnmatch_lines([f"*call 2 in the test (name='b'), test_x.py:{line}: MisclassifiedInputError: *"])


def test_a_warning_turned_into_an_error_keeps_the_record(pytester):
    from .user_modules import SMALL_SAMPLE_ARGS, linear_module

    pytester.makepyfile(
        test_x=linear_module()
        + f"""

@pytest.mark.clever(radius=1e-3, {SMALL_SAMPLE_ARGS})
def test_capped(clever):
    clever.assert_robust(linear(), XS, min_score=5e-4, name="m")
"""
    )
    result = pytester.runpytest("-W", "error::pytest_clever.errors.CleverWarning", "--clever-json=out.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CleverWarning: *test_capped [[]m[]]: the gate mean>=0.0005 was decided by capped*"])
    (record,) = json.loads((pytester.path / "out.json").read_text())["records"]
    assert record["nodeid"] == "test_x.py::test_capped" and record["name"] == "m"
    assert record["capped"]["gate_decided_by_capped_scores"] is True
