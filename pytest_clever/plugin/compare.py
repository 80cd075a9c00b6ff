"""``--clever-compare``: this run's records against a saved baseline, and what fails the run.

The comparison itself lives in ``pytest_clever.runs.compare``; this module applies the
run's policies to it (``--clever-compare-fail`` rules, ``--clever-baseline-missing``,
``--clever-not-comparable``) and turns each breach into a regression message.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_clever.plugin.options import MISSING_OPTION, NOT_COMPARABLE_OPTION, SKIP_OPTION

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.runs.compare import Comparison
    from pytest_clever.runs.gates import ChangeRule
    from pytest_clever.runs.record import RunRecord
    from pytest_clever.runs.storage import SavedRun, Storage


@dataclass
class BaselineCheck:
    """What comparing this run with a saved baseline found."""

    baseline: SavedRun | None = None  # None when it could not be loaded (see ``problem``)
    problem: str | None = None  # why the baseline could not be loaded
    comparisons: list[Comparison] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)  # each one fails the run
    errors: list[str] = field(default_factory=list)  # records that cannot be paired (a key twice)
    notes: list[str] = field(default_factory=list)  # what the reader must know, e.g. that nothing was compared


def compare_with_baseline(
    records: Sequence[RunRecord],
    storage: Storage,
    ref: str,
    rules: Sequence[ChangeRule],
    *,
    strict: bool,
    not_comparable: str,
    failed_tests: Collection[str] = (),
    skipped: bool = False,
) -> BaselineCheck:
    """Compare ``records`` with the baseline ``ref`` names in ``storage``.

    ``strict`` (``--clever-baseline-missing=fail``): a missing baseline, a test missing from
    it, or a run that recorded nothing is a regression. ``not_comparable="fail"``: so is an
    entry recorded with other settings. ``failed_tests``: node ids of tests that failed, whose
    baseline entries show as failed rather than not run. ``skipped`` (``--clever-skip``): the
    comparison says that nothing was compared, and ``not_comparable="fail"`` fails on it.
    """
    from pytest_clever.runs.compare import compare_records
    from pytest_clever.runs.record import RecordError
    from pytest_clever.runs.storage import StorageError

    check = BaselineCheck()
    if not records and strict:  # nothing was compared: a gate asked to be strict says so
        check.regressions.append(
            f"no test recorded a CLEVER score in this run, so nothing was compared ({MISSING_OPTION}=fail)"
        )
    if skipped and not records:
        note = f"nothing was compared: {SKIP_OPTION} skipped every test that uses the clever fixture"
        check.notes.append(note)
        if not_comparable == "fail" and not strict:  # strict already failed the run on it, just above
            check.regressions.append(f"{note} ({NOT_COMPARABLE_OPTION}=fail)")
    try:
        check.baseline = baseline = storage.find(ref)
    except StorageError as exc:
        check.problem = str(exc)
        if strict:
            check.regressions.append(f"baseline: {exc}")
        return check
    try:
        check.comparisons = compare_records(
            records, baseline.records, rules, failed_tests=failed_tests, unreadable=dict(baseline.unreadable)
        )
    except RecordError as exc:
        check.errors.append(str(exc))
        return check
    for c in check.comparisons:
        if c.status == "regressed":
            check.regressions.extend(f"{c.label}: {reason}" for reason in c.reasons)
        elif c.status == "missing baseline" and strict:
            check.regressions.append(f"{c.label}: no entry in baseline {baseline.name}")
        elif c.status == "not comparable" and not_comparable == "fail":
            check.regressions.append(
                f"{c.label}: not comparable with baseline {baseline.name} ({'; '.join(c.reasons)}; "
                f"{NOT_COMPARABLE_OPTION}=fail)"
            )
    return check
