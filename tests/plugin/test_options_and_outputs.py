"""The pytest plugin end to end: real pytest runs in a temp dir (pytester), checking outcomes and output."""

import json
import xml.etree.ElementTree as ET

import pytest

from .user_modules import SMALL_SAMPLE_ARGS, linear_module
from .xdist_runs import serial_and_xdist

# A user's test module: a linear model, whose scores are exact and fast.
MODEL = linear_module()


def _json(pytester, name="out.json"):
    return json.loads((pytester.path / name).read_text())


def test_marker_threshold_fails_a_test_whose_body_asserts_nothing(pytester):
    pytester.makepyfile(
        MODEL
        + f"""
@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS}, min_score=50.0)
def test_gate(clever):
    clever.scores(linear(), XS)
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*CLEVER robustness below threshold for"
            " test_marker_threshold_fails_a_test_whose_body_asserts_nothing.py::test_gate:",
            "*mean score * < min_score 50*(over 5 inputs)",
            "*settings: L2, radius 5, order 1, 10x16 samples, seed *",
            "*worst inputs:",
            "*input * score * predicted * -> target *",
            "*EVT fit: *",
        ]
    )
    # A robustness failure is a formatted message, not a traceback from torch.
    assert "site-packages/torch" not in result.stdout.str()


def test_marker_threshold_passes(pytester):
    pytester.makepyfile(
        MODEL
        + f"""
@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS}, min_score=0.001, statistic="min")
def test_gate(clever):
    report = clever.scores(linear(), XS)
    assert report.min >= 0.001
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_assert_robust_failure_explains_itself(pytester):
    pytester.makepyfile(
        MODEL
        + f"""
@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_gate(clever):
    clever.assert_robust(linear(), XS, min_score=10.0, statistic="q10", name="lin")
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*below threshold for *::test_gate [[]lin[]]:", "*q10 score * < min_score 10*"])


def test_ini_threshold_and_radius(pytester):
    pytester.makeini(
        """
[pytest]
clever_radius = 5.0
clever_min_score = 50
clever_n_batches = 10
clever_batch_size = 16
"""
    )
    pytester.makepyfile(MODEL + "\ndef test_gate(clever):\n    clever.scores(linear(), XS)\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*mean score * < min_score 50*"])


def test_cli_options_and_precedence_marker_over_cli_over_ini(pytester):
    pytester.makeini("[pytest]\nclever_radius = 3.0\nclever_n_batches = 20\nclever_batch_size = 8\nclever_seed = 5\n")
    pytester.makepyfile(
        MODEL
        + """
def test_ini_and_cli(clever):
    clever.scores(linear(), XS)


@pytest.mark.clever(n_batches=12, radius=4.0)
def test_marker(clever):
    clever.scores(linear(), XS)
"""
    )
    result = pytester.runpytest("--clever-n-batches=15", "--clever-json=out.json")
    result.assert_outcomes(passed=2)
    records = {r["nodeid"].split("::")[1]: r for r in _json(pytester)["records"]}
    assert records["test_ini_and_cli"]["settings"]["n_batches"] == 15  # CLI over ini
    assert records["test_ini_and_cli"]["settings"]["batch_size"] == 8  # ini over default
    assert records["test_ini_and_cli"]["settings"]["radius"] == 3.0
    assert records["test_marker"]["settings"]["n_batches"] == 12  # marker over CLI
    assert records["test_marker"]["settings"]["radius"] == 4.0  # marker over ini


def test_norm_radius_and_order_are_command_line_options_below_the_marker(pytester):
    pytester.makepyfile(
        MODEL
        + f"""
@pytest.mark.clever({SMALL_SAMPLE_ARGS})
def test_cli(clever):
    clever.scores(linear(), XS)


@pytest.mark.clever(radius=4.0, norm=2, {SMALL_SAMPLE_ARGS})
def test_marker(clever):
    clever.scores(linear(), XS)
"""
    )
    result = pytester.runpytest(
        "--clever-radius=0.5", "--clever-norm=inf", "--clever-order=1", "--clever-json=out.json"
    )
    result.assert_outcomes(passed=2)
    records = {r["nodeid"].split("::")[1]: r for r in _json(pytester)["records"]}
    assert records["test_cli"]["settings"]["radius"] == 0.5
    assert records["test_cli"]["settings"]["norm"] == "inf"
    assert records["test_cli"]["settings"]["order"] == 1
    assert all(r["score"] <= 0.5 for r in records["test_cli"]["results"])  # the radius reached the scores
    assert records["test_marker"]["settings"]["radius"] == 4.0  # marker over the command line
    assert records["test_marker"]["settings"]["norm"] == 2


def test_seeds_are_per_test_and_follow_the_base_seed(pytester):
    pytester.makepyfile(
        MODEL
        + f"""
@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_a(clever):
    clever.scores(linear(), XS)


@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_b(clever):
    clever.scores(linear(), XS)
"""
    )

    def seeds(*args):
        pytester.runpytest("--clever-json=out.json", *args).assert_outcomes(passed=2)
        return {r["nodeid"]: r["settings"]["seed"] for r in _json(pytester)["records"]}

    first, again, other = seeds(), seeds(), seeds("--clever-seed=7")
    assert first == again
    assert len(set(first.values())) == 2
    assert set(first.values()).isdisjoint(other.values())


def test_summary_table_is_shown_only_when_the_plugin_was_used(pytester):
    pytester.makepyfile(
        MODEL
        + f"""
@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS}, min_score=0.001)
def test_gate(clever):
    clever.scores(linear(), XS, name="linear")


