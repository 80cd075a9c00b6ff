"""A gate that cannot lie (issue 14) and a fixture that explains itself (issue 17), through real
pytest subprocess runs: usage errors up front, incomplete runs, failed writes, storage problems
named, bad markers under xdist, a strict "not comparable", threads under xdist, warnings."""

import json
import os

import pytest

from pytest_clever.runs.storage import Storage

from .user_modules import linear_module

MODEL = linear_module()  # a user's module: a linear model, exact and fast

PLAIN = "def test_plain():\n    pass\n"

SCORING = MODEL + """
@pytest.mark.clever(radius=RADIUS, n_batches=10, batch_size=16)
def test_gate(clever):
    clever.scores(linear(), XS, name="linear")


@pytest.mark.clever(radius=RADIUS, n_batches=10, batch_size=16)
def test_other(clever):
    clever.scores(linear(), XS[:2])
"""


def _scoring(radius: float = 5.0) -> str:
    return SCORING.replace("RADIUS", repr(radius))


def _err(result) -> str:
    return result.stderr.str() + result.stdout.str()


def test_empty_values_and_unwritable_outputs_are_usage_errors_before_any_test_runs(pytester):
    pytester.makepyfile(PLAIN)
    (pytester.path / "afile").write_text("not a folder")
    (pytester.path / "adir").mkdir()
    cases = [
        (["--clever-compare="], "--clever-compare= was given an empty value"),  # finding 3
        (["--clever-save="], "--clever-save= was given an empty value"),
        (["--clever-json="], "--clever-json= was given an empty value"),
        (["--clever-save=main", "--clever-storage=afile"], "is not a folder"),  # finding 9
        (["--clever-save=main", "--clever-storage=afile/sub"], "afile is not a folder"),
        (["--clever-json=adir"], "adir is a folder; give a file path"),
        (["--clever-save=main\n"], "invalid run name 'main\\n'"),  # finding 16
        (["--clever-save=x.json"], "names ending in '.json' are reserved"),
        (["--clever-not-comparable=maybe"], "invalid choice: 'maybe'"),
    ]
    for args, message in cases:
        result = pytester.runpytest(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, (args, _err(result))
        assert message in _err(result), (args, _err(result))
        assert "Traceback" not in _err(result) and "passed" not in result.stdout.str()
    assert (pytester.path / "afile").read_text() == "not a folder"


@pytest.mark.slow  # a real pytest subprocess interrupted by Ctrl-C: CI runs it
def test_an_interrupted_run_is_saved_incomplete_and_never_becomes_the_baseline(pytester):
    # Finding 8 (Ctrl-C mid-run) and finding 13 (a strict compare with nothing recorded says why).
    pytester.makepyfile(
        test_model=_scoring() + "\n\ndef test_zz_ctrl_c():\n    raise KeyboardInterrupt\n"
    )
    cut = pytester.runpytest_subprocess("--clever-save=main", "-p", "no:randomly")
    assert cut.ret == pytest.ExitCode.INTERRUPTED
    cut.stdout.fnmatch_lines(["*CLEVER run saved as INCOMPLETE (interrupted*) to *_main.json: never used*"])
    (run,) = Storage(pytester.path / ".clever").runs()[0]
    assert run.incomplete.startswith("interrupted") and len(run.records) == 2
    data = json.loads(run.path.read_text())
    assert data["incomplete"] == run.incomplete

    strict = pytester.runpytest_subprocess(
        "--clever-compare=main", "--clever-baseline-missing=fail", "-k", "not test_zz", "--deselect",
        "test_model.py::test_gate", "--deselect", "test_model.py::test_other",
    )
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(
        [
            "*no test recorded a CLEVER score in this run",
            "*no comparison: no complete saved run named 'main' in *: run * is incomplete (interrupted*",
            "*CLEVER regressions (2):*",
            "*no test recorded a CLEVER score in this run, so nothing was compared (--clever-baseline-missing=fail)",
            "*baseline: no complete saved run named 'main'*",
        ]
    )


def test_outputs_that_fail_at_the_end_are_reported_and_fail_the_run_cleanly(pytester):
    # Finding 9: writable at the start, not at the end (a test takes the paths away).
    pytester.makepyfile(
        test_model=_scoring()
        + """

def test_zz_break_outputs():
    import pathlib
    pathlib.Path("store").write_text("now a file")
    pathlib.Path("out.json").mkdir()
"""
    )
    result = pytester.runpytest("--clever-save=main", "--clever-storage=store", "--clever-json=out.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*CLEVER robustness*",
            "*test_model.py::test_gate [[]linear[]]*RECORDED",
            "*CLEVER output errors (2):*",
            "*could not save baseline 'main' in *store: *",
            "*could not write --clever-json file out.json: *",
            "*3 passed*",
        ]
    )
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()
    assert "CLEVER results written" not in result.stdout.str()


