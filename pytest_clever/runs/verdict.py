"""The verdict of a run as rows for the CI reports (markdown summary, HTML report): what failed comes first.

One place decides the rows' order and cells, so the job summary and the HTML page agree: regressions
against the baseline first, then failed gates (and scores an attack contradicted), then the rest in the
terminal table's order (test id, name, call). Cells are plain text; each report escapes them its own way.

Pure Python, like the rest of ``runs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_clever.core.norms import norm_label
from pytest_clever.runs.compare import compared_text, delta_cell
from pytest_clever.runs.record import RecordKey, RunRecord, sorted_records
from pytest_clever.runs.report import n_cell, status_cell

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.runs.compare import Comparison
    from pytest_clever.runs.storage import SavedRun

SUMMARY_HEADER = ("test", "norm", "order", "targets", "n", "statistic", "interval", "threshold", "status")
COMPARISON_HEADER = (
    "test",
    "mean before",
    "mean now",
    "Δ mean",
    "min before",
    "min now",
    "Δ min",
    "compared",
    "status",
)
#: Comparison statuses in the order a reviewer needs them: what fails the run first.
COMPARISON_ORDER = ("regressed", "failed", "not comparable", "missing baseline", "not run", "ok")


@dataclass(frozen=True)
class Verdict:
    """What a report shows of one run: its records, the baseline comparison and every message that fails it.

    ``baseline`` is the saved run compared with (None without a comparison); ``problems`` are messages
    the reader must see (a baseline that could not be loaded, record errors, outputs that failed).
    """

    records: tuple[RunRecord, ...]
    comparisons: tuple[Comparison, ...] = ()
    regressions: tuple[str, ...] = ()
    baseline: SavedRun | None = None
    problems: tuple[str, ...] = ()
    #: Saved runs, oldest first, for trends; the report adds this run as the last point when it is not saved.
    history: tuple[SavedRun, ...] = ()
    title: str = "CLEVER robustness"
    #: ``(label, value)`` lines about the run (created, commit, versions), shown as they are (escaped).
    about: tuple[tuple[str, str], ...] = field(default=())

    def comparison_of(self) -> dict[RecordKey, Comparison]:
        """Each record's comparison, by key (records without a baseline entry are absent)."""
        return {c.now.key: c for c in self.comparisons if c.now is not None}

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.records if r.status == "failed" or r.contradicted]


def _rank(record: RunRecord, comparison: Comparison | None) -> int:
    if comparison is not None and comparison.status == "regressed":
        return 0
    if record.status == "failed" or record.contradicted:
        return 1
    if comparison is not None and comparison.status == "not comparable":
        return 2
    return 3


def ordered(verdict: Verdict) -> list[tuple[RunRecord, Comparison | None]]:
    """Records with their comparisons: regressions, then failures, then not comparable, then the rest."""
    by_key = verdict.comparison_of()
    pairs = [(r, by_key.get(r.key)) for r in sorted_records(verdict.records)]
    return sorted(pairs, key=lambda pair: _rank(*pair))  # stable: the terminal order within a rank


def ordered_comparisons(comparisons: Iterable[Comparison]) -> list[Comparison]:
    """Comparisons in :data:`COMPARISON_ORDER`, each group in its given order."""
    return sorted(comparisons, key=lambda c: COMPARISON_ORDER.index(c.status))


def status_text(record: RunRecord, comparison: Comparison | None) -> str:
    """``PASSED``, ``FAILED``, ``RECORDED``, with ``(attack)`` and ``, REGRESSED`` when they apply."""
    text = status_cell(record)
    if comparison is not None and comparison.status == "regressed":
        text += ", REGRESSED"
    return text


def statistic_text(record: RunRecord) -> str:
    """The gated statistic (mean without a threshold) and its value: ``mean 0.2774``."""
    statistic = record.threshold.statistic if record.threshold else "mean"
    return f"{statistic} {record.value:.4g}"


def interval_cell(record: RunRecord) -> str:
    """The gated statistic's interval with its level and kind, or "-": ``95% [0.26, 0.28] (estimator)``."""
    if record.interval is None:
        return "-"
    level = f"{record.confidence:.0%} " if record.confidence is not None else ""
    kind = f" ({record.interval_kind})" if record.interval_kind is not None else ""
    return f"{level}[{record.interval[0]:.4g}, {record.interval[1]:.4g}]{kind}"


def summary_cells(record: RunRecord, comparison: Comparison | None) -> tuple[str, ...]:
    """One row of :data:`SUMMARY_HEADER`."""
    return (
        record.label,
        norm_label(record.settings.norm),
        str(record.settings.order),
        record.settings.targets,
        n_cell(record),
        statistic_text(record),
        interval_cell(record),
        str(record.threshold) if record.threshold else "-",
        status_text(record, comparison),
    )


def comparison_cells(c: Comparison) -> tuple[str, ...]:
    """One row of :data:`COMPARISON_HEADER`: before, now and the delta (with its interval) of mean and min."""
    now, before = c.compared

    def value(record: RunRecord | None, statistic: str) -> str:
        return "-" if record is None else f"{record.statistic(statistic):.4g}"

    return (
        c.label,
        value(before, "mean"),
        value(now, "mean"),
        delta_cell(c, "mean"),
        value(before, "min"),
        value(now, "min"),
        delta_cell(c, "min"),
        compared_text(c),
        c.status.upper(),
    )


def headline(verdict: Verdict) -> str:
    """One sentence: how many calls were recorded, and how many regressed or failed."""
    n = len(verdict.records)
    regressed = sum(1 for c in verdict.comparisons if c.status == "regressed")
    failed = len(verdict.failed)
    parts = [f"{n} recorded call{'s' if n != 1 else ''}"]
    if regressed:
        parts.append(f"{regressed} regressed against the baseline")
    if failed:
        parts.append(f"{failed} failed")
    if verdict.problems:
        parts.append(f"{len(verdict.problems)} problem{'s' if len(verdict.problems) != 1 else ''}")
    if not (regressed or failed or verdict.problems):
        parts.append("no gate failed or regressed")
    return ", ".join(parts)


def problems_of(lines: Sequence[str]) -> tuple[str, ...]:
    """Messages, without duplicates, in their order."""
    return tuple(dict.fromkeys(lines))


def saved_run_verdict(
    run: SavedRun,
    baseline: SavedRun | None,
    comparisons: Sequence[Comparison],
    regressions: Sequence[str],
    history: Sequence[SavedRun],
) -> Verdict:
    """The verdict of a saved run (``pytest-clever report``): its records, compared with ``baseline``."""
    commit = (run.git.get("commit") or "-")[:10] + ("*" if run.git.get("dirty") else "")
    about = [("run", f"{run.name} ({run.id}, commit {commit})"), ("created", run.created)]
    about += [(k, str(run.environment[k])) for k in ("pytest_clever", "torch", "python") if run.environment.get(k)]
    return Verdict(
        tuple(run.records),
        tuple(comparisons),
        tuple(regressions),
        baseline,
        problems_of([*run.problems, *([f"run {run.id} is incomplete: {run.incomplete}"] if run.incomplete else [])]),
        tuple(history),
        about=tuple(about),
    )
