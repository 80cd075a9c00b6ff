"""Regression checks between recorded results and a saved baseline (pure Python).

A rule such as ``mean:10%`` (relative) or ``min:0.05`` (absolute) fails a
record whose statistic dropped by more than that. Records match by their
key (test id, model name, call index; see ``record``), and a key that occurs
twice on either side is an error; a baseline recorded with different settings
(``record.COMPARABLE_SETTINGS``) is "not comparable", never silently compared.

Rules (:mod:`.rules`) may require significance (``mean:10%:significant``).
Two records of the same key are **paired** input by input, each input matched
with the same input by its fingerprint (:func:`.gates.pair_inputs`). When
some inputs pair but not all, the comparison is made on the shared inputs
alone if they are at least :data:`MIN_SHARED_FRACTION` of each side's inputs
(and at least two): both sides' statistics are recomputed from the per-input
scores of the shared inputs, and the table and a note say so. With fewer
shared inputs, the inputs differ: the pair is "not comparable", listing the
inputs found on one side only, since statistics over other inputs say
nothing about a change. A side without per-input results is compared by its
saved statistics, with a note. With random-k targets the classes
each paired input was scored against must agree too. A side without
fingerprints (a layout without them) pairs input ``i`` with input ``i``, and the
table says so. When both carry every score's interval, the deltas get
intervals and significant rules are tested with them
(:func:`.gates.compare_paired`; numpy, imported then). Otherwise (input counts
differ, or a side without intervals) they are compared by point values, and
the table says why.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from pytest_clever.core.validation import DEFAULT_CONFIDENCE
from pytest_clever.runs.gates import InputPairing, compare_paired, pair_inputs
from pytest_clever.runs.record import RecordKey, RunRecord, index_records
from pytest_clever.runs.record_settings import SEEDED_TARGETS
from pytest_clever.runs.report import format_table
from pytest_clever.runs.rules import ChangeRule, DropRule

__all__ = [
    "MIN_SHARED_FRACTION",
    "TABLE_STATISTICS",
    "Comparison",
    "DropRule",
    "compare_records",
    "compared_text",
    "comparison_table",
    "delta_cell",
    "points_reason",
]

#: Statistics whose deltas the comparison table shows.
TABLE_STATISTICS = ("mean", "min")
#: When the inputs of a run and its baseline pair only in part, they are compared on the shared inputs if
#: these are at least this fraction of the baseline's inputs and of this run's (and at least two): a
#: conftest that picks "the first 20 inputs the model gets right" swaps an input or two when the model
#: changes, and that must not hide a regression on the other inputs. With fewer, the inputs differ.
MIN_SHARED_FRACTION = 0.8
#: How a paired comparison's intervals are named: each score's own interval, the inputs held fixed.
PAIRED_INTERVAL_KIND = "estimator noise"
#: How inputs are told apart, said wherever a comparison reports inputs on one side only.
MATCHED_BY = "inputs are matched by a hash of their bytes, dtype and shape"


@dataclass(frozen=True)
class Comparison:
    """One record against its baseline.

    ``status``: ok, regressed, not comparable, missing baseline (``before`` is
    None), not run (a baseline entry this run did not record; ``now`` is None), or
    failed (a baseline entry whose test failed before recording it; ``now`` is None).
    ``by_points`` says why a comparable pair was compared by point values (None when
    paired with intervals); ``intervals`` holds the confidence interval of each
    table statistic's delta, when paired. ``pairing`` says which inputs are partners
    (and which are on one side only) when both sides were recorded and their settings agree.
    """

    label: str
    status: str
    now: RunRecord | None
    before: RunRecord | None
    reasons: tuple[str, ...] = ()
    by_points: str | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    pairing: InputPairing | None = None
    #: How a rule was applied when it could not be applied as written (a relative rule on a baseline <= 0),
    #: and on which inputs the pair was compared when not on all of them.
    notes: tuple[str, ...] = ()
    #: ``(this run, baseline)`` restricted to the shared inputs, statistics recomputed, when the pair was
    #: compared on the inputs both runs scored (:data:`MIN_SHARED_FRACTION`); None when compared whole.
    shared: tuple[RunRecord, RunRecord] | None = None

    @property
    def compared(self) -> tuple[RunRecord | None, RunRecord | None]:
        """``(now, before)`` as compared: restricted to the shared inputs when :attr:`shared` is set."""
        return self.shared if self.shared is not None else (self.now, self.before)

    def delta(self, statistic: str) -> float | None:
        now, before = self.compared
        if before is None or now is None or self.status == "not comparable":
            return None
        return now.statistic(statistic) - before.statistic(statistic)


def _confidence(record: RunRecord) -> float:
    """The level of a record's score intervals."""
    first = record.results[0] if record.results else {}
    return float(first.get("confidence", record.confidence or DEFAULT_CONFIDENCE))