def test_storage_problems_are_named_in_the_compare(pytester):
    # Findings 10 and 11: a malformed record and a newer-schema file are named with why.
    pytester.makepyfile(test_model=_scoring())
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    store = pytester.path / ".clever"
    (saved,) = store.glob("*_main.json")
    data = json.loads(saved.read_text())
    data["records"].append({"name": None, "mean": "high"})
    saved.write_text(json.dumps(data))
    (store / "20991231T000000000000Z-abcdef_future.json").write_text(
        json.dumps({"kind": "pytest-clever-run", "schema": 99, "records": []})
    )
    result = pytester.runpytest("--clever-compare", "--clever-compare=future", "-k", "nothing")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(
        ["*no comparison: no complete saved run named 'future' in *: *future.json: schema 99 is not supported*"]
    )
    latest = pytester.runpytest("--clever-compare", "-k", "test_gate")
    assert latest.ret == 0
    latest.stdout.fnmatch_lines(
        [
            "*CLEVER compared with baseline 'main'*",
            "baseline skipped file *future.json: schema 99 is not supported*",
            "baseline skipped *record 2*missing field 'nodeid'*",
            "*test_gate [[]linear[]]*OK",
            "*test_other*NOT RUN",
            "1 baseline entry not run this time*",
        ]
    )


def test_not_comparable_fails_the_gate_when_asked_from_the_ini_and_the_cli_can_relax_it(pytester):
    # Issue 17, item 3.
    pytester.makepyfile(test_model=_scoring(5.0))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    pytester.makepyfile(test_model=_scoring(0.01))
    pytester.makeini("[pytest]\nclever_not_comparable = fail\n")
    strict = pytester.runpytest("--clever-compare=main")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.assert_outcomes(passed=2)
    strict.stdout.fnmatch_lines(
        [
            "*test_gate [[]linear[]]*NOT COMPARABLE",
            "*CLEVER regressions (2):*",
            "*test_gate [[]linear[]]: not comparable with baseline main (radius 5.0 -> 0.01; --clever-not-comparable=fail)",
        ]
    )
    relaxed = pytester.runpytest("--clever-compare=main", "--clever-not-comparable=warn")
    assert relaxed.ret == 0
    relaxed.stdout.fnmatch_lines(["*test_gate [[]linear[]]*NOT COMPARABLE"])


@pytest.mark.slow  # real pytest subprocesses (xdist workers): CI runs it
def test_a_bad_marker_under_xdist_is_the_same_usage_error_as_serially(pytester):
    # Finding 12.
    pytest.importorskip("xdist")
    pytester.makepyfile("import pytest\n\n@pytest.mark.clever(radius=1.0, colour='red')\ndef test_gate(clever):\n    pass\n")
    result = pytester.runpytest_subprocess("-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, _err(result)
    assert "unknown argument(s) colour" in result.stderr.str()
    assert "INTERNALERROR" not in _err(result) and "crashitem" not in _err(result)


FIXTURE_UX = """
import json
import pytest
import torch


def kink(x):
    # A step the gradients cannot see: the sampled margins prove every Lipschitz estimate too low,
    # so each score carries a note (tied or discrete batch maxima alone no longer do).
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
    # Issue 17, items 5 and 7: one -n 2 run.
    pytest.importorskip("xdist")
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    pytester.makepyfile(test_fixture_ux=FIXTURE_UX)
    result = pytester.runpytest_subprocess("-n", "2", "--clever-json=out.json")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # A misspelt keyword: the allowed ones, no traceback into the plugin.
    result.stdout.fnmatch_lines(
        ["*clever fixture: unknown keyword argument(s) n_batch (did you mean n_batches?); allowed: *batch_size*chunk_size*"]
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
        ["*test_fixture_ux.py:15: WeakFitWarning: test_fixture_ux.py::test_weak: "
         f"{len(notes)} weak-fit note*; first: CLEVER input *"]
    )
    assert out.count("WeakFitWarning") == 1
    # Each worker gets its share of the cores, and the record keeps the count.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert record["settings"]["threads"] == max(1, cores // 2)
