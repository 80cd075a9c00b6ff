"""Baselines through pytest: save, compare, fail on a regression, not-comparable settings, incomplete runs,
outputs that fail at the end, storage problems named, xdist."""

import json

import pytest

from pytest_clever.runs.storage import Storage

from .user_modules import SMALL_SAMPLE_ARGS, linear_module


def _gates(radius: float, factor: float = 1.0) -> str:
    """Two tests scoring ``linear(factor)``: test_gate (named "linear", all of XS) and test_other (XS[:2])."""
    return f"""

@pytest.mark.clever(radius={radius}, {SMALL_SAMPLE_ARGS})
def test_gate(clever):
    clever.scores(linear({factor}), XS, name="linear")


@pytest.mark.clever(radius={radius}, {SMALL_SAMPLE_ARGS})
def test_other(clever):
    clever.scores(linear({factor}), XS[:2])
"""


def _module(factor: float, radius: float = 5.0) -> str:
    # Scaling the weights on input 0 (which is 0 in every x) steepens the margins
    # without moving them: factor > 1 is a strictly less robust model.
    return linear_module(first_feature_zero=True) + _gates(radius, factor)


def _scoring(radius: float = 5.0) -> str:
    # A user's module: a linear model, exact and fast.
    return linear_module() + _gates(radius)


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
    assert (
        pytester.runpytest("--clever-compare", "--clever-compare-fail=min:0.0001").ret == pytest.ExitCode.TESTS_FAILED
    )


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


@pytest.mark.slow  # a real pytest subprocess interrupted by Ctrl-C: CI runs it
def test_an_interrupted_run_is_saved_incomplete_and_never_becomes_the_baseline(pytester):
    # Ctrl-C mid-run; then a strict compare with nothing recorded says why.
    pytester.makepyfile(test_model=_scoring() + "\n\ndef test_zz_ctrl_c():\n    raise KeyboardInterrupt\n")
    cut = pytester.runpytest_subprocess("--clever-save=main", "-p", "no:randomly")
    assert cut.ret == pytest.ExitCode.INTERRUPTED
    cut.stdout.fnmatch_lines(["*CLEVER run saved as INCOMPLETE (interrupted*) to *_main.json: never used*"])
    (run,) = Storage(pytester.path / ".clever").runs()[0]
    assert run.incomplete.startswith("interrupted") and len(run.records) == 2
    data = json.loads(run.path.read_text())
    assert data["incomplete"] == run.incomplete

    strict = pytester.runpytest_subprocess(
        "--clever-compare=main",
        "--clever-baseline-missing=fail",
        "-k",
        "not test_zz",
        "--deselect",
        "test_model.py::test_gate",
        "--deselect",
        "test_model.py::test_other",
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
    # Writable at the start, not at the end (a test takes the paths away).
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
    # A malformed record and a newer-schema file are named with why.
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
            "*test_gate [[]linear[]]: not comparable with baseline main"
            " (radius 5.0 -> 0.01; --clever-not-comparable=fail)",
        ]
    )
    relaxed = pytester.runpytest("--clever-compare=main", "--clever-not-comparable=warn")
    assert relaxed.ret == 0
    relaxed.stdout.fnmatch_lines(["*test_gate [[]linear[]]*NOT COMPARABLE"])


def _inputs_module(pick: str, targets: str = "all", n_inputs: int = 10) -> str:
    """test_gate scores ``linear()`` on ``XS[pick]``: the inputs a user's filter selected from a pool."""
    test = f"""

@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS}, targets={targets!r})
def test_gate(clever):
    clever.scores(linear(), XS[{pick}], name="linear")
"""
    return linear_module(n_inputs=n_inputs) + test


