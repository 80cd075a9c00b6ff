"""precision=, max_batches= and budget= through the plugin: marker, ini and command line; the points and
stop reasons in the summary and the JSON; runs under other stopping settings are not mixed."""

from __future__ import annotations

import json

import pytest

from .user_modules import linear_module
from .xdist_runs import serial_and_xdist

MODEL = linear_module()
# A linear model's gradient norms are constant: its interval has zero width, so precision stops every input
# at the first look it may (rounds of 20 then 30 batches of 16 points: 480 points).
BODY = "\ndef test_gate(clever):\n    clever.scores(linear(), XS)\n"


def _json(pytester):
    return json.loads((pytester.path / "out.json").read_text())


def test_marker_precision_samples_in_rounds_and_the_summary_says_so(pytester):
    pytester.makepyfile(MODEL + "\n@pytest.mark.clever(radius=5.0, batch_size=16, precision=0.1)" + BODY)
    result = pytester.runpytest("--clever-json=out.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test*points*status*",
            "*test_gate *L2*5 *480 *RECORDED*",
            "CLEVER rounds (precision/budget):",
            "*test_gate: stopped by precision 5; points per input 480-480; precision reached +-0.0% at worst",
        ]
    )
    (record,) = _json(pytester)["records"]
    settings = record["settings"]
    assert (settings["precision"], settings["n_batches"], settings["max_batches"], settings["budget"]) == (
        0.1,
        20,
        1000,
        None,
    )
    assert [(r["stop_reason"], r["points"], r["n_batches"]) for r in record["results"]] == [("precision", 480, 30)] * 5


def test_ini_and_command_line_set_the_stopping_rule(pytester):
    pytester.makeini("[pytest]\nclever_radius = 5.0\nclever_batch_size = 16\nclever_precision = 0.1\n")
    pytester.makepyfile(MODEL + BODY)
    pytester.runpytest("--clever-json=out.json", "--clever-max-batches=25").assert_outcomes(passed=1)
    (record,) = _json(pytester)["records"]
    # The cap of 25 ends the second round at 25 batches: precision needs a look at >= 20 after a first one.
    assert record["settings"]["max_batches"] == 25
    assert {(r["stop_reason"], r["n_batches"]) for r in record["results"]} == {("precision", 25)}
    pytester.runpytest("--clever-json=out.json", "--clever-budget=0.000001").assert_outcomes(passed=1)
    (record,) = _json(pytester)["records"]
    assert record["settings"]["budget"] == 1e-6
    assert {(r["stop_reason"], r["n_batches"]) for r in record["results"]} == {("budget", 20)}


def test_bad_stopping_settings_are_usage_errors(pytester):
    pytester.makepyfile(MODEL + "\n@pytest.mark.clever(radius=5.0, precision=1.5)" + BODY)
    result = pytester.runpytest()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["ERROR: @pytest.mark.clever on *precision is the relative half-width*, got 1.5"])
    result = pytester.runpytest("--clever-precision=0")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--clever-precision: must be a finite number > 0, got 0.0*"])


def test_a_gate_with_precision_stops_once_decided(pytester):
    pytester.makepyfile(
        MODEL
        + "\n@pytest.mark.clever(radius=5.0, batch_size=16, precision=0.001, min_score=0.01, statistic='min')"
        + BODY
    )
    pytester.runpytest("--clever-json=out.json").assert_outcomes(passed=1)
    (record,) = _json(pytester)["records"]
    # Exact scores settle the decision after the first round.
    assert record["settled"] is True
    assert {(r["stop_reason"], r["points"]) for r in record["results"]} == {("decision", 320)}


def test_runs_under_other_stopping_settings_are_not_comparable(pytester):
    pytester.makepyfile(MODEL + "\n@pytest.mark.clever(radius=5.0, batch_size=16)" + BODY)
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=1)
    result = pytester.runpytest("--clever-compare=main", "--clever-precision=0.1")
    result.stdout.fnmatch_lines(
        [
            "*test_gate *NOT COMPARABLE",
            "*test_gate: n_batches 100 -> 20",
            "*test_gate: precision None -> 0.1",
            "*test_gate: max_batches None -> 1000",
        ]
    )


SMOOTH = """
import pytest
import torch
from torch import nn


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).eval()


XS = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))


@pytest.mark.clever(radius=1.0, batch_size=16, precision=0.05, max_batches=200)
@pytest.mark.parametrize("half", [0, 1])
def test_rounds(clever, half):
    clever.scores(mlp(), XS[3 * half : 3 * half + 3])
"""


@pytest.mark.slow  # real pytest subprocesses (xdist workers): CI runs it
def test_the_same_seed_stops_at_the_same_point_serially_and_under_xdist(pytester):
    pytester.makepyfile(test_smooth=SMOOTH)
    stops = {
        label: sorted(
            (r["nodeid"], res["stop_reason"], res["points"], res["score"])
            for r in doc["records"]
            for res in r["results"]
        )
        for label, (_, doc) in serial_and_xdist(pytester, passed=2).items()
    }
    assert stops["serial"] == stops["xdist"]
    # The rounds did choose: inputs stopped by precision at more than one point count.
    assert {s[1] for s in stops["serial"]} == {"precision"}
    assert len({s[2] for s in stops["serial"]}) > 1


@pytest.mark.slow  # compiles the model (seconds)
def test_torch_compile_from_the_command_line_and_the_marker_reaches_the_results_and_the_record(pytester):
    pytester.makepyfile(
        MODEL
        + "\n@pytest.mark.clever(radius=5.0, batch_size=16, n_batches=10)"
        + BODY
        + "\n@pytest.mark.clever(radius=5.0, batch_size=16, n_batches=10, torch_compile=False)"
        + "\ndef test_eager(clever):\n    clever.scores(linear(), XS)\n"
    )
    # In a subprocess: an in-process run drops the torch._inductor modules it imported from sys.modules,
    # and importing them again in this process fails (their operator library is registered once per process).
    result = pytester.runpytest_subprocess("--clever-torch-compile=true", "--clever-json=out.json")
    result.assert_outcomes(passed=2)
    by_test = {r["nodeid"].split("::")[1]: r for r in _json(pytester)["records"]}
    assert by_test["test_gate"]["settings"]["torch_compile"] is True
    assert {r["torch_compile"] for r in by_test["test_gate"]["results"]} == {True}
    assert by_test["test_eager"]["settings"]["torch_compile"] is False
    # Compiled and eager scores of the same linear model and seed agree within the tolerance.
    assert by_test["test_gate"]["mean"] == pytest.approx(by_test["test_eager"]["mean"], rel=1e-5)