def test_plain():
    pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= CLEVER robustness =*",
            "test * norm * order * n * min * mean * median * threshold * status",
            "*::test_gate [[]linear[]] * L2 * 1 * 5 * mean>=0.001 * PASSED",
        ]
    )
    pytester.makepyfile("def test_plain():\n    pass\n")
    assert "CLEVER robustness" not in pytester.runpytest().stdout.str()


def test_json_document(pytester):
    pytester.makepyfile(
        MODEL
        + f"""
@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS}, min_score=50)
def test_gate(clever):
    clever.score(linear(), XS[0], name="one")
"""
    )
    pytester.runpytest("--clever-json=out.json").assert_outcomes(failed=1)
    doc = _json(pytester)
    assert doc["schema"] == 5
    assert {"pytest_clever", "torch", "python", "numpy", "scipy"} <= set(doc["environment"])
    (record,) = doc["records"]
    assert record["name"] == "one" and record["n"] == 1 and record["status"] == "failed"
    assert record["threshold"] == {"statistic": "mean", "min_score": 50.0}
    assert record["settings"]["radius"] == 5.0 and record["settings"]["norm"] == 2
    assert isinstance(record["settings"]["seed"], int) and record["elapsed"] > 0
    assert record["results"][0]["per_target"]
    assert doc["failed"] == [f"{record['nodeid']} [one]"]


def test_junit_xml_properties(pytester):
    pytester.makepyfile(
        MODEL
        + f"\n@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})\n"
        + "def test_gate(clever):\n    clever.scores(linear(), XS)\n"
    )
    pytester.runpytest("--junitxml=junit.xml").assert_outcomes(passed=1)
    props = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "junit.xml").iter("property")}
    assert {"clever.min", "clever.mean", "clever.median"} <= set(props)
    assert float(props["clever.mean"]) > 0


def test_strict_markers_accepts_the_clever_marker(pytester):
    pytester.makepyfile(
        MODEL
        + f"\n@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})\n"
        + "def test_gate(clever):\n    clever.scores(linear(), XS)\n"
    )
    pytester.runpytest("--strict-markers", "-W", "error::pytest.PytestUnknownMarkWarning").assert_outcomes(passed=1)


def test_markers_help_lists_every_marker_keyword(pytester):
    from pytest_clever.core.settings import OPTIONS

    result = pytester.runpytest("--markers")
    [line] = [line for line in result.outlines if line.startswith("@pytest.mark.clever(")]
    listed = {part.split("=")[0] for part in line[len("@pytest.mark.clever(") : line.index(")")].split(", ")}
    assert listed == {name for name, option in OPTIONS.items() if option.marker}