def test_inputs_that_changed_are_not_paired_by_position(pytester):
    # The new user's repro: the baseline scored one selection of inputs, this run another of the same size
    # (a changed filter or data seed). Paired by position, input 2 would meet another input's score, and the
    # same model would show a "significant" drop of the mean (1.21 -> 0.698).
    pytester.makepyfile(test_model=_inputs_module("[0, 1, 6, 7, 8, 9]"))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=1)
    pytester.makepyfile(test_model=_inputs_module("[0, 1, 2, 3, 4, 5]"))
    rule = "--clever-compare-fail=mean:1%:significant"
    warned = pytester.runpytest("--clever-compare=main", rule)
    assert warned.ret == 0
    warned.stdout.fnmatch_lines(
        [
            "*test_gate [[]linear[]]*NOT COMPARABLE",
            "*test_gate [[]linear[]]: inputs differ: 2 of the baseline's 6 inputs are in this run;"
            " only in the baseline: inputs 2, 3, 4, 5; only in this run: inputs 2, 3, 4, 5*",
        ]
    )
    assert "REGRESSED" not in warned.stdout.str() and "significantly" not in warned.stdout.str()
    strict = pytester.runpytest("--clever-compare=main", rule, "--clever-not-comparable=fail")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*test_gate [[]linear[]]: not comparable with baseline main (inputs differ: *"])


def test_a_filtered_input_set_that_lost_inputs_is_not_compared_by_its_statistics(pytester):
    # The filter let through fewer inputs: the means are over other inputs, so no delta is reported.
    pytester.makepyfile(test_model=_inputs_module("[0, 1, 2, 3, 4, 5]"))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=1)
    pytester.makepyfile(test_model=_inputs_module("[0, 1, 2, 4]"))
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:1%")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*test_gate [[]linear[]]*NOT COMPARABLE",
            "*inputs differ: 4 of the baseline's 6 inputs are in this run; only in the baseline: inputs 3, 5;*",
        ]
    )
    assert "REGRESSED" not in result.stdout.str()


def _picked_module(pick: str, factor: float) -> str:
    """test_gate scores ``linear(factor)`` (less robust for factor > 1) on ``XS[pick]`` of a pool of 12 inputs."""
    test = f"""

@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_gate(clever):
    clever.scores(linear({factor}), XS[{pick}], name="linear")
"""
    return linear_module(n_inputs=12, first_feature_zero=True) + test


def test_a_worse_model_that_changed_one_input_is_compared_on_the_shared_inputs(pytester):
    # The README walkthrough: the conftest keeps "the first N inputs the model gets right", so a worse
    # model swaps one of them. 9 of 10 inputs pair on each side (>= 80%): compared on those, it regressed.
    pytester.makepyfile(test_model=_picked_module("list(range(10))", 1.0))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=1)
    pytester.makepyfile(test_model=_picked_module("list(range(9)) + [10]", 4.0))
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%:significant")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*test_gate [[]linear[]]*on 9 shared inputs, paired, 95% intervals of estimator noise*REGRESSED",
            "*test_gate [[]linear[]]: note: compared on the 9 inputs both runs scored; "
            "1 input of the baseline and 1 of this run left out*",
            "*CLEVER regressions (1):*",
            "*test_gate [[]linear[]]: mean dropped * significantly more than allowed (mean:10%:significant), "
            "by the paired 95% interval of estimator noise*",
        ]
    )
    assert "NOT COMPARABLE" not in result.stdout.str()


def test_the_same_inputs_in_another_order_pair_by_fingerprint(pytester):
    pytester.makepyfile(test_model=_inputs_module("[0, 1, 2, 3, 4, 5]"))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=1)
    pytester.makepyfile(test_model=_inputs_module("[5, 4, 3, 2, 1, 0]"))
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=min:0")
    assert result.ret == 0
    # CLEVER is exact on a linear model: each input meets its own score again, so every delta is 0 and so
    # are the bounds of its interval (paired by position, the deltas would spread the interval wide).
    result.stdout.fnmatch_lines(["*test_gate [[]linear[]]*[[]+0, +0[]]*[[]+0, +0[]]  paired, 95% intervals*OK"])


