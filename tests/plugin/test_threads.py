"""Torch's OpenMP threads wait passively in test processes, unless the user chose otherwise.

libgomp reads ``OMP_WAIT_POLICY`` when torch is imported, so the plugin must set it before any
conftest or test module imports torch: these tests run fresh interpreters.
"""

from __future__ import annotations

import os
import subprocess
import sys

from pytest_clever.plugin.threads import WAIT_VARIABLES

PROBE = "import os, sys; {before}import pytest_clever.plugin; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"


def _policy_after_loading_the_plugin(before: str = "", **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_loading_the_plugin_makes_openmp_threads_wait_passively_unless_the_user_chose():
    assert _policy_after_loading_the_plugin() == "PASSIVE"
    assert _policy_after_loading_the_plugin(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert _policy_after_loading_the_plugin(GOMP_SPINCOUNT="300000") == "unset"  # libgomp's own default
    # Once torch is imported its OpenMP runtime has read its settings: the variable would claim a
    # policy that is not in force.
    assert _policy_after_loading_the_plugin(before="import torch; ") == "unset"


def test_conftests_and_tests_import_torch_after_the_policy_is_set(pytester, monkeypatch):
    for variable in WAIT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    pytester.makeconftest("import os\nAT_IMPORT = os.environ.get('OMP_WAIT_POLICY')\nimport torch\n")
    pytester.makepyfile(
        """
import os

from conftest import AT_IMPORT


def test_policy():
    assert AT_IMPORT == "PASSIVE"
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
"""
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
