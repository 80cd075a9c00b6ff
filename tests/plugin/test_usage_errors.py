"""Usage errors up front: bad option values and unusable output paths stop the run before any test runs.

A bad marker is the same usage error under xdist as serially.
"""

import pytest

PLAIN = "def test_plain():\n    pass\n"


def _err(result) -> str:
    return result.stderr.str() + result.stdout.str()


def test_empty_values_and_unwritable_outputs_are_usage_errors_before_any_test_runs(pytester):
    pytester.makepyfile(PLAIN)
    (pytester.path / "afile").write_text("not a folder")
    (pytester.path / "adir").mkdir()
    cases = [
        (["--clever-compare="], "--clever-compare= was given an empty value"),
        (["--clever-save="], "--clever-save= was given an empty value"),
        (["--clever-json="], "--clever-json= was given an empty value"),
        (["--clever-save=main", "--clever-storage=afile"], "is not a folder"),
        (["--clever-save=main", "--clever-storage=afile/sub"], "afile is not a folder"),
        (["--clever-json=adir"], "adir is a folder; give a file path"),
        (["--clever-save=main\n"], "invalid run name 'main\\n'"),
        (["--clever-save=x.json"], "names ending in '.json' are reserved"),
        (["--clever-not-comparable=maybe"], "invalid choice: 'maybe'"),
    ]
    for args, message in cases:
        result = pytester.runpytest(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, (args, _err(result))
        assert message in _err(result), (args, _err(result))
        assert "Traceback" not in _err(result) and "passed" not in result.stdout.str()
    assert (pytester.path / "afile").read_text() == "not a folder"


def test_a_dangling_symlink_as_storage_is_a_usage_error_before_any_test_runs(pytester):
    # It does not exist, so it looked like a folder still to be created: the save failed ("File exists")
    # only after every test ran, and the run was lost.
    pytester.makepyfile(PLAIN)
    (pytester.path / "baselines").symlink_to(pytester.path / "gone")
    (pytester.path / "link_above").symlink_to(pytester.path / "gone_too")
    for storage in ("baselines", "link_above/sub"):
        result = pytester.runpytest("--clever-save=main", f"--clever-storage={storage}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, _err(result)
        assert "is a symbolic link to" in _err(result) and "which does not exist" in _err(result), _err(result)
        assert "passed" not in result.stdout.str()
    json_result = pytester.runpytest("--clever-json=link_above/out.json")
    assert json_result.ret == pytest.ExitCode.USAGE_ERROR and "gone_too, which does not exist" in _err(json_result)


@pytest.mark.slow  # real pytest subprocesses (xdist workers): CI runs it
def test_a_bad_marker_under_xdist_is_the_same_usage_error_as_serially(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.clever(radius=1.0, colour='red')\ndef test_gate(clever):\n    pass\n"
    )
    result = pytester.runpytest_subprocess("-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, _err(result)
    assert "unknown argument(s) colour" in result.stderr.str()
    assert "INTERNALERROR" not in _err(result) and "crashitem" not in _err(result)


def test_comparing_with_a_dangling_symlink_storage_names_the_link(pytester):
    pytester.makepyfile(PLAIN)
    (pytester.path / "baselines").symlink_to(pytester.path / "gone")
    result = pytester.runpytest("--clever-compare=main", "--clever-storage=baselines")
    result.stdout.fnmatch_lines(
        ["*no saved runs in *baselines (*baselines is a symbolic link to *gone, which does not exist)"]
    )