def test_a_baseline_without_fingerprints_is_paired_by_position_and_says_so(pytester):
    pytester.makepyfile(test_model=_inputs_module("[0, 1, 2, 3, 4, 5]"))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=1)
    (path,) = (pytester.path / ".clever").glob("*main*.json")
    doc = json.loads(path.read_text())
    for record in doc["records"]:
        for result in record["results"]:
            del result["fingerprint"]
    path.write_text(json.dumps(doc))
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*test_gate [[]linear[]]*paired by position (the baseline has no input fingerprints), 95% intervals*OK"]
    )


def test_random_targets_with_another_seed_are_not_comparable(pytester):
    # random-k draws each input's classes with the seed: another --clever-seed scores other classes.
    pytester.makepyfile(test_model=_inputs_module("[0, 1, 2, 3, 4, 5]", targets="random-1"))
    pytester.runpytest("--clever-save=main", "--clever-seed=0").assert_outcomes(passed=1)
    result = pytester.runpytest(
        "--clever-compare=main",
        "--clever-seed=3",
        "--clever-compare-fail=mean:1%:significant",
        "--clever-not-comparable=fail",
    )
    assert "REGRESSED" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*test_gate [[]linear[]]*NOT COMPARABLE",
            "*test_gate [[]linear[]]: not comparable with baseline main (seed * -> * (targets random-1 draws its"
            " classes with the seed); --clever-not-comparable=fail)",
        ]
    )
    same = pytester.runpytest("--clever-compare=main", "--clever-seed=0", "--clever-compare-fail=mean:1%:significant")
    assert same.ret == 0
    same.stdout.fnmatch_lines(["*test_gate [[]linear[]]*paired, 95% intervals*OK"])


def test_odd_values_in_a_baseline_are_named_per_record_not_an_internal_error(pytester):
    # null is how NaN is written; a truncated record holds fewer results than its n says.
    pytester.makepyfile(test_model=_scoring())
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    (saved,) = (pytester.path / ".clever").glob("*_main.json")
    data = json.loads(saved.read_text())
    by_test = {r["nodeid"].split("::")[1]: r for r in data["records"]}
    by_test["test_gate"]["results"][1]["score"] = None
    by_test["test_other"]["results"] = by_test["test_other"]["results"][:1]
    saved.write_text(json.dumps(data))
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%")
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output, output
    assert result.ret == 0, output
    result.stdout.fnmatch_lines_random(
        [
            "baseline skipped *_main.json: record 0 (test_model.py::test_gate): "
            "field 'results[[]1[]].score' must be a number, got null (NaN)",
            "baseline skipped *_main.json: record 1 (test_model.py::test_other): "
            "field 'results' holds 1 result(s) but field 'n' says 2 inputs*",
            "*test_gate [[]linear[]]*NOT COMPARABLE",
            "*test_other*NOT COMPARABLE",
            "*test_gate [[]linear[]]: baseline record unreadable: *_main.json: record 0 (test_model.py::test_gate): "
            "field 'results[[]1[]].score' must be a number, got null (NaN)",
        ]
    )
    # A corrupt record must not turn its test's gate off: it follows --clever-not-comparable, not the
    # (warn-only by default) missing-baseline policy.
    strict = pytester.runpytest("--clever-compare=main", "--clever-not-comparable=fail")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED and "INTERNALERROR" not in strict.stdout.str()
    strict.stdout.fnmatch_lines(
        ["*test_gate [[]linear[]]: not comparable with baseline main (baseline record unreadable: *"]
    )


def test_a_non_list_target_classes_in_a_baseline_is_named_not_an_internal_error(pytester):
    pytester.makepyfile(test_model=_inputs_module("[0, 1, 2, 3, 4, 5]", targets="random-1"))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=1)
    (saved,) = (pytester.path / ".clever").glob("*_main.json")
    data = json.loads(saved.read_text())
    data["records"][0]["results"][0]["target_classes"] = 5
    saved.write_text(json.dumps(data))
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%")
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output, output
    assert result.ret == 0, output
    result.stdout.fnmatch_lines(
        [
            "*field 'results[[]0[]].target_classes' must be a list, got int*",
            "*test_gate [[]linear[]]*NOT COMPARABLE",
        ]
    )
