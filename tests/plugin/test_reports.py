"""The CI reports through pytest: the markdown job summary ($GITHUB_STEP_SUMMARY, --clever-md) and the HTML
report (--clever-html): what they hold, when they are written, and paths that are usage errors up front."""

import os

import pytest

from .user_modules import SMALL_SAMPLE_ARGS, linear_module

markdown_it = pytest.importorskip("markdown_it")

# A user's module: test_a scores the same model every time; test_b a model whose robustness `factor` sets
# (factor > 1 is strictly less robust: see linear_module). test_a sorts first, so only the report's order
# can put test_b's regression at the top.
_MODULE = """

@pytest.mark.clever(radius=5.0, {args}, min_score=0.01)
def test_a(clever):
    clever.scores(linear(1.0), XS)


@pytest.mark.clever(radius=5.0, {args}, min_score=0.01)
def test_b(clever):
    clever.scores(linear({factor}), XS, name="m|<b>")
"""


def _module(factor: float) -> str:
    return linear_module(first_feature_zero=True) + _MODULE.format(args=SMALL_SAMPLE_ARGS, factor=factor)


def _body_rows(text: str) -> list[str]:
    """The first cell of each body row of the first table of a markdown text."""
    md = markdown_it.MarkdownIt("commonmark").enable("table")
    tokens = md.parse(text)
    firsts, in_body = [], False
    for k, token in enumerate(tokens):
        in_body = in_body or token.type == "tbody_open"
        if token.type == "table_close":
            break
        if in_body and token.type == "inline" and tokens[k - 2].type == "tr_open":
            firsts.append(md.renderer.render(token.children, md.options, {}))
    return firsts


def _err(result) -> str:
    return result.stderr.str() + result.stdout.str()


@pytest.fixture
def step_summary(pytester, monkeypatch):
    """A job summary file that already holds an earlier step's section, named by $GITHUB_STEP_SUMMARY."""
    path = pytester.path / "step_summary.md"
    path.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    return path


def test_the_job_summary_is_appended_with_a_regression_at_the_top(pytester, step_summary):
    pytester.makepyfile(test_model=_module(1.0))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    first = step_summary.read_text()
    assert first.startswith("# earlier step\n## CLEVER robustness\n") and first.count("## CLEVER robustness") == 1
    assert _body_rows(first[first.index("## CLEVER") :]) == [
        "test_model.py::test_a",
        "test_model.py::test_b [m|&lt;b&gt;]",
    ]

    pytester.makepyfile(test_model=_module(4.0))
    result = pytester.runpytest(
        "--clever-compare=main", "--clever-compare-fail=mean:10%", "--clever-md=local.md", "--clever-html=report.html"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["CLEVER report written to local.md", "CLEVER report written to *step_summary.md", "*written to report.html"]
    )
    text = step_summary.read_text()
    assert text.count("## CLEVER robustness") == 2 and text.startswith(first)  # appended, nothing replaced
    second = text[len(first) :]
    assert second == (pytester.path / "local.md").read_text()
    assert "**2 recorded calls, 1 regressed against the baseline**" in second
    assert _body_rows(second) == ["test_model.py::test_b [m|&lt;b&gt;]", "test_model.py::test_a"]
    assert "| PASSED, REGRESSED |" in second and "### Compared with baseline main (" in second
    page = (pytester.path / "report.html").read_text()
    assert page.count("<svg") == 2 * (1 + 3 + 1) + 1 and "test_b [m|&lt;b&gt;]" in page and "<b>" not in page


def test_a_run_without_clever_results_leaves_the_job_summary_alone(pytester, step_summary):
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest().assert_outcomes(passed=1)
    assert step_summary.read_text() == "# earlier step\n"
    # Asked for by option, the summary is written anyway, and says there was nothing.
    pytester.runpytest("--clever-md=asked.md").assert_outcomes(passed=1)
    assert "No test recorded a CLEVER score in this run." in (pytester.path / "asked.md").read_text()


