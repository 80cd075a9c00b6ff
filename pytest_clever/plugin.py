"""pytest hooks of pytest-clever (registered through the ``pytest11`` entry point).

Thin by design: options and the marker are declared here, numerics live in
the public API, formatting in ``report``, settings in ``settings``. Nothing
here imports torch; the ``clever`` fixture imports it on first use.

Results travel as JSON strings attached to each test's teardown report, so
under pytest-xdist they reach the controller with the report, and results of
finished tests survive a worker crash. Only the controller prints the
summary and writes files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from .settings import MARKER, OPTIONS, argparse_type, marker_settings, resolve

GROUP = "clever"
JSON_OPTION = "--clever-json"
SKIP_OPTION = "--clever-skip"
SAVE_OPTION = "--clever-save"
COMPARE_OPTION = "--clever-compare"
COMPARE_FAIL_OPTION = "--clever-compare-fail"
MISSING_OPTION = "--clever-baseline-missing"
STORAGE_OPTION = "--clever-storage"
DEFAULT_STORAGE = ".clever"
_RECORDS = pytest.StashKey[list]()
_REPORT_ATTR = "clever_records"


def _rule_type(text: str):
    from .compare import DropRule

    try:
        return DropRule.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{COMPARE_FAIL_OPTION}: {exc}") from None


def pytest_addoption(parser: pytest.Parser) -> None:
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
        JSON_OPTION, dest="clever_json", metavar="PATH", default=None,
        help="write every recorded CLEVER result, with settings and versions, to PATH as JSON",
    )
    group.addoption(
        SKIP_OPTION, dest="clever_skip", action="store_true", default=False,
        help="skip every test that uses the clever fixture (quick local runs)",
    )
    group.addoption(
        SAVE_OPTION, dest="clever_save", nargs="?", const="run", default=None, metavar="NAME",
        help="save this run's results as a baseline named NAME (default: run) in the storage folder",
    )
    group.addoption(
        COMPARE_OPTION, dest="clever_compare", nargs="?", const="latest", default=None, metavar="NAME",
        help="compare with a saved baseline: a name, a run id or 'latest' (the default)",
    )
    group.addoption(
        COMPARE_FAIL_OPTION, dest="clever_compare_fail", action="append", default=[], metavar="STAT:DROP",
        type=_rule_type, help="fail the run when STAT (min, mean, median, max) dropped by more than DROP "
        "versus the baseline: relative (mean:10%%) or absolute (min:0.05); repeatable",
    )
    group.addoption(
        MISSING_OPTION, dest="clever_baseline_missing", choices=("warn", "fail"), default="warn",
        help="what a missing baseline (or a test missing from it) does: warn (default) or fail",
    )
    group.addoption(
        STORAGE_OPTION, dest="clever_storage_path", default=None, metavar="DIR",
        help=f"folder of saved runs (default: ini clever_storage or {DEFAULT_STORAGE}, under the rootdir)",
    )
    parser.addini("clever_storage", help=f"pytest-clever: folder of saved runs (default: {DEFAULT_STORAGE})", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(min_score=None, norm=None, radius=None, order=None, n_batches=None, batch_size=None, "
        "statistic=None, target=None, seed=None, bounds=None, attack_check=None): settings for the clever fixture in this "
        "test; with min_score the test fails when a recorded score statistic is below it; with "
        "attack_check=True when a PGD attack finds an adversarial example closer than a score",
    )
    state = CleverSession(config)
    config.stash[_SESSION] = state
    config.pluginmanager.register(state, "clever-session")


def _ini_settings(config: pytest.Config) -> dict[str, Any]:
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


def _cli_settings(config: pytest.Config) -> dict[str, Any]:
    return {o.name: config.getoption(f"clever_{o.name}") for o in OPTIONS.values() if o.cli}


def _marker(item: pytest.Item) -> dict[str, Any]:
    mark = item.get_closest_marker(MARKER)
    if mark is None:
        return {}
    try:
        return marker_settings(dict(mark.kwargs), tuple(mark.args), f"@pytest.mark.clever on {item.nodeid}")
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


class CleverSession:
    """The run's state: settings from ini and CLI, and every record collected from reports."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.ini = _ini_settings(config)
        self.cli = _cli_settings(config)
        self.records: list[dict[str, Any]] = []
        self.is_worker = hasattr(config, "workerinput")
        self.comparisons: list = []
        self.baseline = None
        self.baseline_problem: str | None = None
        self.regressions: list[str] = []
        self.saved_path: Path | None = None
        name = config.getoption("clever_save")
        if name:
            from .storage import StorageError, check_name

            try:
                check_name(name)
            except StorageError as exc:
                raise pytest.UsageError(f"{SAVE_OPTION}: {exc}") from None

    def storage(self):
        from .storage import Storage

        root = self.config.getoption("clever_storage_path") or self.config.getini("clever_storage") or DEFAULT_STORAGE
        path = Path(root)
        return Storage(path if path.is_absolute() else self.config.rootpath / path)

    def defaults_for(self, item: pytest.Item) -> dict[str, Any]:
        return resolve(_marker(item), self.cli, self.ini)

    # -- collection -------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        skip = self.config.getoption("clever_skip")
        for item in items:
            _marker(item)  # bad marker arguments: a usage error now, not a crash later
            if skip and "clever" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.skip(reason="pytest-clever: --clever-skip"))

    # -- running ----------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        result = yield
        from .report import failure_message

        failed = [r for r in item.stash.get(_RECORDS, []) if r["status"] == "failed"]
        if failed:
            pytest.fail("\n\n".join(failure_message(r) for r in failed), pytrace=False)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        records = item.stash.get(_RECORDS, None)
        if report.when == "teardown" and records:
            setattr(report, _REPORT_ATTR, json.dumps(records))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = getattr(report, _REPORT_ATTR, None)
        if payload and not self.is_worker:
            self.records.extend(json.loads(payload))

    # -- end of run -------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        # After the loop every xdist worker is down and every record has arrived: compare
        # now, and fail the run through testsfailed (a clean exit code, no traceback).
        result = yield
        ref = self.config.getoption("clever_compare")
        if ref and not self.is_worker:
            self._compare(ref)
            failing = len(self.regressions)
            if failing:
                session.testsfailed += failing
        return result

    def _compare(self, ref: str) -> None:
        from .compare import compare_records
        from .storage import StorageError

        try:
            self.baseline = self.storage().find(ref)
        except StorageError as exc:
            self.baseline_problem = str(exc)
            if self.config.getoption("clever_baseline_missing") == "fail":
                self.regressions.append(f"baseline: {exc}")
            return
        rules = self.config.getoption("clever_compare_fail")
        self.comparisons = compare_records(self.records, self.baseline.records, rules)
        strict = self.config.getoption("clever_baseline_missing") == "fail"
        for c in self.comparisons:
            if c.status == "regressed":
                self.regressions.extend(f"{c.label}: {reason}" for reason in c.reasons)
            elif c.status == "missing baseline" and strict:
                self.regressions.append(f"{c.label}: no entry in baseline {self.baseline.name}")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.is_worker or not self.records:
            return
        from .report import summary_table

        terminalreporter.write_sep("=", "CLEVER robustness")
        for line in summary_table(self.records):
            terminalreporter.write_line(line)
        path = self.config.getoption("clever_json")
        if path:
            terminalreporter.write_line(f"CLEVER results written to {path}")
        if self.saved_path is not None:
            terminalreporter.write_line(f"CLEVER baseline saved to {self.saved_path}")
        self._summarise_comparison(terminalreporter)

    def _summarise_comparison(self, terminalreporter) -> None:
        if not self.config.getoption("clever_compare"):
            return
        from .compare import comparison_table

        if self.baseline is None:
            terminalreporter.write_sep("=", "CLEVER baseline comparison", yellow=True)
            terminalreporter.write_line(f"no comparison: {self.baseline_problem}")
        else:
            commit = (self.baseline.git.get("commit") or "")[:10]
            title = f"CLEVER compared with baseline '{self.baseline.name}' ({self.baseline.id}{', ' + commit if commit else ''})"
            terminalreporter.write_sep("=", title, red=bool(self.regressions))
            for line in comparison_table(self.comparisons, regression_reasons=False):
                terminalreporter.write_line(line)
        if self.regressions:
            terminalreporter.write_line(f"CLEVER regressions ({len(self.regressions)}):", red=True, bold=True)
            for reason in self.regressions:
                terminalreporter.write_line(f"  {reason}", red=True)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        executors = sys.modules.get("pytest_clever.executor")  # loaded only if clever_executor was used
        if executors is not None:
            executors.close_executors()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            return
        name = self.config.getoption("clever_save")
        if name and self.records:
            self.saved_path = self.storage().save(self.records, name)
        path = self.config.getoption("clever_json")
        if path:
            from .report import json_document, write_json

            write_json(path, json_document(self.records, self.regressions))


_SESSION = pytest.StashKey[CleverSession]()


@pytest.fixture
def clever(request: pytest.FixtureRequest):
    """Compute and record CLEVER scores: ``clever.score``, ``clever.scores``, ``clever.assert_robust``.

    Settings come from ``@pytest.mark.clever(...)`` > ``--clever-*`` options >
    ``clever_*`` ini keys > built-in defaults; call arguments override all.
    """
    from .fixture import CleverFixture

    item = request.node
    state = request.config.stash[_SESSION]
    records = item.stash.setdefault(_RECORDS, [])
    return CleverFixture(item.nodeid, state.defaults_for(item), item.user_properties, records)