def points_reason(now: RunRecord, before: RunRecord) -> str | None:
    """Why two records of the same key cannot be paired with intervals; None when they can."""
    for side, record in (("baseline", before), ("this run", now)):
        if not record.results:
            return f"{side} has no per-input results"
    if len(now.results) != len(before.results) or now.n != before.n:
        return f"input counts differ ({before.n} -> {now.n})"
    for side, record in (("baseline", before), ("this run", now)):
        if any(r.get("interval") is None for r in record.results):
            return f"{side} has no intervals"
    if _confidence(now) != _confidence(before):
        return f"confidence levels differ ({_confidence(before):g} -> {_confidence(now):g})"
    return None


def _listed(indices: Sequence[int], limit: int = 5) -> str:
    """``input 2`` / ``inputs 2, 7 and 3 more``."""
    shown = ", ".join(map(str, indices[:limit]))
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return f"input{'s' if len(indices) != 1 else ''} {shown}{more}"


def _fingerprints(record: RunRecord) -> tuple[str | None, ...]:
    """Each result's input fingerprint; None for every result when the record cannot vouch for all of them."""
    return record.fingerprints or (None,) * len(record.results)


def _shares_enough(now: RunRecord, before: RunRecord, pairing: InputPairing) -> bool:
    """Whether a partial pairing by fingerprint shares enough inputs to compare on them
    (:data:`MIN_SHARED_FRACTION` of each side's inputs, and two at least)."""
    shared = len(pairing.pairs) + 1e-9  # 0.8 * n in floating point must not turn 16 of 20 away
    return shared >= 2 and shared >= MIN_SHARED_FRACTION * before.n and shared >= MIN_SHARED_FRACTION * now.n


def _restricted(record: RunRecord, indices: Sequence[int]) -> RunRecord:
    """``record`` on the inputs ``indices`` alone (in that order), its statistics recomputed from their scores."""
    results = tuple(record.results[i] for i in indices)
    scores = [float(r["score"]) for r in results]
    mean = statistics.fmean(scores)
    return replace(
        record,
        n=len(results),
        results=results,
        min=min(scores),
        mean=mean,
        median=statistics.median(scores),
        max=max(scores),
        value=mean,
        interval=None,
        attack=None,
    )


def _shared_note(pairing: InputPairing) -> str:
    """The note of a pair compared on its shared inputs."""
    left_out = len(pairing.only_before), len(pairing.only_now)
    return (
        f"compared on the {len(pairing.pairs)} inputs both runs scored; {left_out[0]} input"
        f"{'s' if left_out[0] != 1 else ''} of the baseline and {left_out[1]} of this run left out "
        f"({MATCHED_BY})"
    )


def _identity_reasons(now: RunRecord, before: RunRecord, pairing: InputPairing) -> list[str]:
    """Why two records of the same key scored different things: other inputs (by fingerprint, too few
    shared to compare on them), or, with random-k targets, other classes for a paired input. Empty when
    the pair is comparable."""
    if pairing.by_position is None and not pairing.complete and not _shares_enough(now, before, pairing):
        parts = [f"inputs differ: {len(pairing.pairs)} of the baseline's {before.n} inputs are in this run"]
        if pairing.only_before:
            parts.append(f"only in the baseline: {_listed(pairing.only_before)}")
        if pairing.only_now:
            parts.append(f"only in this run: {_listed(pairing.only_now)}")
        parts.append(MATCHED_BY)
        return ["; ".join(parts)]
    if not now.settings.targets.startswith(SEEDED_TARGETS):
        return []
    differ = []
    for i, j in pairing.pairs:
        mine, theirs = now.results[i].get("target_classes"), before.results[j].get("target_classes")
        if mine and theirs and list(mine) != list(theirs):
            differ.append((i, j, theirs, mine))
    if not differ:
        return []
    i, j, theirs, mine = differ[0]
    where = f"input {i}" if i == j else f"input {i} (input {j} in the baseline)"
    return [
        f"targets {now.settings.targets} scored other classes for {len(differ)} of {len(pairing.pairs)} inputs: "
        f"{where} against classes {list(theirs)} in the baseline, {list(mine)} now "
        "(random-k draws each input's classes with its seed)"
    ]


