"""pytest hooks of pytest-clever (registered through the ``pytest11`` entry point).

Thin by design: options and the marker are declared here, numerics live in
the public API, formatting in ``report``, settings in ``settings``. Nothing
here imports torch; the ``clever`` fixture imports it on first use.

Results travel as JSON strings attached to each test's teardown report, so
under pytest-xdist they reach the controller with the report, and results of
finished tests survive a worker crash. Only the controller prints the
summary and writes files, with records sorted by test id, name and call
index, so the output is the same serially and under xdist.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_clever.core.settings import MARKER, OPTIONS, PROGRESS, THREADS, Option, argparse_type, marker_settings, resolve
from pytest_clever.errors import CleverError
from pytest_clever.runs.storage import DEFAULT_STORAGE  # pure Python, like everything this module imports

GROUP = "clever"
JSON_OPTION = "--clever-json"
SKIP_OPTION = "--clever-skip"
SAVE_OPTION = "--clever-save"
COMPARE_OPTION = "--clever-compare"
COMPARE_FAIL_OPTION = "--clever-compare-fail"
MISSING_OPTION = "--clever-baseline-missing"
STORAGE_OPTION = "--clever-storage"
NOT_COMPARABLE_OPTION = "--clever-not-comparable"
NOT_COMPARABLE_INI = "clever_not_comparable"
#: What a "not comparable" baseline entry (settings changed) or a missing baseline can do.
POLICIES = ("warn", "fail")
_USAGE_ERRORS_KEY = "clever_usage_errors"  # worker -> controller, in workeroutput
_RECORDS = pytest.StashKey[list]()
_REPORT_ATTR = "clever_records"


def _rule_type(text: str):
    from pytest_clever.runs.gates import ChangeRule

    try:
        return ChangeRule.parse_many(text)
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
        COMPARE_FAIL_OPTION, dest="clever_compare_fail", action="append", default=[], metavar="STAT:DROP[:significant]",
        type=_rule_type, help="fail the run when STAT (min, mean, median, max) dropped by more than DROP "
        "versus the baseline: relative (mean:10%%) or absolute (min:0.05); with :significant only when the "
        "paired drop is significantly larger (mean:10%%:significant); comma-separated or repeatable",
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
    not_comparable_help = (
        "what a baseline entry recorded with other settings (NOT COMPARABLE) does: warn or fail"
    )
    group.addoption(
        NOT_COMPARABLE_OPTION, dest="clever_not_comparable", choices=POLICIES, default=None,
        help=f"{not_comparable_help} (default: ini {NOT_COMPARABLE_INI} or warn)",
    )
    parser.addini(NOT_COMPARABLE_INI, help=f"pytest-clever: {not_comparable_help} (default: warn)", default=None)
    for option, metavar in ((THREADS, "N"), (PROGRESS, "MODE")):  # process-wide settings, not fixture ones
        group.addoption(
            option.flag, dest=f"clever_{option.name}", type=argparse_type(option), default=None, metavar=metavar,
            help=f"{option.help} (default: ini {option.ini_key} or {option.default_text})",
        )
        parser.addini(option.ini_key, help=f"pytest-clever: {option.help} (default: {option.default_text})", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(min_score=None, norm=None, radius=None, order=None, n_batches=None, batch_size=None, "
        "statistic=None, target=None, targets=None, seed=None, bounds=None, attack_check=None): settings for the clever fixture in this "
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


def _nonempty(config: pytest.Config, option: str, dest: str) -> str | None:
    """An option given as ``--opt=`` (say, an unset CI variable) is a usage error, not "off"."""
    value = config.getoption(dest)
    if value is not None and not str(value).strip():
        raise pytest.UsageError(f"{option}= was given an empty value (an unset variable?): pass a value or leave the option out")
    return value


def _check_writable_folder(folder: Path, what: str) -> None:
    """Raise a usage error now when ``folder`` cannot be created or written to at the end of the run."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise pytest.UsageError(f"{what}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"{what}: folder {existing} is not writable")