def test_clever_skip_skips_tests_that_use_the_fixture(pytester):
    pytester.makepyfile(
        MODEL
        + "\n@pytest.mark.clever(radius=5.0)\ndef test_gate(clever):\n    1 / 0\n\n\ndef test_plain():\n    pass\n"
    )
    result = pytester.runpytest("--clever-skip", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*--clever-skip*"])


@pytest.mark.parametrize(
    "marker, message",
    [
        ("radius=1.0, colour='red'", "unknown argument(s) colour"),
        ("radius=-1.0", "radius must be a finite number > 0"),
        ("radius=1.0, statistic='mode'", "unknown statistic 'mode'"),
        ("radius=1.0, norm=3", "unknown norm 3"),
        ("2.0", "keyword arguments only"),
    ],
)
def test_bad_marker_arguments_are_a_usage_error_at_collection(pytester, marker, message):
    pytester.makepyfile(f"import pytest\n\n@pytest.mark.clever({marker})\ndef test_gate(clever):\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_bad_cli_value_is_a_usage_error(pytester):
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--clever-n-batches=3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--clever-n-batches: must be an integer >= 10*"])


def test_bad_model_input_fails_the_test_with_the_engine_message(pytester):
    pytester.makepyfile(
        MODEL
        + f"\n@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})\n"
        + "def test_gate(clever):\n    clever.scores(linear(), XS * float('nan'))\n"
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*InvalidInputError: input 0: x contains 4 NaN or infinite value(s)*"])


def test_missing_radius_says_how_to_set_it(pytester):
    pytester.makepyfile(MODEL + "\ndef test_gate(clever):\n    clever.scores(linear(), XS)\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*needs a radius*clever_radius*"])


def test_help_lists_the_options_in_their_own_group(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "pytest-clever: CLEVER robustness scores:",
            "*--clever-n-batches=N_BATCHES*",
            "*--clever-json=PATH*",
            "*--clever-skip*",
        ]
    )
    text = result.stdout.str()
    for key in (
        "clever_norm",
        "clever_radius",
        "clever_n_batches",
        "clever_batch_size",
        "clever_seed",
        "clever_device",
        "clever_order",
        "clever_min_score",
    ):
        assert key in text


@pytest.mark.slow  # real pytest subprocesses (xdist workers): CI runs it
def test_xdist_workers_report_to_the_controller(pytester):
    tests = "".join(
        f"\n@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS}, min_score=0.001)\n"
        f"def test_{i}(clever):\n    clever.scores(linear(), XS)\n"
        for i in range(4)
    )
    pytester.makepyfile(MODEL + tests)
    runs = serial_and_xdist(pytester, passed=4)
    result, xdist_doc = runs["xdist"]
    result.stdout.fnmatch_lines(["*= CLEVER robustness =*"])
    assert sum("PASSED" in line for line in result.stdout.lines) == 4

    def by_node(doc):
        return {r["nodeid"]: (r["settings"]["seed"], r["mean"]) for r in doc["records"]}

    assert by_node(xdist_doc) == by_node(runs["serial"][1])


def test_a_failing_call_among_several_says_which_call_and_where(pytester):
    source = (
        MODEL
        + f"""
@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_two_calls(clever):
    clever.scores(linear(), XS, name="easy", min_score=0.001)
    clever.scores(linear(), XS, name="hard", min_score=50.0)


@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_unnamed(clever):
    clever.scores(linear(), XS[:2])
    clever.assert_robust(linear(), XS[:3], min_score=50.0)
"""
    )
    path = pytester.makepyfile(test_where=source)
    lines = path.read_text().splitlines()
    hard = 1 + next(i for i, line in enumerate(lines) if 'name="hard"' in line)
    robust = 1 + next(i for i, line in enumerate(lines) if "assert_robust(" in line)
    result = pytester.runpytest("--tb=short")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*CLEVER robustness below threshold for test_where.py::test_two_calls [[]hard[]]:",
            f"*where: call 2 in the test (name='hard'), test_where.py:{hard}",
            "*mean score * < min_score 50*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*CLEVER robustness below threshold for test_where.py::test_unnamed #1:",
            f"*where: call 2 in the test (no name=), test_where.py:{robust}",
        ]
    )
    assert "where: call 1" not in result.stdout.str()  # the passing calls are not named as failing
