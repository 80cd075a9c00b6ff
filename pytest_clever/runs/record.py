"""The run record: one call of the ``clever`` fixture, typed, keyed and serialised in one place.

A :class:`RunRecord` is what the end-of-run summary, ``--clever-json``,
saved baselines, ``--clever-compare`` and the ``pytest-clever`` CLI share.
It owns:

- its **key** ``(nodeid, name, call)``: ``call`` counts the fixture's calls
  with the same ``name`` in one test, from 0, so a test that scores one
  model in a loop gets one record per call, and adding a call with another
  name does not shift the keys (or seeds) of the others;
- its **label** for tables and messages;
- the **comparable settings** and the settings comparison (:mod:`pytest_clever.runs.record_settings`);
- the JSON round trip, which validates every field when reading, so a
  malformed record raises :class:`RecordError` naming the field.

Older layouts are brought up to date by :mod:`pytest_clever.runs.schema`
before they are read, and the status of a new record is the policy of
:mod:`pytest_clever.runs.status`.

The per-input results stay the engine's own JSON (``CleverResult.to_dict``):
records travel through the pytest controller and the CLI, which must not
import numpy or torch. :meth:`RunRecord.report` parses them into a
:class:`~pytest_clever.stats.results.CleverReport` on demand, for the failure
message, which needs the engine's rules (worst inputs, weak and consistent fits).

Pure Python at import time: no torch, no numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_clever.core.validation import ESTIMATOR_NOISE, INTERVAL_KINDS, Stopping
from pytest_clever.runs import fields as read
from pytest_clever.runs.fields import RecordError
from pytest_clever.runs.gates import POINT_GATE, GateVerdict, threshold_gate
from pytest_clever.runs.record_settings import COMPARABLE_SETTINGS, RecordSettings, Threshold
from pytest_clever.runs.schema import upgrade_record
from pytest_clever.runs.status import STATUSES, decide_status

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.stats.report import CleverReport

RecordKey = tuple[str, "str | None", int]


@dataclass(frozen=True)
class RunRecord:
    """One scored call in one test: summary statistics, the gate, settings and every result.

    ``value`` is the thresholded statistic (``mean`` when there is no
    threshold); ``results`` holds each input's ``CleverResult.to_dict()``;
    ``attack`` the attack cross-check (``checked``, ``found``,
    ``contradicted`` input indices, ``checks``) or None. ``interval`` is the
    confidence interval of ``value`` at level ``confidence`` (both None when
    a score has none).
    """

    nodeid: str
    name: str | None
    call: int
    n: int
    min: float
    mean: float
    median: float
    max: float
    value: float
    threshold: Threshold | None
    status: str
    elapsed: float
    settings: RecordSettings
    results: tuple[dict[str, Any], ...] = ()
    attack: dict[str, Any] | None = None
    interval: tuple[float, float] | None = None
    confidence: float | None = None
    #: The kind of ``interval`` (``core.validation.INTERVAL_KINDS``); None when unknown (a record written
    #: before the kinds were named, whose interval was of input sampling for mean, median and quantiles).
    interval_kind: str | None = None
    #: With a threshold and rounds (``precision``/``budget``): whether the rounds settled the gate's decision
    #: (the statistic's interval wholly above or below the bar); None when there was none to settle.
    settled: bool | None = None
    #: Where the test made the call, for its failure message: "call 2 in the test (name='b'), test_x.py:14".
    #: Known only in the process that scored it: not part of the JSON, nor of equality.
    location: str | None = field(default=None, compare=False)

    # -- identity -------------------------------------------------------------------------

    @property
    def key(self) -> RecordKey:
        """How records match across runs: test id, model name, call index."""
        return self.nodeid, self.name, self.call

    @property
    def sort_key(self) -> tuple[str, str, int]:
        """Summary rows and saved records are in this order, whatever order tests ran in."""
        return self.nodeid, self.name or "", self.call

    @property
    def label(self) -> str:
        """``nodeid``, then ``[name]`` when the test named its model, then ``#call`` from the second call on."""
        text = self.nodeid + (f" [{self.name}]" if self.name else "")
        return text + (f" #{self.call}" if self.call else "")

    # -- what it says ---------------------------------------------------------------------

    def statistic(self, name: str) -> float:
        """One of the saved statistics: "min", "mean", "median" or "max"."""
        if name not in ("min", "mean", "median", "max"):
            raise ValueError(f"records keep min, mean, median and max, not {name!r}")
        return getattr(self, name)

    @property
    def contradicted(self) -> list[int]:
        """Inputs whose score an attack cross-check contradicted."""
        return list(self.attack["contradicted"]) if self.attack else []

    def verdict(self) -> GateVerdict | None:
        """The threshold gate's verdict on ``value`` and its ``interval`` (None without a threshold)."""
        if self.threshold is None:
            return None
        return threshold_gate(
            self.value, self.interval, self.threshold.min_score, self.threshold.gate, self.interval_kind
        )

    def paired_scores(self) -> tuple[list[float], list[tuple[float, float] | None]]:
        """Each input's score and its interval (None when the result has none), in input order."""
        scores = [float(r["score"]) for r in self.results]
        intervals: list[tuple[float, float] | None] = [
            None if r.get("interval") is None else (float(r["interval"][0]), float(r["interval"][1]))
            for r in self.results
        ]
        return scores, intervals

    @property
    def fingerprints(self) -> tuple[str, ...] | None:
        """Each input's fingerprint (``CleverResult.fingerprint``), in input order; None when a result lacks
        one or the results do not cover every input (layouts without fingerprints)."""
        known = tuple(f for r in self.results if isinstance(f := r.get("fingerprint"), str))
        if not self.results or len(self.results) != self.n or len(known) != len(self.results):
            return None
        return known

    def settings_differences(self, before: RunRecord) -> list[str]:
        """The comparable settings that differ from ``before``'s; empty when comparable."""
        return self.settings.differences(before.settings)

    def report(self) -> CleverReport:
        """The results as a :class:`CleverReport` (imports numpy: only where results are needed)."""
        from pytest_clever.stats.report import CleverReport

        return CleverReport.from_dict({"results": list(self.results), "seed": self.settings.seed})

    # -- building -------------------------------------------------------------------------

    @classmethod
    def from_report(
        cls,
        nodeid: str,
        name: str | None,
        call: int,
        report: Any,
        *,
        statistic: str,
        min_score: float | None,
        gate: str = POINT_GATE,
        interval_kind: str = ESTIMATOR_NOISE,
        targets: str = "all",
        checks: Sequence[Any] | None = None,
        stopping: Stopping | None = None,
    ) -> RunRecord:
        """The record of a :class:`CleverReport` scored by the fixture.

        ``gate`` is the threshold gate mode (``core.validation.GATE_MODES``), applied to ``statistic``
        and its interval (computed when every score has one). ``checks`` are the
        :class:`~pytest_clever.attack.AttackCheck` objects of an attack cross-check, one per input.
        The status is :func:`~pytest_clever.runs.status.decide_status` of both gates.
        ``interval_kind`` is the kind of the statistic's interval (``core.validation.INTERVAL_KINDS``).
        ``stopping`` is the call's stopping rule (None: the results' own fixed ``n_batches``).
        """
        value = report.statistic(statistic)
        interval = report.interval(statistic, over=interval_kind) if report.intervals_known else None
        threshold = None if min_score is None else Threshold(statistic, min_score, gate)
        verdict = None if min_score is None else threshold_gate(value, interval, min_score, gate, interval_kind)
        attack = None
        contradicted = None
        if checks is not None:
            contradicted = [i for i, c in enumerate(checks) if c.contradicts]
            attack = {
                "checked": len(checks),
                "found": sum(1 for c in checks if c.found),
                "contradicted": contradicted,
                "checks": [c.to_dict() for c in checks],
            }
        first = report.results[0]
        rounds = stopping is not None and stopping.adaptive
        return cls(
            nodeid=nodeid,
            name=name,
            call=call,
            n=len(report),
            min=report.min,
            mean=report.mean,
            median=report.median,
            max=report.max,
            value=value,
            threshold=threshold,
            status=decide_status(verdict, contradicted),
            elapsed=report.elapsed,
            settings=RecordSettings(
                norm=first.norm,
                radius=first.radius,
                order=first.order,
                n_batches=stopping.first if stopping is not None else first.n_batches,
                batch_size=first.batch_size,
                seed=report.seed,
                bounds=tuple(first.bounds) if first.bounds else None,
                targets=targets,
                device=first.device,
                chunk_size=first.chunk_size,
                precision=stopping.precision if stopping is not None else None,
                max_batches=stopping.cap if stopping is not None and rounds else None,
                budget=stopping.budget if stopping is not None else None,
                torch_compile=first.torch_compile,
                screen="on" if any(r.screened_after is not None for r in report.results) else "off",
            ),
            results=tuple(r.to_dict() for r in report.results),
            attack=attack,
            interval=None if interval is None else (float(interval[0]), float(interval[1])),
            confidence=first.confidence,
            interval_kind=None if interval is None else interval_kind,
            settled=None if min_score is None else getattr(report, "settled", None),
        )

    # -- JSON -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON layout (``json.dumps`` works on it as is)."""
        return {
            "nodeid": self.nodeid,
            "name": self.name,
            "call": self.call,
            "n": self.n,
            "min": self.min,
            "mean": self.mean,
            "median": self.median,
            "max": self.max,
            "value": self.value,
            "threshold": self.threshold.to_dict() if self.threshold else None,
            "status": self.status,
            "elapsed": self.elapsed,
            "settings": self.settings.to_dict(),
            "results": list(self.results),
            "attack": self.attack,
            "interval": list(self.interval) if self.interval is not None else None,
            "confidence": self.confidence,
            **({"interval_kind": self.interval_kind} if self.interval_kind is not None else {}),
            **({"settled": self.settled} if self.settled is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "record") -> RunRecord:
        """Read :meth:`to_dict` output, checking each field's type. Any layout from
        :data:`~pytest_clever.runs.schema.RECORD_SCHEMA` on is upgraded first (:mod:`~pytest_clever.runs.schema`).

        ``value`` (default: the mean), ``elapsed`` (0), ``results``, ``attack``,
        ``threshold``, ``interval`` and ``confidence`` may be absent.
        Raises :class:`RecordError` naming ``where`` and the field when the record is malformed.
        """
        data = read.obj(data, "record", where)
        nodeid = read.text(read.get(data, "nodeid", where), "nodeid", where)
        where = f"{where} ({nodeid})"
        try:
            data = upgrade_record(data)
        except ValueError as exc:
            raise RecordError(f"{where}, {exc}") from None
        stats = {s: read.number(read.get(data, s, where), s, where) for s in ("min", "mean", "median", "max")}
        raw_threshold = read.optional_obj(data.get("threshold"), "threshold", where)
        threshold = None if raw_threshold is None else Threshold.from_dict(raw_threshold, where)
        status = read.get(data, "status", where)
        if status not in STATUSES:
            raise RecordError(f"{where}: field 'status' must be one of {', '.join(STATUSES)}, got {status!r}")
        results = read.array(data.get("results", []), "results", where)
        n = read.integer(read.get(data, "n", where), "n", where)
        for i, result in enumerate(results):
            read.obj(result, f"results[{i}]", where)
            read.optional_text(result.get("fingerprint"), f"results[{i}].fingerprint", where)
        check_results(results, n, where)
        attack = read.optional_obj(data.get("attack"), "attack", where)
        if attack is not None:
            for i in read.array(read.get(attack, "contradicted", where), "attack.contradicted", where):
                read.integer(i, "attack.contradicted", where)
            read.array(read.get(attack, "checks", where), "attack.checks", where)
        interval = read.optional_pair(data.get("interval"), "interval", where)
        confidence = data.get("confidence")
        return cls(
            nodeid=nodeid,
            name=read.optional_text(data.get("name"), "name", where),
            call=read.integer(read.get(data, "call", where), "call", where),
            n=n,
            min=stats["min"],
            mean=stats["mean"],
            median=stats["median"],
            max=stats["max"],
            value=read.number(data.get("value", stats["mean"]), "value", where),
            threshold=threshold,
            status=status,
            elapsed=read.number(data.get("elapsed", 0.0), "elapsed", where),
            settings=RecordSettings.from_dict(read.get(data, "settings", where), where),
            results=tuple(results),
            attack=attack,
            interval=interval,
            confidence=None if confidence is None else read.number(confidence, "confidence", where),
            interval_kind=_interval_kind(data.get("interval_kind"), where),
            settled=_settled(data.get("settled"), where),
        )


def _settled(value: Any, where: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise RecordError(f"{where}: field 'settled' must be true, false or absent, got {value!r}")
    return value


def _interval_kind(value: Any, where: str) -> str | None:
    """A record's ``interval_kind``: absent (None) or one of ``core.validation.INTERVAL_KINDS``."""
    if value is None:
        return None
    if value not in INTERVAL_KINDS:
        raise RecordError(f"{where}: field 'interval_kind' must be one of {', '.join(INTERVAL_KINDS)}, got {value!r}")
    return str(value)


def check_results(results: Sequence[Any], n: int, where: str) -> None:
    """Raise :class:`RecordError` unless ``results`` are what comparisons read: one object per input
    (or none at all), each with a number ``score`` and, when it has them, an ``interval`` of two numbers
    and ``target_classes``, a list of integers.

    A record that says ``n`` inputs but holds fewer results (a truncated file) is an error here, so a
    comparison never pairs the inputs it lacks.
    """
    for i, result in enumerate(results):
        field = f"results[{i}]"
        read.obj(result, field, where)
        read.number(read.get(result, "score", f"{where}, {field}"), f"{field}.score", where)
        read.optional_pair(result.get("interval"), f"{field}.interval", where)
        if result.get("confidence") is not None:
            read.number(result["confidence"], f"{field}.confidence", where)
        if result.get("target_classes") is not None:  # random-k comparisons read them as a list of classes
            for cls in read.array(result["target_classes"], f"{field}.target_classes", where):
                read.integer(cls, f"{field}.target_classes", where)
    if results and len(results) != n:
        raise RecordError(
            f"{where}: field 'results' holds {len(results)} result(s) but field 'n' says {n} inputs "
            "(a truncated or edited record)"
        )


def index_records(records: Iterable[RunRecord], where: str) -> dict[RecordKey, RunRecord]:
    """Records by key; a key that occurs twice is a :class:`RecordError`, never a silent overwrite."""
    index: dict[RecordKey, RunRecord] = {}
    for record in records:
        if record.key in index:
            raise RecordError(
                f"{where}: {record.label} is recorded twice (test {record.nodeid!r}, name {record.name!r}, "
                f"call {record.call}); records must have distinct keys"
            )
        index[record.key] = record
    return index


def sorted_records(records: Iterable[RunRecord]) -> list[RunRecord]:
    """Records by test id, name and call index: the same order serially and under xdist."""
    return sorted(records, key=lambda r: r.sort_key)


__all__ = [
    "COMPARABLE_SETTINGS",
    "RecordError",
    "RecordKey",
    "RecordSettings",
    "RunRecord",
    "Threshold",
    "check_results",
    "index_records",
    "sorted_records",
]