def _process_setting(config: pytest.Config, option: Option) -> Any:
    """A process-wide setting (``THREADS``, ``PROGRESS``): command line > ini > built-in default."""
    value = config.getoption(f"clever_{option.name}")  # already parsed by argparse
    if value is None and config.getini(option.ini_key) not in (None, ""):
        try:
            value = option.check(config.getini(option.ini_key), f"ini option {option.ini_key}")
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    return option.default if value is None else value


def _option_or_ini(config: pytest.Config, dest: str, ini: str, choices: tuple[str, ...], default: str) -> str:
    value = config.getoption(dest) or config.getini(ini) or default
    if value not in choices:
        raise pytest.UsageError(f"ini option {ini}: must be one of {', '.join(choices)}, got {value!r}")
    return value


class CleverSession:
    """The run's state: settings from ini and CLI, and every record collected from reports."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.ini = _ini_settings(config)
        self.cli = _cli_settings(config)
        self.records: list = []  # RunRecord objects, in arrival order until the loop ends
        self.is_worker = hasattr(config, "workerinput")
        self.comparisons: list = []
        self.baseline = None
        self.baseline_problem: str | None = None
        self.regressions: list[str] = []
        self.errors: list[str] = []  # records that cannot be trusted (e.g. a key recorded twice)
        self.saved_path: Path | None = None
        self.incomplete: str | None = None  # why a saved run is incomplete
        self.write_errors: list[str] = []  # outputs asked for that could not be written
        self.usage_errors: list[str] = []  # bad markers found on xdist workers
        self._ordered = False
        self.save_name = _nonempty(config, SAVE_OPTION, "clever_save")
        self.compare_ref = _nonempty(config, COMPARE_OPTION, "clever_compare")
        self.json_path = _nonempty(config, JSON_OPTION, "clever_json")
        self.not_comparable = _option_or_ini(config, "clever_not_comparable", NOT_COMPARABLE_INI, POLICIES, "warn")
        self.threads = _process_setting(config, THREADS)
        self.progress = _process_setting(config, PROGRESS)
        if self.save_name:
            from pytest_clever.runs.storage import StorageError, check_name

            try:
                check_name(self.save_name)
            except StorageError as exc:
                raise pytest.UsageError(f"{SAVE_OPTION}: {exc}") from None
        if not self.is_worker:  # only the controller writes: find out now, not after an hour of tests
            if self.save_name:
                _check_writable_folder(self.storage().root, f"{SAVE_OPTION}: storage {self.storage().root}")
            if self.json_path:
                target = Path(self.json_path)
                if target.is_dir():
                    raise pytest.UsageError(f"{JSON_OPTION}: {target} is a folder; give a file path")
                _check_writable_folder(target.absolute().parent, f"{JSON_OPTION}: {target}")

    def storage(self):
        from pytest_clever.runs.storage import Storage, storage_root

        configured = self.config.getoption("clever_storage_path") or self.config.getini("clever_storage")
        return Storage(storage_root(self.config.rootpath, configured))

    def defaults_for(self, item: pytest.Item) -> dict[str, Any]:
        return resolve(_marker(item), self.cli, self.ini)

    # -- collection -------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        skip = self.config.getoption("clever_skip")
        errors = []
        for item in items:
            try:
                _marker(item)  # bad marker arguments: a usage error now, not a crash later
            except pytest.UsageError as exc:
                errors.append(str(exc))
            if skip and "clever" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.skip(reason="pytest-clever: --clever-skip"))
        if not errors:
            return
        if not self.is_worker:
            raise pytest.UsageError("\n".join(errors))
        # An xdist worker that raises here crashes (INTERNALERROR, message lost): run nothing
        # and hand the errors to the controller, which raises the same usage error.
        self.usage_errors = errors
        self.config.hook.pytest_deselected(items=list(items))
        items[:] = []

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        payload = getattr(node, "workeroutput", {}).get(_USAGE_ERRORS_KEY)
        if payload:
            self.usage_errors.extend(e for e in json.loads(payload) if e not in self.usage_errors)

    # -- running ----------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        result = yield
        from pytest_clever.runs.report import failure_message

        failed = [r for r in item.stash.get(_RECORDS, []) if r.status == "failed"]
        if failed:
            pytest.fail("\n\n".join(failure_message(r) for r in failed), pytrace=False)
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        records = item.stash.get(_RECORDS, None)
        if report.when == "teardown" and records:
            setattr(report, _REPORT_ATTR, json.dumps([r.to_dict() for r in records]))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = getattr(report, _REPORT_ATTR, None)
        if payload and not self.is_worker:
            from pytest_clever.runs.record import RunRecord

            self.records.extend(RunRecord.from_dict(r, f"record from {report.nodeid}") for r in json.loads(payload))

    # -- end of run -------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        # After the loop every xdist worker is down and every record has arrived: compare
        # now, and fail the run through testsfailed (a clean exit code, no traceback).
        result = yield
        if self.is_worker:
            return result
        if self.usage_errors:
            raise pytest.UsageError("\n".join(self.usage_errors))
        self._order_records()
        if self.compare_ref and not self.errors:
            self._compare(self.compare_ref)
        failing = len(self.regressions) + len(self.errors)
        if failing:
            session.testsfailed += failing
        return result

    def _order_records(self) -> None:
        """Sort the records (serial and xdist runs agree); a key recorded twice is an error."""
        from pytest_clever.runs.record import RecordError, index_records, sorted_records

        if self._ordered:
            return
        self._ordered = True
        self.records = sorted_records(self.records)
        try:
            index_records(self.records, "this run")
        except RecordError as exc:
            self.errors.append(str(exc))

    def _compare(self, ref: str) -> None:
        from pytest_clever.runs.compare import compare_records
        from pytest_clever.runs.record import RecordError
        from pytest_clever.runs.storage import StorageError

        strict = self.config.getoption("clever_baseline_missing") == "fail"
        if not self.records and strict:  # nothing was compared: a gate asked to be strict says so
            self.regressions.append(
                "no test recorded a CLEVER score in this run, so nothing was compared "
                f"({MISSING_OPTION}=fail)"
            )
        try:
            self.baseline = self.storage().find(ref)
        except StorageError as exc:
            self.baseline_problem = str(exc)
            if strict:
                self.regressions.append(f"baseline: {exc}")
            return
        rules = [rule for given in self.config.getoption("clever_compare_fail") for rule in given]
        try:
            self.comparisons = compare_records(self.records, self.baseline.records, rules)
        except RecordError as exc:
            self.errors.append(str(exc))
            return
        for c in self.comparisons:
            if c.status == "regressed":
                self.regressions.extend(f"{c.label}: {reason}" for reason in c.reasons)
            elif c.status == "missing baseline" and strict:
                self.regressions.append(f"{c.label}: no entry in baseline {self.baseline.name}")
            elif c.status == "not comparable" and self.not_comparable == "fail":
                self.regressions.append(
                    f"{c.label}: not comparable with baseline {self.baseline.name} ({'; '.join(c.reasons)}; "
                    f"{NOT_COMPARABLE_OPTION}=fail)"
                )

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.is_worker:
            return
        asked = self.compare_ref or self.save_name or self.json_path
        if not (self.records or self.errors or self.write_errors or asked):
            return
        from pytest_clever.runs.report import notes_lines, summary_table

        terminalreporter.write_sep("=", "CLEVER robustness")
        if self.records:
            for line in summary_table(self.records):
                terminalreporter.write_line(line)
        else:
            terminalreporter.write_line("no test recorded a CLEVER score in this run")
        for line in notes_lines(self.records):
            terminalreporter.write_line(line, yellow=True)
        if self.json_path and not self.write_errors:
            terminalreporter.write_line(f"CLEVER results written to {self.json_path}")
        if self.saved_path is not None:
            if self.incomplete:
                terminalreporter.write_line(
                    f"CLEVER run saved as INCOMPLETE ({self.incomplete}) to {self.saved_path}: "
                    "never used as 'latest' or by name", yellow=True,
                )
            else:
                terminalreporter.write_line(f"CLEVER baseline saved to {self.saved_path}")
        elif self.save_name and not self.write_errors:
            why = "its records collide" if self.errors else "no test recorded a CLEVER score"
            terminalreporter.write_line(f"CLEVER baseline not saved: {why}", yellow=True)
        self._summarise_comparison(terminalreporter)
        for title, lines in (("record errors", self.errors), ("output errors", self.write_errors)):
            if lines:
                terminalreporter.write_line(f"CLEVER {title} ({len(lines)}):", red=True, bold=True)
                for line in lines:
                    terminalreporter.write_line(f"  {line}", red=True)

    def _summarise_comparison(self, terminalreporter) -> None:
        if not self.compare_ref:
            return
        from pytest_clever.runs.compare import comparison_table

        if self.baseline is None:
            terminalreporter.write_sep("=", "CLEVER baseline comparison", yellow=True)
            if self.baseline_problem:
                terminalreporter.write_line(f"no comparison: {self.baseline_problem}")
        else:
            commit = (self.baseline.git.get("commit") or "")[:10]
            title = f"CLEVER compared with baseline '{self.baseline.name}' ({self.baseline.id}{', ' + commit if commit else ''})"
            terminalreporter.write_sep("=", title, red=bool(self.regressions))
            for problem in self.baseline.problems:
                terminalreporter.write_line(f"baseline {problem}", yellow=True)
            for line in comparison_table(self.comparisons, regression_reasons=False):
                terminalreporter.write_line(line)
            not_run = sum(1 for c in self.comparisons if c.status == "not run")
            if not_run:
                terminalreporter.write_line(
                    f"{not_run} baseline entr{'y' if not_run == 1 else 'ies'} not run this time "
                    "(deselected, skipped or removed): listed, not failed", yellow=True,
                )
        if self.regressions:
            terminalreporter.write_line(f"CLEVER regressions ({len(self.regressions)}):", red=True, bold=True)
            for reason in self.regressions:
                terminalreporter.write_line(f"  {reason}", red=True)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        executors = sys.modules.get("pytest_clever._engine.executor")  # loaded only if clever_executor was used
        if executors is not None:
            executors.close_executors()

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            if self.usage_errors:
                self.config.workeroutput[_USAGE_ERRORS_KEY] = json.dumps(self.usage_errors)
            return
        if self.usage_errors:
            return
        self._order_records()  # after an interrupt the loop wrapper never got to it
        self.incomplete = _incomplete(session, exitstatus)
        if self.save_name and self.records and not self.errors:  # never save a run whose records collide
            try:
                self.saved_path = self.storage().save(self.records, self.save_name, incomplete=self.incomplete)
            except (OSError, CleverError) as exc:
                self.write_errors.append(f"could not save baseline {self.save_name!r} in {self.storage().root}: {exc}")
        if self.json_path:
            from pytest_clever.runs.files import write_json
            from pytest_clever.runs.report import json_document

            try:
                write_json(self.json_path, json_document(self.records, self.regressions, self.errors))
            except OSError as exc:
                self.write_errors.append(f"could not write {JSON_OPTION} file {self.json_path}: {exc}")
        if self.write_errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # outputs asked for are missing: not a pass


def _incomplete(session: pytest.Session, exitstatus: int) -> str | None:
    """Why this run's records may not cover the suite (Ctrl-C, internal error, -x); None when complete."""
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return f"interrupted: {session.shouldstop or session.shouldfail or 'KeyboardInterrupt'}"
    if exitstatus == pytest.ExitCode.INTERNAL_ERROR:
        return "ended by an internal error"
    if session.shouldfail or session.shouldstop:
        return f"stopped early: {session.shouldfail or session.shouldstop}"
    return None


_SESSION = pytest.StashKey[CleverSession]()


@pytest.fixture
def clever(request: pytest.FixtureRequest):
    """Compute and record CLEVER scores: ``clever.score``, ``clever.scores``, ``clever.assert_robust``.

    Settings come from ``@pytest.mark.clever(...)`` > ``--clever-*`` options >
    ``clever_*`` ini keys > built-in defaults; call arguments override all.
    """
    from pytest_clever.plugin.fixture import CleverFixture
    from pytest_clever.plugin.terminal_progress import terminal_progress

    item = request.node
    state = request.config.stash[_SESSION]
    records = item.stash.setdefault(_RECORDS, [])
    progress = functools.partial(terminal_progress, request.config, state.progress, item.nodeid)
    return CleverFixture(
        item.nodeid, state.defaults_for(item), item.user_properties, records, threads=state.threads, progress=progress
    )
