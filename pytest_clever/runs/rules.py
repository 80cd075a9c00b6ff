"""Baseline rules: how far a statistic may drop from its baseline (pure Python).

One or more rules, separated by commas::

    STAT:DROP[:significant]

- ``STAT``: ``min``, ``mean``, ``median`` or ``max``;
- ``DROP``: ``10%`` (relative to the baseline) or ``0.05`` (absolute);
- ``:significant``: fail only when the drop is significantly larger than
  ``DROP``: the whole confidence interval of the paired change lies below
  ``-DROP`` (:func:`pytest_clever.runs.gates.compare_paired`). Without it the
  rule compares point values.

Examples: ``mean:10%`` (fail if the mean dropped by more than 10%),
``mean:10%:significant`` (fail only if it dropped significantly more than
10%), ``min:0.05:significant,mean:10%``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_clever.core.validation import STATISTICS, parse_statistic
from pytest_clever.errors import InvalidInputError

#: The rule suffix that asks for significance.
SIGNIFICANT = "significant"


@dataclass(frozen=True)
class DropRule:
    """Fail when ``statistic`` dropped by more than ``drop`` (a fraction if ``relative``)."""

    statistic: str
    drop: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> DropRule:
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
class ChangeRule:
    """A :class:`DropRule` that may require significance (``STAT:DROP[:significant]``)."""

    drop: DropRule
    significant: bool = False

    @classmethod
    def parse(cls, text: str) -> ChangeRule:
        """One rule; a usage error that shows the syntax when it is malformed."""
        body, sep, flag = str(text).strip().rpartition(":")
        if sep and flag.strip().lower() == SIGNIFICANT:
            return cls(_parse_drop(body), True)
        return cls(_parse_drop(text), False)

    @classmethod
    def parse_many(cls, text: str) -> list[ChangeRule]:
        """Comma-separated rules, e.g. ``"min:0.05:significant, mean:10%"``."""
        return [cls.parse(part) for part in str(text).split(",") if part.strip()]

    @classmethod
    def of(cls, rule: ChangeRule | DropRule) -> ChangeRule:
        """``rule`` as a ChangeRule: a plain DropRule is a rule without significance."""
        return rule if isinstance(rule, ChangeRule) else cls(rule)

    def __str__(self) -> str:
        return f"{self.drop}:{SIGNIFICANT}" if self.significant else str(self.drop)


def _parse_drop(text: str) -> DropRule:
    try:
        return DropRule.parse(text)
    except ValueError as exc:
        raise InvalidInputError(f"{exc} (rule syntax: STAT:DROP[:significant], e.g. mean:10%:significant)") from None