def absolute_rules(before: RunRecord, rules: Sequence[ChangeRule]) -> tuple[list[ChangeRule], list[str]]:
    """``rules`` as they apply to ``before``, and a note for each rule that changed.

    A relative rule on a baseline statistic <= 0 has no meaning (a ratio to a negative
    number turns an improvement into a drop; to zero, into infinity): it is applied as
    an absolute rule allowing the same drop, ``DROP`` times ``|baseline|`` (so a zero
    baseline allows none).
    """
    applied, notes = [], []
    for rule in rules:
        drop, base = rule.drop, before.statistic(rule.drop.statistic)
        if drop.relative and base <= 0:
            absolute = DropRule(drop.statistic, drop.drop * abs(base), relative=False)
            applied.append(ChangeRule(absolute, rule.significant))
            notes.append(
                f"baseline {drop.statistic} is {base:.4g} (<= 0): {rule} compared by absolute change "
                f"(allowed drop {absolute.drop:.4g}), as a relative change of it has no meaning"
            )
        else:
            applied.append(rule)
    return applied, notes


def _check_pair(
    record: RunRecord, before: RunRecord, rules: Sequence[ChangeRule], pairing: InputPairing
) -> tuple[tuple[str, ...], str | None, dict[str, tuple[float, float]]]:
    """``(failure reasons, why by points or None, delta intervals)`` of one comparable pair."""
    rules, _ = absolute_rules(before, rules)
    why = points_reason(record, before)
    if why is not None:  # pure Python: the saved statistics
        reasons = []
        for rule in rules:
            reason = rule.drop.fails(before.statistic(rule.drop.statistic), record.statistic(rule.drop.statistic))
            if reason and rule.significant:
                reason += f" (compared by point values: {why})"
            if reason:
                reasons.append(reason)
        return tuple(reasons), why, {}
    # numpy: imported only for pairs with intervals
    from pytest_clever.stats.intervals import paired_change_interval

    now_scores, now_intervals = record.paired_scores()
    before_scores, before_intervals = before.paired_scores()
    now_scores, before_scores = pairing.align(now_scores, before_scores)
    now_intervals, before_intervals = pairing.align(now_intervals, before_intervals)
    level = _confidence(record)
    verdicts = [
        compare_paired(rule, now_scores, now_intervals, before_scores, before_intervals, level) for rule in rules
    ]
    intervals = {}
    for stat in TABLE_STATISTICS:
        _, lo, hi = paired_change_interval(
            now_scores, now_intervals, before_scores, before_intervals, stat, level, relative=False
        )
        intervals[stat] = (lo, hi)
    return tuple(v.failure for v in verdicts if v.failure), None, intervals


