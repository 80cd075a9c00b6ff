"""The plugin's command-line options, ini keys and marker, and the helpers that read them.

Fixture settings come from the one registry ``pytest_clever.core.settings.OPTIONS``: each
becomes a ``--clever-*`` flag, a ``clever_*`` ini key and a marker keyword as it declares,
and the marker's ``pytest --markers`` line is generated from it, so no keyword can be
missing from the help. The options declared by hand here are the run's own (outputs,
baselines, policies), not fixture settings.

Pure Python, like everything it imports: pytest loads this in every run.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import pytest

from pytest_clever.core.settings import (
    MARKER,
    OPTIONS,
    PROGRESS,
    THREADS,
    Option,
    argparse_type,
    marker_settings,
)
from pytest_clever.runs.storage import DEFAULT_STORAGE

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.runs.gates import ChangeRule

GROUP = "clever"
JSON_OPTION = "--clever-json"
SKIP_OPTION = "--clever-skip"
SAVE_OPTION = "--clever-save"
COMPARE_OPTION = "--clever-compare"
COMPARE_FAIL_OPTION = "--clever-compare-fail"
MISSING_OPTION = "--clever-baseline-missing"
STORAGE_OPTION = "--clever-storage"
STORAGE_INI = "clever_storage"
NOT_COMPARABLE_OPTION = "--clever-not-comparable"
NOT_COMPARABLE_INI = "clever_not_comparable"
#: What a "not comparable" baseline entry (settings changed) or a missing baseline can do.
POLICIES = ("warn", "fail")
#: Process-wide settings (CLI and ini only, never a marker keyword), with the metavar --help shows.
PROCESS_SETTINGS = ((THREADS, "N"), (PROGRESS, "MODE"))


def rule_type(text: str) -> list[ChangeRule]:
    """Parse one ``--clever-compare-fail`` value; argparse reports a bad one as a usage error."""
    from pytest_clever.runs.gates import ChangeRule

    try:
        rules = ChangeRule.parse_many(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{COMPARE_FAIL_OPTION}: {exc}") from None
    if not rules:  # an empty list (an unset variable, a stray comma) would turn the gate off without a word
        raise argparse.ArgumentTypeError(
            f"{COMPARE_FAIL_OPTION}={text!r} holds no rule: give STAT:DROP[:significant] or leave the option out"
        )
    return rules


def add_options(parser: pytest.Parser) -> None:
    """Declare every ``--clever-*`` option and ``clever_*`` ini key."""
    group = parser.getgroup(GROUP, "pytest-clever: CLEVER robustness scores")
    for option in OPTIONS.values():
        shown = option.default_text
        if option.cli:
            group.addoption(
                option.flag,
                dest=f"clever_{option.name}",
                type=argparse_type(option),
                default=None,
                metavar=option.name.upper(),
                help=f"{option.help} (default: ini {option.ini_key} or {shown})",
            )
        if option.ini:
            parser.addini(option.ini_key, help=f"pytest-clever: {option.help} (default: {shown})", default=None)
    group.addoption(
        JSON_OPTION,
        dest="clever_json",
        metavar="PATH",
        default=None,
        help="write every recorded CLEVER result, with settings and versions, to PATH as JSON",
    )
    group.addoption(
        SKIP_OPTION,
        dest="clever_skip",
        action="store_true",
        default=False,
        help="skip every test that uses the clever fixture (quick local runs)",
    )
    group.addoption(
        SAVE_OPTION,
        dest="clever_save",
        nargs="?",
        const="run",
        default=None,
        metavar="NAME",
        help="save this run's results as a baseline named NAME (default: run) in the storage folder",
    )
    group.addoption(
        COMPARE_OPTION,
        dest="clever_compare",
        nargs="?",
        const="latest",
        default=None,
        metavar="NAME",
        help="compare with a saved baseline: a name, a run id or 'latest' (the default)",
    )
    group.addoption(
        COMPARE_FAIL_OPTION,
        dest="clever_compare_fail",
        action="append",
        default=[],
        metavar="STAT:DROP[:significant]",
        type=rule_type,
        help="fail the run when STAT (min, mean, median, max) dropped by more than DROP "
        "versus the baseline: relative (mean:10%%) or absolute (min:0.05); with :significant only when the "
        "paired drop is significantly larger (mean:10%%:significant); comma-separated or repeatable",
    )
    group.addoption(
        MISSING_OPTION,
        dest="clever_baseline_missing",
        choices=POLICIES,
        default="warn",
        help="what a missing baseline (or a test missing from it) does: warn (default) or fail",
    )
    group.addoption(
        STORAGE_OPTION,
        dest="clever_storage_path",
        default=None,
        metavar="DIR",
        help=f"folder of saved runs (default: ini {STORAGE_INI} or {DEFAULT_STORAGE}, under the rootdir)",
    )
    parser.addini(STORAGE_INI, help=f"pytest-clever: folder of saved runs (default: {DEFAULT_STORAGE})", default=None)
    not_comparable_help = "what a baseline entry recorded with other settings (NOT COMPARABLE) does: warn or fail"
    group.addoption(
        NOT_COMPARABLE_OPTION,
        dest="clever_not_comparable",
        choices=POLICIES,
        default=None,
        help=f"{not_comparable_help} (default: ini {NOT_COMPARABLE_INI} or warn)",
    )
    parser.addini(NOT_COMPARABLE_INI, help=f"pytest-clever: {not_comparable_help} (default: warn)", default=None)
    for option, metavar in PROCESS_SETTINGS:
        group.addoption(
            option.flag,
            dest=f"clever_{option.name}",
            type=argparse_type(option),
            default=None,
            metavar=metavar,
            help=f"{option.help} (default: ini {option.ini_key} or {option.default_text})",
        )
        parser.addini(
            option.ini_key, help=f"pytest-clever: {option.help} (default: {option.default_text})", default=None
        )


def marker_help() -> str:
    """The marker's ``pytest --markers`` line: every marker keyword of ``OPTIONS``, in registry order."""
    keywords = ", ".join(f"{name}=None" for name, option in OPTIONS.items() if option.marker)
    return (
        f"{MARKER}({keywords}): settings for the clever fixture in this test (see pytest --help for each); "
        "with min_score the test fails when a recorded score statistic is below it; with "
        "attack_check=True when a PGD attack finds an adversarial example closer than a score"
    )


