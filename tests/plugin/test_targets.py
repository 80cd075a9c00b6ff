"""Target selection through the pytest layer: ini, command line, marker and call, with precedence."""

import json

from .user_modules import SMALL_SAMPLE_ARGS, linear_module

MODEL = linear_module()


def test_target_and_targets_in_one_marker_is_a_usage_error(pytester):
    pytester.makepyfile(
        MODEL
        + f"""
@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS}, target=1, targets="top-1")
def test_both(clever):
    clever.scores(linear(), XS)
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stderr.fnmatch_lines(["*test_both: give target= or targets=, not both*"])
    assert result.ret == 4


def test_targets_from_ini_cli_marker_and_call_are_recorded_and_decide_comparability(pytester):
    pytester.makeini("[pytest]\nclever_radius = 5.0\nclever_targets = top-1\n")
    pytester.makepyfile(
        MODEL
        + f"""
@pytest.mark.clever({SMALL_SAMPLE_ARGS})
def test_ini(clever):
    clever.scores(linear(), XS)

@pytest.mark.clever({SMALL_SAMPLE_ARGS}, targets="least-likely")
def test_marker(clever):
    clever.scores(linear(), XS)

@pytest.mark.clever({SMALL_SAMPLE_ARGS}, targets="least-likely")
def test_call(clever):
    clever.scores(linear(), XS[:2], target=2, name="one")  # target=j is targets=[j], at the call
"""
    )
    result = pytester.runpytest("--clever-json=out.json", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        ["*test_targets_from_ini_cli_marker_and_call_are_recorded_and_decide_comparability.py::test_ini * top-1 *"]
    )
    records = {r["nodeid"].split("::")[1]: r for r in json.loads((pytester.path / "out.json").read_text())["records"]}
    assert {k: r["settings"]["targets"] for k, r in records.items()} == {
        "test_ini": "top-1",
        "test_marker": "least-likely",
        "test_call": "2",
    }
    assert all(len(res["target_classes"]) == 1 for r in records.values() for res in r["results"])
    # The command line beats the ini; a baseline with other targets is not comparable.
    saved = pytester.runpytest("--clever-targets=all", "--clever-save=main", "-p", "no:cacheprovider", "-k", "ini")
    saved.stdout.fnmatch_lines(["*test_ini * all *"])
    compared = pytester.runpytest(
        "--clever-compare=main", "--clever-not-comparable=fail", "-p", "no:cacheprovider", "-k", "ini"
    )
    compared.stdout.fnmatch_lines(["*NOT COMPARABLE*", "*targets 'all' -> 'top-1'*"])
    assert compared.ret == 1
