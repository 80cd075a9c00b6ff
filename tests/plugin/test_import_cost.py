"""The plugin must cost nothing when unused: pytest loads it in every run of a user's repo."""

import subprocess
import sys


def test_importing_the_plugin_does_not_import_torch():
    code = (
        "import sys, pytest_clever.plugin, pytest_clever; assert 'torch' not in sys.modules, 'torch'; "
        "assert 'scipy' not in sys.modules, 'scipy'; assert 'numpy' not in sys.modules, 'numpy'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_plain_pytest_run_does_not_import_torch(pytester):
    pytester.makepyfile(
        """
        import sys

        def test_plain():
            assert "torch" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_the_plugin_is_registered_through_the_entry_point(pytester):
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("--trace-config")
    result.stdout.fnmatch_lines(["*pytest_clever*plugin*"])
