"""The screen setting through pytest: ini < CLI < marker, into the record, and screened runs are not comparable."""

import json

MODULE = """
import pytest
import torch
from torch import nn


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 120)).eval()


XS = torch.randn(2, 20, generator=torch.Generator().manual_seed(0))


@pytest.mark.clever(radius=2.0, n_batches=10, batch_size=32)
def test_settings(clever):
    clever.scores(net(), XS)


@pytest.mark.clever(radius=2.0, n_batches=10, batch_size=32, screen="off")
def test_marker(clever):
    clever.scores(net(), XS)
"""


def _records(pytester):
    data = json.loads((pytester.path / "out.json").read_text())
    return {r["nodeid"].split("::")[1]: r for r in data["records"]}


def test_the_screen_setting_reaches_the_record_marker_over_cli_over_ini(pytester):
    pytester.makeini("[pytest]\nclever_screen = off\n")
    pytester.makepyfile(test_screen=MODULE)
    pytester.runpytest("--clever-json=out.json", "--clever-save=main").assert_outcomes(passed=2)
    records = _records(pytester)
    assert records["test_settings"]["settings"]["screen"] == "off"  # ini
    assert records["test_settings"]["results"][0]["screened_after"] is None
    pytester.runpytest("--clever-json=out.json", "--clever-screen=on", "--clever-compare=main").assert_outcomes(
        passed=2
    )
    records = _records(pytester)
    assert records["test_settings"]["settings"]["screen"] == "on"  # CLI over ini
    assert records["test_settings"]["results"][0]["screened_after"] == 128
    assert records["test_settings"]["results"][0]["screened"] > 0
    assert records["test_marker"]["settings"]["screen"] == "off"  # marker over CLI
    result = pytester.runpytest("--clever-screen=on", "--clever-compare=main")
    result.stdout.fnmatch_lines(["*test_settings*screen 'off' -> 'on'*"])


def test_a_bad_screen_value_is_a_usage_error(pytester):
    pytester.makepyfile(test_screen=MODULE)
    result = pytester.runpytest("--clever-screen=sometimes")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--clever-screen: must be one of auto, on, off, got 'sometimes'*"])
