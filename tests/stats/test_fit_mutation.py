"""Mutation check: with the extreme-value fit replaced by the plain sample maximum, tests outside test_evt.py fail.

Almost every other test passes without any Weibull fit: the sample maximum is close enough for
them. This runs the end-to-end fit tests in a subprocess with a plugin that makes
``fit_endpoint`` return the sample maximum, disguised as a good Weibull fit (patched where the
orders imported it), and requires them to fail.
"""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).parent

NO_FIT_PLUGIN = """
import numpy as np
import pytest

from pytest_clever.stats import evt
from pytest_clever._engine import first_order
from pytest_clever._engine import second_order


def sample_max_only(maxima):
    # Disguised as a good Weibull fit, so that only the numbers can give it away.
    top = float(np.max(maxima))
    return evt.EndpointFit(top, "weibull", 5.0, -top, 1.0, 0.0, 1.0, top, len(maxima))


@pytest.fixture(autouse=True)
def _no_fit(monkeypatch):
    for module in (evt, first_order, second_order):
        monkeypatch.setattr(module, "fit_endpoint", sample_max_only, raising=False)
"""


@pytest.mark.slow  # a real pytest subprocess running other test files: CI runs it
def test_end_to_end_fit_tests_catch_a_disabled_fit(pytester):
    # The same tests pass unmutated in this suite (test_fit_end_to_end.py): the failures are the mutation's.
    pytester.makepyfile(no_fit_plugin=NO_FIT_PLUGIN)
    result = pytester.runpytest_subprocess(
        "-p",
        "no_fit_plugin",
        "-p",
        "no:cacheprovider",
        str(TESTS / "test_fit_end_to_end.py"),
        "-k",
        "gap_the_sample_maximum",
    )
    assert result.parseoutcomes().get("failed", 0) == 2, result.stdout.str()
    # They fail on the numbers: the gap the "fit" closes.
    result.stdout.fnmatch_lines(["E *assert *0.0* >= 0.5"])
