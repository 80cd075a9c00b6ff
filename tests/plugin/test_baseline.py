"""Baselines through pytest: save, compare, fail on a regression, not-comparable settings, xdist."""

import json

import pytest

from pytest_clever.runs.storage import Storage

from .user_modules import SMALL_SAMPLE_ARGS, linear_module


def _module(factor: float, radius: float = 5.0) -> str:
    # Scaling the weights on input 0 (which is 0 in every x) steepens the margins
    # without moving them: factor > 1 is a strictly less robust model.
    return linear_module(first_feature_zero=True) + f"""

@pytest.mark.clever(radius={radius}, {SMALL_SAMPLE_ARGS})
def test_gate(clever):
    clever.scores(linear({factor}), XS, name="linear")


@pytest.mark.clever(radius={radius}, {SMALL_SAMPLE_ARGS})
def test_other(clever):
    clever.scores(linear({factor}), XS[:2])
"""


def _store(pytester):
    return Storage(pytester.path / ".clever")


def test_save_then_compare_fail_on_a_less_robust_model(pytester):
    pytester.makepyfile(test_model=_module(1.0))
    result = pytester.runpytest("--clever-save=main")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*CLEVER baseline saved to *.clever*main.json"])
    (run,) = _store(pytester).runs()[0]
    assert run.name == "main" and len(run.records) == 2

    # Unchanged model: comparison passes and shows zero deltas.
    same = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%")
    same.assert_outcomes(passed=2)
    assert same.ret == 0
    same.stdout.fnmatch_lines(["*CLEVER compared with baseline 'main'*", "*test_gate [[]linear[]]*+0*OK"])

    # "Retrain worse": the run fails with the delta table and the offending tests.
    pytester.makepyfile(test_model=_module(4.0))
    worse = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%", "--clever-json=out.json")
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    worse.assert_outcomes(passed=2)  # the tests themselves ran fine; the run fails on the regression
    worse.stdout.fnmatch_lines(
        [
            "*CLEVER compared with baseline 'main'*",
            "*test_model.py::test_gate [[]linear[]]*REGRESSED",
            "*CLEVER regressions (2):*",
            "*test_gate [[]linear[]]: mean dropped * -> * (*%, allowed mean:10%)",
        ]
    )
    doc = json.loads((pytester.path / "out.json").read_text())
    assert len(doc["regressions"]) == 2 and "test_gate" in doc["regressions"][0]


def test_compare_latest_by_default_and_absolute_rule(pytester):
    pytester.makepyfile(test_model=_module(1.0))
    pytester.runpytest("--clever-save").assert_outcomes(passed=2)
    pytester.makepyfile(test_model=_module(4.0))
    assert pytester.runpytest("--clever-compare", "--clever-compare-fail=min:1000").ret == 0
    assert pytester.runpytest("--clever-compare", "--clever-compare-fail=min:0.0001").ret == pytest.ExitCode.TESTS_FAILED


def test_different_settings_are_not_comparable(pytester):
    pytester.makepyfile(test_model=_module(1.0, radius=5.0))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    pytester.makepyfile(test_model=_module(4.0, radius=0.01))
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%")
    assert result.ret == 0  # not compared, so not a regression
    result.stdout.fnmatch_lines(["*test_gate [[]linear[]]*NOT COMPARABLE", "*radius 5.0 -> 0.01*"])


def test_missing_baseline_warns_by_default_and_fails_on_request(pytester):
    pytester.makepyfile(test_model=_module(1.0))
    result = pytester.runpytest("--clever-compare=main")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*no comparison: no saved runs in*"])
    strict = pytester.runpytest("--clever-compare=main", "--clever-baseline-missing=fail")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED


def test_a_test_missing_from_the_baseline_is_reported_not_fatal(pytester):
    pytester.makepyfile(test_model=_module(1.0))
    pytester.runpytest("--clever-save=main", "-k", "test_gate").assert_outcomes(passed=1)
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_other*MISSING BASELINE"])


def test_corrupt_file_in_storage_does_not_hide_the_baseline(pytester):
    pytester.makepyfile(test_model=_module(1.0))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    (pytester.path / ".clever" / "zzz-corrupt.json").write_text("{")
    result = pytester.runpytest("--clever-compare=main")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*CLEVER compared with baseline 'main'*"])


def test_ini_storage_folder_and_bad_save_name(pytester):
    pytester.makeini("[pytest]\nclever_storage = baselines\n")
    pytester.makepyfile(test_model=_module(1.0))
    pytester.runpytest("--clever-save=v1").assert_outcomes(passed=2)
    assert list((pytester.path / "baselines").glob("*_v1.json"))
    bad = pytester.runpytest("--clever-save=bad name")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "invalid run name" in bad.stderr.str()


@pytest.mark.slow  # real pytest subprocesses (xdist workers): CI runs it
def test_save_under_xdist_writes_one_complete_run(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_model=_module(1.0))
    result = pytester.runpytest_subprocess("-n", "2", "--clever-save=main")
    result.assert_outcomes(passed=2)
    runs, problems = _store(pytester).runs()
    assert problems == [] and len(runs) == 1 and len(runs[0].records) == 2
