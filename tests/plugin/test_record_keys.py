"""Record keys through pytest: several calls per test, matching baselines, order and seeds.

Real pytest runs (in-process, as in test_options_and_outputs.py; the xdist one in subprocesses).
"""

import json

import pytest

from .user_modules import SMALL_SAMPLE_ARGS, linear_module
from .xdist_runs import serial_and_xdist

# A module whose models differ only in how steep their margins are: weights on input 0
# (0 in every x) scaled by ``factor``; factor 2 drops the mean score by about 35%.
MODELS = linear_module(first_feature_zero=True)

MARKER_ARGS = f"radius=5.0, {SMALL_SAMPLE_ARGS}"


def _two_models(first: float, second: float) -> str:
    return (
        MODELS
        + f"""
@pytest.mark.clever({MARKER_ARGS})
def test_two_models(clever):
    clever.scores(linear({first}), XS)
    clever.scores(linear({second}), XS)
"""
    )


def test_an_unnamed_model_that_dropped_fails_the_compare(pytester):
    # Baseline: a robust first model, a steeper second one. Now the first model is as steep as
    # the second: matched by (test, name) alone it would be compared with the second's baseline
    # and pass; matched by call index it is a 35% drop.
    pytester.makepyfile(test_models=_two_models(1.0, 2.0))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=1)
    pytester.makepyfile(test_models=_two_models(2.0, 2.0))
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*CLEVER regressions (1):*", "*test_models.py::test_two_models: mean dropped * -> * (3*%, allowed mean:10%)"]
    )
    lines = [line for line in result.stdout.lines if line.startswith("test_models.py::test_two_models")]
    assert any(line.endswith("REGRESSED") and "#1" not in line for line in lines)
    assert any(line.endswith("OK") and "#1" in line for line in lines)


def test_a_loop_of_calls_compared_with_its_own_baseline_is_ok(pytester):
    pytester.makepyfile(
        test_loop=MODELS
        + f"""
@pytest.mark.clever({MARKER_ARGS})
def test_loop(clever):
    model = linear()
    for i in range(4):
        clever.score(model, XS[i])
"""
    )
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=1)
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%", "--clever-json=out.json")
    assert result.ret == 0
    rows = [line for line in result.stdout.lines if line.startswith("test_loop.py::test_loop")]
    # Four summary rows and four comparison rows, told apart by the call index, all unchanged.
    assert [r.split()[0:2] for r in rows[:4]] == [
        ["test_loop.py::test_loop", "L2"],
        ["test_loop.py::test_loop", "#1"],
        ["test_loop.py::test_loop", "#2"],
        ["test_loop.py::test_loop", "#3"],
    ]
    assert sum(r.endswith("OK") for r in rows) == 4 and not any("REGRESSED" in r for r in rows)
    records = json.loads((pytester.path / "out.json").read_text())["records"]
    assert [r["call"] for r in records] == [0, 1, 2, 3]
    assert len({r["settings"]["seed"] for r in records}) == 4  # each call its own derived seed


ORDER = (
    MODELS
    + f"""
@pytest.mark.clever({MARKER_ARGS})
def test_zeta(clever):
    clever.scores(linear(), XS[:2], name="b")
    clever.scores(linear(), XS[:2], name="a")
    clever.scores(linear(), XS[:2], name="b")


@pytest.mark.clever({MARKER_ARGS})
def test_alpha(clever):
    clever.scores(linear(), XS[:2])
    clever.scores(linear(), XS[:2])


@pytest.mark.clever({MARKER_ARGS})
def test_mid(clever):
    clever.scores(linear(), XS[:2])
"""
)
SORTED = [
    ["test_order.py::test_alpha", None, 0],
    ["test_order.py::test_alpha", None, 1],
    ["test_order.py::test_mid", None, 0],
    ["test_order.py::test_zeta", "a", 0],
    ["test_order.py::test_zeta", "b", 0],
    ["test_order.py::test_zeta", "b", 1],
]


@pytest.mark.slow  # real pytest subprocesses (xdist workers): CI runs it
def test_records_and_rows_are_sorted_the_same_serially_and_under_xdist(pytester):
    pytester.makepyfile(test_order=ORDER)
    outputs = {}
    for label, (result, doc) in serial_and_xdist(pytester, passed=3).items():
        keys = [[r["nodeid"], r["name"], r["call"]] for r in doc["records"]]
        assert keys == SORTED, label
        start = result.stdout.lines.index(next(line for line in result.stdout.lines if "CLEVER robustness" in line))
        outputs[label] = [line.split()[:3] for line in result.stdout.lines[start + 2 : start + 8]]
        outputs[label + " seeds"] = [r["settings"]["seed"] for r in doc["records"]]
    assert outputs["serial"] == outputs["xdist"]
    assert [row[0] for row in outputs["serial"]] == [k[0] for k in SORTED]
    assert (
        outputs["serial"][1][1] == "#1"
        and outputs["serial"][3][1] == "[a]"
        and outputs["serial"][5][1:3] == ["[b]", "#1"]
    )
    assert outputs["serial seeds"] == outputs["xdist seeds"]


def test_a_key_recorded_twice_in_one_run_is_an_error_not_an_overwrite(pytester):
    pytester.makepyfile(
        test_twice=MODELS
        + f"\n@pytest.mark.clever({MARKER_ARGS})\ndef test_gate(clever):\n    clever.scores(linear(), XS[:2])\n"
    )
    # The same test collected twice records the same key twice.
    result = pytester.runpytest("test_twice.py", "test_twice.py", "--keep-duplicates", "--clever-save=main")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*CLEVER record errors (1):*", "*test_twice.py::test_gate is recorded twice*"])
    assert not (pytester.path / ".clever").exists()  # such a run is never saved as a baseline


def test_a_seed_given_to_the_fixture_is_a_base_seed_and_the_record_reproduces_the_call(pytester):
    pytester.makepyfile(
        test_seed=MODELS
        + f"""
from pytest_clever import clever_scores
from pytest_clever.core.seeds import derive_seed


@pytest.mark.clever({MARKER_ARGS})
def test_seed(clever, request):
    report = clever.scores(linear(), XS, seed=3, name="m")
    assert report.seed == derive_seed(3, request.node.nodeid, "m", 0) != 3
    again = clever_scores(linear(), XS, radius=5.0, n_batches=10, batch_size=16, seed=report.seed)
    assert again.scores.tolist() == report.scores.tolist()
    assert clever.scores(linear(), XS, seed=3, name="m").seed == derive_seed(3, request.node.nodeid, "m", 1)
"""
    )
    result = pytester.runpytest("--clever-json=out.json")
    result.assert_outcomes(passed=1)
    records = json.loads((pytester.path / "out.json").read_text())["records"]
    assert [r["call"] for r in records] == [0, 1] and records[0]["settings"]["seed"] != 3
