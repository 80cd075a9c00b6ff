"""Regression checks between recorded results and a saved baseline (pure Python).

A rule such as ``mean:10%`` (relative) or ``min:0.05`` (absolute) fails a
record whose statistic dropped by more than that. Records match by their
key (test id, model name, call index; see ``record``), and a key that occurs
twice on either side is an error; a baseline recorded with different settings
(``record.COMPARABLE_SETTINGS``) is "not comparable", never silently compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .record import RunRecord, index_records
from .report import format_table
from .validation import STATISTICS, parse_statistic


@dataclass(frozen=True)
class DropRule:
    """Fail when ``statistic`` dropped by more than ``drop`` (a fraction if ``relative``)."""

    statistic: str
    drop: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> "DropRule":
        """``STAT:DROP`` with DROP like ``10%`` (relative) or ``0.05`` (absolute)."""
        stat, sep, amount = str(text).partition(":")
        if not sep:
            raise ValueError(f"expected STAT:DROP such as mean:10% or min:0.05, got {text!r}")
        statistic = parse_statistic(stat)
        if statistic not in STATISTICS:
            raise ValueError(f"regression rules apply to {', '.join(STATISTICS)}, got {stat!r}")
        amount = amount.strip()
        relative = amount.endswith("%")
        try:
            value = float(amount[:-1] if relative else amount)
        except ValueError:
            raise ValueError(f"bad drop {amount!r} in {text!r}: use a number or a percentage") from None
        if not value >= 0 or value == float("inf"):  # NaN and inf would never fire
            raise ValueError(f"drop must be a finite number >= 0 in {text!r}")
        return cls(statistic, value / 100 if relative else value, relative)

    def __str__(self) -> str:
        return f"{self.statistic}:{self.drop * 100:g}%" if self.relative else f"{self.statistic}:{self.drop:g}"

    def fails(self, before: float, now: float) -> str | None:
        """A readable reason when the drop from ``before`` to ``now`` breaks the rule, else None."""
        drop = before - now
        limit = self.drop * abs(before) if self.relative else self.drop
        if drop > limit + 1e-12:
            shown = f"{drop / before:.1%}" if self.relative and before else f"{drop:.4g}"
            return f"{self.statistic} dropped {before:.4g} -> {now:.4g} ({shown}, allowed {self})"
        return None


@dataclass(frozen=True)
class Comparison:
    """One record against its baseline.

    ``status``: ok, regressed, not comparable, missing baseline (``before`` is
    None), or not run (a baseline entry this run did not record; ``now`` is None).
    """

    label: str
    status: str
    now: RunRecord | None
    before: RunRecord | None
    reasons: tuple[str, ...] = ()

    def delta(self, statistic: str) -> float | None:
        if self.before is None or self.now is None or self.status == "not comparable":
            return None
        return self.now.statistic(statistic) - self.before.statistic(statistic)


def compare_records(
    current: Sequence[RunRecord], baseline: Sequence[RunRecord], rules: Sequence[DropRule]
) -> list[Comparison]:
    """Compare each current record with the baseline record of the same key, in the current order;
    then one "not run" comparison per baseline record this run did not record, in baseline order.

    Raises :class:`~pytest_clever.record.RecordError` when a key occurs twice in either list.
    """
    now_keys = index_records(current, "this run")
    by_key = index_records(baseline, "the baseline")
    out = []
    for record in current:
        before = by_key.get(record.key)
        if before is None:
            out.append(Comparison(record.label, "missing baseline", record, None))
            continue
        differences = record.settings_differences(before)
        if differences:
            out.append(Comparison(record.label, "not comparable", record, before, tuple(differences)))
            continue
        reasons = tuple(
            reason
            for rule in rules
            if (reason := rule.fails(before.statistic(rule.statistic), record.statistic(rule.statistic)))
        )
        out.append(Comparison(record.label, "regressed" if reasons else "ok", record, before, reasons))
    out.extend(
        Comparison(record.label, "not run", None, record) for record in baseline if record.key not in now_keys
    )
    return out


def comparison_table(comparisons: list[Comparison], regression_reasons: bool = True) -> list[str]:
    """Rows: test, before and now mean/min with deltas, status; then the reasons behind statuses.

    ``regression_reasons=False`` leaves out why regressions failed, for callers that list them anyway.
    """
    header = ("test", "mean before", "mean now", "delta", "min before", "min now", "delta", "status")
    rows = [header]
    for c in comparisons:
        def cell(value: float | None, signed: bool = False) -> str:
            return "-" if value is None else (f"{value:+.4g}" if signed else f"{value:.4g}")

        before = c.before
        rows.append(
            (
                c.label,
                cell(before.mean if before else None),
                cell(c.now.mean if c.now else None),
                cell(c.delta("mean"), signed=True),
                cell(before.min if before else None),
                cell(c.now.min if c.now else None),
                cell(c.delta("min"), signed=True),
                c.status.upper(),
            )
        )
    lines = format_table(rows)
    for c in comparisons:
        if c.status == "regressed" and not regression_reasons:
            continue
        for reason in c.reasons:
            lines.append(f"  {c.label}: {reason}")
    return lines
