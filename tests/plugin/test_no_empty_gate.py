"""Gates that check nothing never pass quietly, and partial runs never shadow full baselines (issue 24, 3-5).

An empty rule list is a usage error; a min_score marker on a test that recorded nothing fails it;
``--clever-skip`` with ``--clever-compare`` says nothing was compared; a test that failed shows as FAILED
in the comparison; a run narrowed by ``-k``, ``-m``, deselection or a subset of files is saved as partial.
"""

import json

import pytest

from pytest_clever.runs.storage import Storage

from .user_modules import SMALL_SAMPLE_ARGS, linear_module


def _err(result) -> str:
    return result.stderr.str() + result.stdout.str()


def _module(factor: float = 1.0) -> str:
    """Two tests scoring ``linear(factor)``; factor > 1 is a strictly less robust model."""
    return (
        linear_module(first_feature_zero=True)
        + f"""

@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_one(clever):
    clever.scores(linear({factor}), XS, name="linear")


@pytest.mark.clever(radius=5.0, {SMALL_SAMPLE_ARGS})
def test_two(clever):
    clever.scores(linear(1.0), XS[:2])
"""
    )


@pytest.mark.parametrize("rules", ["", ",", " ", " , "])
def test_an_empty_rule_list_is_a_usage_error(pytester, rules):
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--clever-compare=main", f"--clever-compare-fail={rules}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, _err(result)
    assert "--clever-compare-fail" in _err(result) and "no rule" in _err(result)
    assert "Traceback" not in _err(result) and "passed" not in result.stdout.str()


def test_a_min_score_marker_on_a_test_that_recorded_nothing_fails_it(pytester):
    pytester.makepyfile(
        """
import pytest

@pytest.mark.clever(radius=1.0, min_score=0.5)
def test_forgot_to_score(clever):
    pass

@pytest.mark.clever(radius=1.0)
def test_no_bar(clever):
    pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*min_score=0.5*test_forgot_to_score: the test recorded no CLEVER score*"])


def test_a_module_marker_with_min_score_does_not_fail_plain_tests_beside_it(pytester):
    pytester.makepyfile(
        """
import pytest

pytestmark = pytest.mark.clever(radius=1.0, min_score=0.5)

def test_plain():
    assert 1 + 1 == 2

def test_forgot_to_score(clever):
    pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*min_score=0.5*test_forgot_to_score: the test recorded no CLEVER score*"])
    assert "test_plain: the test recorded" not in result.stdout.str()


def test_skip_with_compare_says_nothing_was_compared_and_fails_on_request(pytester):
    pytester.makepyfile(test_model=_module())
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    warned = pytester.runpytest("--clever-skip", "--clever-compare=main", "--clever-compare-fail=mean:10%")
    assert warned.ret == 0
    warned.stdout.fnmatch_lines(["*nothing was compared*--clever-skip*"])
    strict = pytester.runpytest("--clever-skip", "--clever-compare=main", "--clever-not-comparable=fail")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED, _err(strict)
    strict.stdout.fnmatch_lines(["*CLEVER regressions (1):*", "*nothing was compared*--clever-skip*"])


def test_a_test_that_failed_is_failed_in_the_comparison_not_not_run(pytester):
    pytester.makepyfile(test_model=_module())
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    # test_one now fails before recording (a score error ends the test through pytest.fail).
    pytester.makepyfile(test_model=_module().replace('name="linear")', 'name="linear", radius=-1.0)'))
    result = pytester.runpytest("--clever-compare=main")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_one [[]linear[]]*FAILED"])
    assert "not run this time" not in result.stdout.str()


@pytest.mark.parametrize(
    "narrowing",
    [
        ["-k", "test_two"],
        ["--deselect", "test_model.py::test_one"],
        ["test_model.py::test_two"],
    ],
)
def test_a_partial_run_never_shadows_the_complete_baseline(pytester, narrowing):
    pytester.makepyfile(test_model=_module())
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    part = pytester.runpytest("--clever-save=main", *narrowing)
    part.assert_outcomes(passed=1)
    part.stdout.fnmatch_lines(["*CLEVER run saved as PARTIAL (*) to *_main.json*"])
    runs = Storage(pytester.path / ".clever").runs()[0]
    assert [r.partial is None for r in runs] == [True, False]
    assert json.loads(runs[1].path.read_text())["partial"] == runs[1].partial

    # test_one regressed: still caught against the complete baseline, and the table says which one it used.
    pytester.makepyfile(test_model=_module(4.0))
    worse = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%")
    assert worse.ret == pytest.ExitCode.TESTS_FAILED, _err(worse)
    worse.stdout.fnmatch_lines(
        [
            f"*CLEVER compared with baseline 'main' ({runs[0].id}*",
            f"*run {runs[1].id} is newer but partial (*): not used; compared with {runs[0].id}*",
            "*test_one [[]linear[]]*REGRESSED",
        ]
    )


def test_a_marker_expression_and_a_collection_hook_deselecting_make_a_partial_run(pytester):
    pytester.makepyfile(test_model=_module())
    pytester.makeconftest(
        "def pytest_collection_modifyitems(config, items):\n"
        "    gone = [i for i in items if i.name == 'test_one']\n"
        "    items[:] = [i for i in items if i.name != 'test_one']\n"
        "    config.hook.pytest_deselected(items=gone)\n"
    )
    pytester.runpytest("--clever-save=hooked").assert_outcomes(passed=1)
    (run,) = Storage(pytester.path / ".clever").runs()[0]
    assert run.partial is not None and "deselected" in run.partial
    pytester.makeconftest("")
    pytester.runpytest("--clever-save=marked", "-m", "not slow").assert_outcomes(passed=2)
    marked = Storage(pytester.path / ".clever").find("marked")
    assert marked.partial is not None and "-m" in marked.partial


def test_only_a_partial_run_under_a_name_is_used_and_said(pytester):
    pytester.makepyfile(test_model=_module())
    pytester.runpytest("--clever-save=main", "-k", "test_two").assert_outcomes(passed=1)
    result = pytester.runpytest("--clever-compare=main")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*baseline run * is partial (-k *test_two*) and no run of the whole suite is saved*",
            "*test_one*MISSING BASELINE",
        ]
    )


