"""The run's state and its hooks: settings, records collected from reports, outputs at the end.

Results travel as JSON strings attached to each test's teardown report, so
under pytest-xdist they reach the controller with the report, and results of
finished tests survive a worker crash. Only the controller prints the
summary and writes files, with records sorted by test id, name and call
index, so the output is the same serially and under xdist.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_clever.core.settings import PROGRESS, THREADS, resolve
from pytest_clever.errors import CleverError
from pytest_clever.plugin.checks import check_outputs, check_save_name, marker_errors
from pytest_clever.plugin.compare import BaselineCheck, compare_with_baseline
from pytest_clever.plugin.options import (
    COMPARE_OPTION,
    JSON_OPTION,
    NOT_COMPARABLE_INI,
    POLICIES,
    SAVE_OPTION,
    SKIP_OPTION,
    STORAGE_INI,
    cli_settings,
    ini_settings,
    marker_of,
    nonempty,
    option_or_ini,
    process_setting,
)
from pytest_clever.plugin.selection import partial_reason
from pytest_clever.plugin.summary import write_summary

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.runs.record import RunRecord
    from pytest_clever.runs.storage import Storage

#: The records the ``clever`` fixture made in one test (an item stash key).
RECORDS = pytest.StashKey[list]()
_REPORT_ATTR = "clever_records"  # the teardown report's attribute that carries them, as JSON
_USAGE_ERRORS_KEY = "clever_usage_errors"  # worker -> controller, in workeroutput
_DESELECTED_KEY = "clever_deselected"  # worker -> controller: [tests deselected, of them by --lf, --lf reruns]


class CleverSession:
    """The run's state: settings from ini and CLI, and every record collected from reports."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.ini = ini_settings(config)
        self.cli = cli_settings(config)
        self.records: list[RunRecord] = []  # in arrival order until the loop ends
        self.is_worker = hasattr(config, "workerinput")
        self.comparison: BaselineCheck | None = None  # set when a baseline comparison ran
        self.errors: list[str] = []  # records that cannot be trusted (e.g. a key recorded twice)
        self.saved_path: Path | None = None
        self.incomplete: str | None = None  # why a saved run is incomplete
        self.partial: str | None = None  # how a saved run was narrowed to part of the suite
        self.deselected = 0  # tests deselected at collection (any worker's count under xdist)
        self.lf_deselected = 0  # of them, those --lf deselected (it does so after every other collection hook)
        self.lf_reran = 0  # tests --lf ran because they failed last time, when it ran only those
        self._hooks_deselected: int | None = None  # self.deselected once the collection hooks (not --lf) ran
        self.failed_tests: set[str] = set()  # node ids of tests that failed in any phase
        self.write_errors: list[str] = []  # outputs asked for that could not be written
        self.usage_errors: list[str] = []  # bad markers found on xdist workers
        self._ordered = False
        self.save_name = nonempty(config, SAVE_OPTION, "clever_save")
        self.compare_ref = nonempty(config, COMPARE_OPTION, "clever_compare")
        self.json_path = nonempty(config, JSON_OPTION, "clever_json")
        self.not_comparable = option_or_ini(config, "clever_not_comparable", NOT_COMPARABLE_INI, POLICIES, "warn")
        self.threads = process_setting(config, THREADS)
        self.progress = process_setting(config, PROGRESS)
        if self.save_name:
            check_save_name(self.save_name)
        if not self.is_worker:  # only the controller writes: find out now, not after an hour of tests
            check_outputs(self.storage().root if self.save_name else None, self.json_path)

    @property
    def regressions(self) -> list[str]:
        """What fails the run in the baseline comparison, one message each."""
        return self.comparison.regressions if self.comparison is not None else []

    def storage(self) -> Storage:
        """The folder of saved runs: ``--clever-storage``, else ini ``clever_storage``, under the rootdir."""
        from pytest_clever.runs.storage import Storage, storage_root

        configured = self.config.getoption("clever_storage_path") or self.config.getini(STORAGE_INI)
        return Storage(storage_root(self.config.rootpath, configured))

    def defaults_for(self, item: pytest.Item) -> dict[str, Any]:
        """The fixture settings of one test: marker > CLI > ini > built-in default."""
        return resolve(marker_of(item), self.cli, self.ini)

    def close(self) -> None:
        """Shut down the executors the fixture opened in this process (``clever_executor``)."""
        executors = sys.modules.get("pytest_clever._engine.executor_specs")  # loaded only if an executor was used
        if executors is not None:
            executors.close_executors()

    # -- collection -------------------------------------------------------------------

    # A wrapper, innermost: its code after the yield runs once every collection hook has selected,
    # and before --lf's outer wrapper deselects, so --lf's count can be told apart from the rest.
    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> Generator[None, None, None]:
        yield
        self._hooks_deselected = self.deselected
        if self.config.getoption("clever_skip"):
            for item in items:
                if "clever" in getattr(item, "fixturenames", ()):
                    item.add_marker(pytest.mark.skip(reason=f"pytest-clever: {SKIP_OPTION}"))
        errors = marker_errors(items)  # bad marker arguments: a usage error now, not a crash later
        if not errors:
            return
        if not self.is_worker:
            raise pytest.UsageError("\n".join(errors))
        # An xdist worker that raises here crashes (INTERNALERROR, message lost): run nothing
        # and hand the errors to the controller, which raises the same usage error.
        self.usage_errors = errors
        self.config.hook.pytest_deselected(items=list(items))
        items[:] = []

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        self.deselected += len(items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {})
        payload = output.get(_USAGE_ERRORS_KEY)
        if payload:
            self.usage_errors.extend(e for e in json.loads(payload) if e not in self.usage_errors)
        counts = json.loads(output.get(_DESELECTED_KEY, "[0, 0, 0]"))  # each worker collects all: any one's counts
        self.deselected = max(self.deselected, counts[0])
        self.lf_deselected = max(self.lf_deselected, counts[1])
        self.lf_reran = max(self.lf_reran, counts[2])

    # -- running ----------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        result = yield
        from pytest_clever.runs.report import failure_message

        records = item.stash.get(RECORDS, [])
        failed = [r for r in records if r.status == "failed"]
        if failed:
            pytest.fail("\n\n".join(failure_message(r) for r in failed), pytrace=False)
        bar = marker_of(item).get("min_score")
        if not records and bar is not None and _gated(item):  # a bar over nothing checked nothing: not a pass
            pytest.fail(
                f"@pytest.mark.clever(min_score={bar:g}) on {item.nodeid}: the test recorded no CLEVER score, "
                "so the bar checked nothing (score with clever.scores or clever.assert_robust, or drop min_score)",
                pytrace=False,
            )
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        records = item.stash.get(RECORDS, None)
        if report.when == "teardown" and records:
            setattr(report, _REPORT_ATTR, json.dumps([r.to_dict() for r in records]))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed_tests.add(report.nodeid)
        payload = getattr(report, _REPORT_ATTR, None)
        if payload and not self.is_worker:
            from pytest_clever.runs.record import RunRecord

            self.records.extend(RunRecord.from_dict(r, f"record from {report.nodeid}") for r in json.loads(payload))

    # -- end of run -------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
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
        rules = [rule for given in self.config.getoption("clever_compare_fail") for rule in given]
        self.comparison = compare_with_baseline(
            self.records,
            self.storage(),
            ref,
            rules,
            strict=self.config.getoption("clever_baseline_missing") == "fail",
            not_comparable=self.not_comparable,
            failed_tests=self.failed_tests,
            skipped=bool(self.config.getoption("clever_skip")),
        )
        self.errors.extend(self.comparison.errors)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.is_worker:
            write_summary(terminalreporter, self)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            if self.usage_errors:
                self.config.workeroutput[_USAGE_ERRORS_KEY] = json.dumps(self.usage_errors)  # type: ignore[attr-defined]
            self._count_lf()
            counts = [self.deselected, self.lf_deselected, self.lf_reran]
            self.config.workeroutput[_DESELECTED_KEY] = json.dumps(counts)  # type: ignore[attr-defined]
            return
        if self.usage_errors:
            return
        self._order_records()  # after an interrupt the loop wrapper never got to it
        self.incomplete = incomplete(session, exitstatus)
        self._count_lf()
        self.partial = partial_reason(
            self.config, self.deselected - self.lf_deselected, self.lf_deselected, self.lf_reran
        )
        self._write_outputs()
        if self.write_errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # outputs asked for are missing: not a pass

    def _count_lf(self) -> None:
        """What ``--lf`` left out in this process (nothing where nothing was collected here, as on an xdist
        controller, whose counts come from its workers).

        ``--lf`` also drops passed tests and files while collecting, where no hook names them: when it found
        failures to rerun, it ran only those, so their count (pytest's own, a private attribute read defensively)
        is what marks the run partial.
        """
        if self._hooks_deselected is None or not self.config.getoption("lf", False):
            return
        self.lf_deselected = self.deselected - self._hooks_deselected
        lf = self.config.pluginmanager.get_plugin("lfplugin")
        rerun = getattr(lf, "_previously_failed_count", None)
        if rerun is None and getattr(lf, "lastfailed", None):  # a pytest without the count: failures were known
            rerun = len(lf.lastfailed)  # type: ignore[union-attr]
        self.lf_reran = int(rerun or 0)

    def _write_outputs(self) -> None:
        """Save the baseline and write the JSON file asked for; a failure is an output error, not a crash."""
        if self.save_name and self.records and not self.errors:  # never save a run whose records collide
            try:
                self.saved_path = self.storage().save(
                    self.records, self.save_name, incomplete=self.incomplete, partial=self.partial
                )
            except (OSError, CleverError) as exc:
                self.write_errors.append(f"could not save baseline {self.save_name!r} in {self.storage().root}: {exc}")
        if self.json_path:
            from pytest_clever.runs.files import write_json
            from pytest_clever.runs.report import json_document

            try:
                write_json(self.json_path, json_document(self.records, self.regressions, self.errors))
            except OSError as exc:
                self.write_errors.append(f"could not write {JSON_OPTION} file {self.json_path}: {exc}")


def incomplete(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> str | None:
    """Why this run's records may not cover the suite (Ctrl-C, internal error, -x); None when complete."""
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return f"interrupted: {session.shouldstop or session.shouldfail or 'KeyboardInterrupt'}"
    if exitstatus == pytest.ExitCode.INTERNAL_ERROR:
        return "ended by an internal error"
    if session.shouldfail or session.shouldstop:
        return f"stopped early: {session.shouldfail or session.shouldstop}"
    return None


def _gated(item: pytest.Item) -> bool:
    """Whether a ``min_score`` bar that checked nothing fails this test: it asked for ``clever``, or its own
    function carries the bar. A module's or class's marker sets defaults for its tests that score; a plain
    test beside them never meant to record a score."""
    if "clever" in getattr(item, "fixturenames", ()):
        return True
    return any(m.name == "clever" and "min_score" in m.kwargs for m in getattr(item, "own_markers", ()))
