"""The "CLEVER robustness" section of pytest's terminal summary (controller only).

One table of this run's records, the outputs written (or why not), the baseline
comparison when one was asked for, and the errors that fail the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from pytest_clever.plugin.compare import BaselineCheck

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.runs.record import RunRecord


class RunState(Protocol):
    """What the summary reads of the run (``CleverSession``), so this module need not import it."""

    records: list[RunRecord]
    errors: list[str]
    write_errors: list[str]
    save_name: str | None
    compare_ref: str | None
    json_path: str | None
    saved_path: Path | None
    incomplete: str | None
    partial: str | None
    comparison: BaselineCheck | None


def write_summary(terminalreporter: pytest.TerminalReporter, state: RunState) -> None:
    """Write the section, when this run recorded something or asked for an output or a comparison."""
    asked = state.compare_ref or state.save_name or state.json_path
    if not (state.records or state.errors or state.write_errors or asked):
        return
    from pytest_clever.runs.report import notes_lines, summary_table

    terminalreporter.write_sep("=", "CLEVER robustness")
    if state.records:
        for line in summary_table(state.records):
            terminalreporter.write_line(line)
    else:
        terminalreporter.write_line("no test recorded a CLEVER score in this run")
    for line in notes_lines(state.records):
        terminalreporter.write_line(line, yellow=True)
    if state.json_path and not state.write_errors:
        terminalreporter.write_line(f"CLEVER results written to {state.json_path}")
    if state.saved_path is not None:
        if state.incomplete:
            terminalreporter.write_line(
                f"CLEVER run saved as INCOMPLETE ({state.incomplete}) to {state.saved_path}: "
                "never used as 'latest' or by name",
                yellow=True,
            )
        elif state.partial:
            terminalreporter.write_line(
                f"CLEVER run saved as PARTIAL ({state.partial}) to {state.saved_path}: "
                "a run of the whole suite under the same name stays the baseline",
                yellow=True,
            )
        else:
            terminalreporter.write_line(f"CLEVER baseline saved to {state.saved_path}")
    elif state.save_name and not state.write_errors:
        why = "its records collide" if state.errors else "no test recorded a CLEVER score"
        terminalreporter.write_line(f"CLEVER baseline not saved: {why}", yellow=True)
    if state.compare_ref:
        # No check when this run's own records collide: nothing was compared.
        write_comparison(terminalreporter, state.comparison or BaselineCheck())
    for title, lines in (("record errors", state.errors), ("output errors", state.write_errors)):
        if lines:
            terminalreporter.write_line(f"CLEVER {title} ({len(lines)}):", red=True, bold=True)
            for line in lines:
                terminalreporter.write_line(f"  {line}", red=True)


def write_comparison(terminalreporter: pytest.TerminalReporter, check: BaselineCheck) -> None:
    """The baseline comparison: its table, or why there is none, and the regressions it found."""
    from pytest_clever.runs.compare import comparison_table

    baseline = check.baseline
    for note in check.notes:
        terminalreporter.write_line(note, yellow=True)
    if baseline is None:
        terminalreporter.write_sep("=", "CLEVER baseline comparison", yellow=True)
        if check.problem:
            terminalreporter.write_line(f"no comparison: {check.problem}")
    else:
        commit = (baseline.git.get("commit") or "")[:10]
        title = f"CLEVER compared with baseline '{baseline.name}' ({baseline.id}{', ' + commit if commit else ''})"
        terminalreporter.write_sep("=", title, red=bool(check.regressions))
        for problem in baseline.problems:
            terminalreporter.write_line(f"baseline {problem}", yellow=True)
        for line in comparison_table(check.comparisons, regression_reasons=False):
            terminalreporter.write_line(line)
        not_run = sum(1 for c in check.comparisons if c.status == "not run")
        if not_run:
            terminalreporter.write_line(
                f"{not_run} baseline entr{'y' if not_run == 1 else 'ies'} not run this time "
                "(deselected, skipped or removed): listed, not failed",
                yellow=True,
            )
    if check.regressions:
        terminalreporter.write_line(f"CLEVER regressions ({len(check.regressions)}):", red=True, bold=True)
        for reason in check.regressions:
            terminalreporter.write_line(f"  {reason}", red=True)