def test_unusable_report_paths_are_usage_errors_before_any_test_runs(pytester, monkeypatch):
    pytester.makepyfile("def test_plain():\n    pass\n")
    (pytester.path / "afile").write_text("not a folder")
    (pytester.path / "adir").mkdir()
    cases = [
        (["--clever-md="], {}, "--clever-md= was given an empty value"),
        (["--clever-html="], {}, "--clever-html= was given an empty value"),
        (["--clever-md=adir"], {}, "--clever-md: adir is a folder; give a file path"),
        (["--clever-html=adir"], {}, "--clever-html: adir is a folder; give a file path"),
        (["--clever-html=afile/report.html"], {}, "afile is not a folder"),
        ([], {"GITHUB_STEP_SUMMARY": "afile/summary.md"}, "$GITHUB_STEP_SUMMARY: afile/summary.md"),
    ]
    for args, env, message in cases:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        result = pytester.runpytest(*args)
        for key in env:
            monkeypatch.delenv(key)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, (args, _err(result))
        assert message in _err(result), (args, _err(result))
        assert "passed" not in result.stdout.str() and "Traceback" not in _err(result)
    assert (pytester.path / "afile").read_text() == "not a folder"


def test_a_report_that_cannot_be_written_at_the_end_fails_the_run_and_says_why(pytester):
    # The path was fine at startup; the test then took it (a folder now stands there).
    pytester.makepyfile(
        linear_module()
        + f"""
import os

@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_takes_the_path(clever):
    clever.scores(linear(), XS)
    os.mkdir("late.html")
"""
    )
    result = pytester.runpytest("--clever-html=late.html")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, _err(result)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CLEVER output errors (1):*", "*could not write CLEVER report late.html: *"])


@pytest.mark.slow  # real pytest subprocesses (xdist workers): CI runs it
def test_under_xdist_the_controller_writes_the_summary_once(pytester, step_summary):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_model=_module(1.0))
    result = pytester.runpytest_subprocess("-n", "2", "--clever-html=report.html")
    result.assert_outcomes(passed=2)
    text = step_summary.read_text()
    assert text.count("## CLEVER robustness") == 1, text
    assert _body_rows(text[text.index("## CLEVER") :]) == [
        "test_model.py::test_a",
        "test_model.py::test_b [m|&lt;b&gt;]",
    ]
    assert os.path.getsize(pytester.path / "report.html") > 0


def test_with_pytest_html_each_test_gets_its_plots_as_extras(pytester):
    pytest.importorskip("pytest_html")
    import html
    import json
    import re

    pytester.makepyfile(test_model=_module(1.0))
    pytester.runpytest("--html=page.html", "--self-contained-html").assert_outcomes(passed=2)
    page = (pytester.path / "page.html").read_text()
    blob = json.loads(html.unescape(re.search(r'data-jsonblob="([^"]*)"', page)[1]))
    extras = {test_id: [e["content"] for row in rows for e in row["extras"]] for test_id, rows in blob["tests"].items()}
    (b_plots,) = extras["test_model.py::test_b"]
    assert b_plots.count("<svg") == 2 and 'aria-label="scores over the inputs"' in b_plots
    assert "test_model.py::test_b [m|&lt;b&gt;]" in b_plots and "<b>" not in b_plots
    assert len(extras["test_model.py::test_a"]) == 1


def test_a_run_stopped_early_says_so_in_the_summary(pytester):
    pytester.makepyfile(
        test_model=_module(1.0)
        + """

def test_b_breaks():
    raise AssertionError("boom")


def test_c_never_reached(clever):
    clever.scores(linear(), XS, radius=5.0)
"""
    )
    result = pytester.runpytest("-x", "--clever-md=out.md")
    result.assert_outcomes(passed=2, failed=1)
    text = (pytester.path / "out.md").read_text()
    assert "**2 recorded calls, 1 problem**" in text
    assert (
        "- **problem**: the run is incomplete (stopped early: " in text and "tests it did not reach have no row" in text
    )
    assert _body_rows(text) == ["test_model.py::test_a", "test_model.py::test_b [m|&lt;b&gt;]"]


def test_a_saved_run_the_trend_cannot_read_is_named_in_the_report(pytester):
    pytester.makepyfile(test_model=_module(1.0))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    (pytester.path / ".clever" / "broken.json").write_text("{not json")
    pytester.runpytest("--clever-html=report.html").assert_outcomes(passed=2)
    page = (pytester.path / "report.html").read_text()
    assert '<p class="problem">trends: skipped file ' in page and "broken.json" in page
    assert page.count('aria-label="mean over saved runs"') == 2  # the saved run and this one still make a line