def compare_records(
    current: Sequence[RunRecord],
    baseline: Sequence[RunRecord],
    rules: Sequence[ChangeRule | DropRule],
    *,
    failed_tests: Collection[str] = (),
    unreadable: Mapping[RecordKey, str] | None = None,
) -> list[Comparison]:
    """Compare each current record with the baseline record of the same key, in the current order;
    then one "not run" comparison per baseline record this run did not record, in baseline order;
    "failed" instead when its test is in ``failed_tests`` (node ids): it ran and failed, which
    must not read as deselected. ``unreadable`` maps the keys of baseline records skipped as malformed
    to why (``SavedRun.unreadable``): a current record with such a key is "not comparable", never a
    missing baseline, so a corrupt record cannot quietly turn its test's gate off.

    ``rules`` are :class:`~pytest_clever.runs.rules.ChangeRule` objects (a plain
    :class:`~pytest_clever.runs.rules.DropRule` is a rule without significance). Raises
    :class:`~pytest_clever.runs.record.RecordError` when a key occurs twice in either list.
    """
    change_rules = [ChangeRule.of(rule) for rule in rules]
    now_keys = index_records(current, "this run")
    by_key = index_records(baseline, "the baseline")
    out = []
    for record in current:
        before = by_key.get(record.key)
        if before is None and unreadable and record.key in unreadable:
            reason = f"baseline record unreadable: {unreadable[record.key]}"
            out.append(Comparison(record.label, "not comparable", record, None, (reason,)))
            continue
        if before is None:
            out.append(Comparison(record.label, "missing baseline", record, None))
            continue
        differences = record.settings_differences(before)
        if differences:
            out.append(Comparison(record.label, "not comparable", record, before, tuple(differences)))
            continue
        if not record.results or not before.results:  # nothing to pair: the saved statistics
            side = "the baseline has" if not before.results else "this run has"
            reasons, why, _ = _check_pair(record, before, change_rules, InputPairing(()))
            notes = (
                f"{side} no per-input results: compared by the saved statistics, without matching inputs",
                *absolute_rules(before, change_rules)[1],
            )
            status = "regressed" if reasons else "ok"
            out.append(Comparison(record.label, status, record, before, reasons, why, notes=notes))
            continue
        pairing = pair_inputs(_fingerprints(record), _fingerprints(before))
        differ = _identity_reasons(record, before, pairing)
        if differ:
            out.append(Comparison(record.label, "not comparable", record, before, tuple(differ), pairing=pairing))
            continue
        shared = None
        now_side, before_side, aligned = record, before, pairing
        if pairing.by_position is None and not pairing.complete:  # enough shared inputs: compare on them
            now_side = _restricted(record, [i for i, _ in pairing.pairs])
            before_side = _restricted(before, [j for _, j in pairing.pairs])
            shared, aligned = (now_side, before_side), InputPairing(tuple((k, k) for k in range(len(pairing.pairs))))
        reasons, why, intervals = _check_pair(now_side, before_side, change_rules, aligned)
        notes = tuple(absolute_rules(before_side, change_rules)[1])
        if shared is not None:
            notes = (_shared_note(pairing), *notes)
        status = "regressed" if reasons else "ok"
        out.append(Comparison(record.label, status, record, before, reasons, why, intervals, pairing, notes, shared))
    failed_note = ("the test failed before recording this call",)
    out.extend(
        Comparison(record.label, "failed", None, record, failed_note)
        if record.nodeid in failed_tests
        else Comparison(record.label, "not run", None, record)
        for record in baseline
        if record.key not in now_keys
    )
    return out


def delta_cell(comparison: Comparison, statistic: str) -> str:
    """A statistic's delta, with its interval when the pair was compared with intervals."""
    value = comparison.delta(statistic)
    if value is None:
        return "-"
    interval = comparison.intervals.get(statistic)
    return f"{value:+.4g}" + ("" if interval is None else f" [{interval[0]:+.4g}, {interval[1]:+.4g}]")


def compared_text(c: Comparison) -> str:
    """How a pair was compared: paired with intervals, by points (and why), on shared inputs; "-" when not."""
    now = c.compared[0]
    if c.status not in ("ok", "regressed") or now is None:
        return "-"  # nothing was compared
    paired = "paired"
    if c.pairing is not None and c.pairing.by_position is not None:
        paired = f"paired by position ({c.pairing.by_position})"
    text = (
        f"by points ({c.by_points})"
        if c.by_points
        else f"{paired}, {_confidence(now):.0%} intervals of {PAIRED_INTERVAL_KIND}"
    )
    return f"on {now.n} shared inputs, {text}" if c.shared is not None else text


def comparison_table(comparisons: list[Comparison], regression_reasons: bool = True) -> list[str]:
    """Rows: test, before and now mean/min with deltas (and each delta's interval when paired),
    status, and how the pair was compared; then the reasons behind statuses.

    ``regression_reasons=False`` leaves out why regressions failed, for callers that list them anyway.
    """
    header = ("test", "mean before", "mean now", "delta", "min before", "min now", "delta", "compared", "status")
    rows = [header]

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    for c in comparisons:
        now, before = c.compared
        rows.append(
            (
                c.label,
                cell(before.mean if before else None),
                cell(now.mean if now else None),
                delta_cell(c, "mean"),
                cell(before.min if before else None),
                cell(now.min if now else None),
                delta_cell(c, "min"),
                compared_text(c),
                c.status.upper(),
            )
        )
    lines = format_table(rows)
    for c in comparisons:
        if c.status == "regressed" and not regression_reasons:
            continue
        for reason in c.reasons:
            lines.append(f"  {c.label}: {reason}")
    lines.extend(f"  {c.label}: note: {note}" for c in comparisons for note in c.notes)
    return lines