def test_the_full_suite_given_as_testpaths_or_rootdir_is_complete(pytester):
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_model.py").write_text(_module())
    pytester.runpytest("--clever-save=a").assert_outcomes(passed=2)
    pytester.runpytest("--clever-save=b", "tests").assert_outcomes(passed=2)
    pytester.runpytest("--clever-save=c", str(pytester.path)).assert_outcomes(passed=2)
    pytester.runpytest("--clever-save=d", "tests/test_model.py").assert_outcomes(passed=2)
    runs = {r.name: r for r in Storage(pytester.path / ".clever").runs()[0]}
    assert [runs[n].partial for n in "abc"] == [None, None, None]
    assert runs["d"].partial is not None and "test_model.py" in runs["d"].partial


@pytest.mark.slow  # real pytest subprocesses (xdist workers): CI runs it
def test_a_collection_hook_deselecting_on_xdist_workers_makes_a_partial_run(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_model=_module())
    pytester.makeconftest(
        "def pytest_collection_modifyitems(config, items):\n"
        "    gone = [i for i in items if i.name == 'test_one']\n"
        "    items[:] = [i for i in items if i.name != 'test_one']\n"
        "    config.hook.pytest_deselected(items=gone)\n"
    )
    result = pytester.runpytest_subprocess("-n", "2", "--clever-save=main")
    result.assert_outcomes(passed=1)
    (run,) = Storage(pytester.path / ".clever").runs()[0]
    assert run.partial == "1 test deselected"


def test_a_selection_in_the_ini_addopts_defines_the_suite_and_is_not_partial(pytester):
    pytester.makeini('[pytest]\naddopts = -m "not slow" --deselect test_model.py::test_gone\n')
    pytester.makepyfile(
        test_model=_module() + "\n\n@pytest.mark.slow\ndef test_slow():\n    pass\n\n\ndef test_gone():\n    pass\n"
    )
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    pytester.runpytest("--clever-save=narrow", "-m", "not slow and not nothing").assert_outcomes(passed=2)
    runs = {r.name: r for r in Storage(pytester.path / ".clever").runs()[0]}
    assert runs["main"].partial is None
    assert runs["narrow"].partial == "-m 'not slow and not nothing'"


def test_without_testpaths_a_folder_given_is_the_whole_suite_and_a_file_is_a_part(pytester):
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_model.py").write_text(_module())
    pytester.runpytest("tests", "--clever-save=folder").assert_outcomes(passed=2)
    pytester.runpytest("tests/", "--clever-save=slash").assert_outcomes(passed=2)
    pytester.runpytest("tests/test_model.py", "--clever-save=file").assert_outcomes(passed=2)
    runs = {r.name: r for r in Storage(pytester.path / ".clever").runs()[0]}
    assert [runs["folder"].partial, runs["slash"].partial] == [None, None]
    assert runs["file"].partial == "only tests/test_model.py"


def test_ignore_on_the_command_line_makes_a_partial_run_and_in_the_ini_addopts_does_not(pytester):
    pytester.makepyfile(test_model=_module(), test_other="def test_other():\n    pass\n")
    pytester.runpytest("--clever-save=glob", "--ignore-glob=*other*").assert_outcomes(passed=2)
    pytester.runpytest("--clever-save=path", "--ignore", "test_other.py").assert_outcomes(passed=2)
    runs = {r.name: r for r in Storage(pytester.path / ".clever").runs()[0]}
    assert runs["glob"].partial == "--ignore-glob *other*"
    assert runs["path"].partial == "--ignore test_other.py"
    pytester.makeini("[pytest]\naddopts = --ignore=test_other.py --ignore-glob=*nothing*\n")
    pytester.runpytest("--clever-save=ini").assert_outcomes(passed=2)
    assert Storage(pytester.path / ".clever").find("ini").partial is None


def test_lf_and_sw_make_a_partial_run_only_when_they_deselected_tests(pytester):
    pytester.makepyfile(test_model=_module(), test_other="def test_other():\n    pass\n")
    pytester.runpytest("-p", "cacheprovider").assert_outcomes(passed=3)
    pytester.runpytest("-p", "cacheprovider", "--lf", "--clever-save=lf").assert_outcomes(passed=3)
    pytester.runpytest("-p", "cacheprovider", "--sw", "--clever-save=sw").assert_outcomes(passed=3)
    runs = {r.name: r for r in Storage(pytester.path / ".clever").runs()[0]}
    assert [runs["lf"].partial, runs["sw"].partial] == [None, None]  # nothing had failed: every test ran

    pytester.makepyfile(test_model=_module().replace('name="linear")', 'name="linear")\n    assert False'))
    pytester.runpytest("-p", "cacheprovider").assert_outcomes(passed=2, failed=1)
    pytester.makepyfile(test_model=_module())
    pytester.runpytest("-p", "cacheprovider", "--lf", "--clever-save=rerun").assert_outcomes(passed=1)
    rerun = Storage(pytester.path / ".clever").find("rerun")
    assert rerun.partial == "--lf: only the 1 test that failed last time"