def ini_settings(config: pytest.Config) -> dict[str, Any]:
    """The fixture settings given as ini keys, parsed; a bad value is a usage error."""
    values = {}
    for option in OPTIONS.values():
        if option.ini:
            raw = config.getini(option.ini_key)
            if raw not in (None, "", []):
                try:
                    values[option.name] = option.check(raw, f"ini option {option.ini_key}")
                except ValueError as exc:
                    raise pytest.UsageError(str(exc)) from None
    return values


def cli_settings(config: pytest.Config) -> dict[str, Any]:
    """The fixture settings given as ``--clever-*`` flags (None where not given), parsed by argparse."""
    return {o.name: config.getoption(f"clever_{o.name}") for o in OPTIONS.values() if o.cli}


def marker_of(item: pytest.Item) -> dict[str, Any]:
    """The settings of the test's closest ``@pytest.mark.clever``; bad arguments are a usage error."""
    mark = item.get_closest_marker(MARKER)
    if mark is None:
        return {}
    try:
        return marker_settings(dict(mark.kwargs), tuple(mark.args), f"@pytest.mark.clever on {item.nodeid}")
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def nonempty(config: pytest.Config, option: str, dest: str) -> str | None:
    """An option given as ``--opt=`` (say, an unset CI variable) is a usage error, not "off"."""
    value = config.getoption(dest)
    if value is not None and not str(value).strip():
        raise pytest.UsageError(
            f"{option}= was given an empty value (an unset variable?): pass a value or leave the option out"
        )
    return value


def process_setting(config: pytest.Config, option: Option) -> Any:
    """A process-wide setting (``THREADS``, ``PROGRESS``): command line > ini > built-in default."""
    value = config.getoption(f"clever_{option.name}")  # already parsed by argparse
    if value is None and config.getini(option.ini_key) not in (None, ""):
        try:
            value = option.check(config.getini(option.ini_key), f"ini option {option.ini_key}")
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    return option.default if value is None else value


def option_or_ini(config: pytest.Config, dest: str, ini: str, choices: tuple[str, ...], default: str) -> str:
    """A choice given as an option, else as an ini key, else ``default``; an ini value outside ``choices`` is
    a usage error (argparse already checked the option's)."""
    value = config.getoption(dest) or config.getini(ini) or default
    if value not in choices:
        raise pytest.UsageError(f"ini option {ini}: must be one of {', '.join(choices)}, got {value!r}")
    return value
