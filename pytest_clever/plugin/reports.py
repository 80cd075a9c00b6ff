"""The run's verdict for people who do not read logs: a markdown job summary and an HTML report.

``--clever-md=PATH`` (and ``$GITHUB_STEP_SUMMARY``, which GitHub Actions sets in every job step) appends
the markdown of :mod:`pytest_clever.runs.markdown`; ``--clever-html=PATH`` writes the page of
:mod:`pytest_clever.runs.html`. Only the controller writes (under xdist the workers hand it their records),
after the baseline comparison and the saved run; the paths are checked at startup, so an unwritable one
is a usage error before any test runs, and a write that still fails is an output error of the run.
With pytest-html installed and ``--html`` given, each test's report also carries its calls' score
distribution and worst fit as extras.

Thin by design: the rendering is in ``runs`` (pure Python); this module holds the options and the hooks.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_clever.plugin.checks import check_writable_folder
from pytest_clever.plugin.options import GROUP, nonempty
from pytest_clever.plugin.session import RECORDS

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.plugin.session import CleverSession
    from pytest_clever.runs.verdict import Verdict

MD_OPTION = "--clever-md"
HTML_OPTION = "--clever-html"
#: The file GitHub Actions shows on the run page; a step appends to it.
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def add_report_options(parser: pytest.Parser) -> None:
    """Declare ``--clever-md`` and ``--clever-html``."""
    group = parser.getgroup(GROUP)
    group.addoption(
        MD_OPTION,
        dest="clever_md",
        metavar="PATH",
        default=None,
        help=f"append a markdown summary of the CLEVER results to PATH (also to ${STEP_SUMMARY_ENV} when set)",
    )
    group.addoption(
        HTML_OPTION,
        dest="clever_html",
        metavar="PATH",
        default=None,
        help="write a self-contained HTML report of the CLEVER results (tables, score and fit plots, trends) to PATH",
    )


def _check_file(path: str, what: str) -> None:
    target = Path(path)
    if target.is_dir():
        raise pytest.UsageError(f"{what}: {target} is a folder; give a file path")
    check_writable_folder(target.absolute().parent, f"{what}: {target}")


class CleverReports:
    """Writes the reports asked for at the end of the run, from the run's state (``CleverSession``)."""

    def __init__(self, config: pytest.Config, state: CleverSession) -> None:
        self.state = state
        self.md_path = nonempty(config, MD_OPTION, "clever_md")
        self.html_path = nonempty(config, HTML_OPTION, "clever_html")
        # Set by GitHub Actions, never typed by hand: an empty value means "not on GitHub", not a mistake.
        self.step_summary = os.environ.get(STEP_SUMMARY_ENV) or None
        self.written: list[str] = []
        # pytest-html (when installed and writing a report): the plots of each test's calls as its extras.
        # Workers attach them too: the extras travel with the test's report to the controller.
        self.html_extras = config.pluginmanager.hasplugin("html") and bool(config.getoption("htmlpath", None))
        if state.is_worker:
            return
        if self.md_path:
            _check_file(self.md_path, MD_OPTION)
        if self.step_summary:
            _check_file(self.step_summary, f"${STEP_SUMMARY_ENV}")
        if self.html_path:
            _check_file(self.html_path, HTML_OPTION)

    def _has_news(self) -> bool:
        """Whether the run has something for a job summary nobody asked for by option: records, a comparison,
        errors. Every pytest step of a GitHub job sees the variable; one without CLEVER results stays out."""
        state = self.state
        return bool(state.records or state.compare_ref or state.errors or state.write_errors)

    def verdict(self) -> Verdict:
        """What the reports show, from the run's state; saved runs for the trends when there are any."""
        from pytest_clever.runs.files import environment
        from pytest_clever.runs.storage import SavedRun
        from pytest_clever.runs.verdict import Verdict, problems_of

        state = self.state
        check = state.comparison
        problems = [*state.errors, *state.write_errors]
        if state.incomplete:
            problems.append(f"the run is incomplete ({state.incomplete}): tests it did not reach have no row")
        if check is not None:
            problems = [*([check.problem] if check.problem else []), *check.notes, *problems]
        history: list[SavedRun] = []
        if self.html_path:
            runs, skipped = state.storage().runs()
            problems += [f"trends: {message}" for message in skipped]  # a run file left out is named, never lost
            history = [run for run in runs if run.incomplete is None]
            if state.saved_path is None or state.incomplete:
                history.append(SavedRun(Path(), "", "this run", "", {}, {}, tuple(state.records)))
        env = environment()
        about = [(k, str(env[k])) for k in ("pytest_clever", "torch", "python", "platform") if env.get(k)]
        if state.saved_path is not None:
            about.append(("saved as", str(state.saved_path)))
        return Verdict(
            records=tuple(state.records),
            comparisons=tuple(check.comparisons) if check else (),
            regressions=tuple(state.regressions),
            baseline=check.baseline if check else None,
            problems=problems_of(problems),
            history=tuple(history),
            about=tuple(about),
        )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        records = item.stash.get(RECORDS, None) if self.html_extras and report.when == "call" else None
        if records:
            from pytest_clever.runs.html import record_plots

            plots = [record_plots(r) for r in records]
            extras = [
                {"name": "CLEVER", "format_type": "html", "content": p, "mime_type": None, "extension": None}
                for p in plots
                if p
            ]
            report.extras = [*getattr(report, "extras", []), *extras]  # type: ignore[attr-defined]
        return report

    # trylast: after CleverSession's own sessionfinish has ordered the records and saved the run.
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        if state.is_worker or state.usage_errors:
            return
        md_paths = [p for p in (self.md_path, self.step_summary if self._has_news() else None) if p]
        if not (md_paths or self.html_path):
            return
        verdict = self.verdict()
        if md_paths:
            from pytest_clever.runs.markdown import markdown_summary

            text = markdown_summary(verdict)
            for path in dict.fromkeys(md_paths):
                self._write(path, text, append=True)
        if self.html_path:
            from pytest_clever.runs.html import html_report

            self._write(self.html_path, html_report(verdict), append=False)
        if state.write_errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # an output asked for is missing: not a pass

    def _write(self, path: str, text: str, *, append: bool) -> None:
        from pytest_clever.runs.files import atomic_write_bytes

        try:
            if append:  # the job summary collects every step's section: never replace what is there
                with open(path, "a", encoding="utf-8") as handle:
                    handle.write(text)
            else:
                atomic_write_bytes(path, text.encode("utf-8"))
        except OSError as exc:
            self.state.write_errors.append(f"could not write CLEVER report {path}: {exc}")
            return
        self.written.append(path)

    @pytest.hookimpl(trylast=True)  # under the "CLEVER robustness" section
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for path in self.written:
            terminalreporter.write_line(f"CLEVER report written to {path}")
