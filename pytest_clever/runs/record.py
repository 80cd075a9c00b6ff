"""The run record: one call of the ``clever`` fixture, typed, keyed and serialised in one place.

A :class:`RunRecord` is what the end-of-run summary, ``--clever-json``,
saved baselines, ``--clever-compare`` and the ``pytest-clever`` CLI share.
It owns:

- its **key** ``(nodeid, name, call)``: ``call`` counts the fixture's calls
  with the same ``name`` in one test, from 0, so a test that scores one
  model in a loop gets one record per call, and adding a call with another
  name does not shift the keys (or seeds) of the others;
- its **label** for tables and messages;
- the **comparable settings** and the settings comparison;
- the JSON round trip, which validates every field when reading, so a
  malformed record raises :class:`RecordError` naming the field.

The per-input results stay the engine's own JSON (``CleverResult.to_dict``):
records travel through the pytest controller and the CLI, which must not
import numpy or torch. :meth:`RunRecord.report` parses them into a
:class:`~pytest_clever.stats.results.CleverReport` on demand, for the failure
message, which needs the engine's rules (worst inputs, weak and consistent fits).

Pure Python at import time: no torch, no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from pytest_clever.errors import CleverError
from pytest_clever.core.norms import norm_label, norm_to_json, parse_norm

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.runs.gates import GateVerdict
    from pytest_clever.stats.results import CleverReport

#: Layout version of a record as written by this version (2 added ``call``; 3 replaced the
#: setting ``target`` (one class or None) by ``targets``, the canonical target specification).
SCHEMA = 3
#: Settings that must agree for two records to be compared.
COMPARABLE_SETTINGS = ("norm", "radius", "order", "n_batches", "batch_size", "bounds", "targets")
#: The threshold gate mode of records saved before gate modes existed (``gates.GATE_MODES``).
POINT_GATE = "point"
#: What a record's ``status`` can be.
STATUSES = ("recorded", "passed", "failed")

RecordKey = tuple[str, "str | None", int]


class RecordError(CleverError):
    """A run record is malformed (the message names the field) or its key occurs twice."""


# -- reading helpers: each checks one JSON type and names the field when it is wrong --------


def _get(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise RecordError(f"{where}: missing field {key!r}")
    return data[key]


def _number(value: Any, field: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{where}: field {field!r} must be a number, got {value!r}")
    return float(value)


def _int(value: Any, field: str, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RecordError(f"{where}: field {field!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _str(value: Any, field: str, where: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise RecordError(f"{where}: field {field!r} must be a non-empty string, got {value!r}")
    return value


def _object(value: Any, field: str, where: str, optional: bool = False) -> dict[str, Any] | None:
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise RecordError(f"{where}: field {field!r} must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, field: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise RecordError(f"{where}: field {field!r} must be a list, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class RecordSettings:
    """The settings one call was scored with. ``seed`` is the derived seed the API was given."""

    norm: float
    radius: float
    order: int
    n_batches: int
    batch_size: int
    seed: int
    bounds: tuple[float, float] | None = None
    #: The classes each score is the minimum over: "all", "top-2", "least-likely", "3,5" (targets.py).
    targets: str = "all"
    device: str | None = None
    #: torch intra-op threads of the process that scored it (not a comparable setting).
    threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "norm": norm_to_json(self.norm),
            "radius": self.radius,
            "order": self.order,
            "n_batches": self.n_batches,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "bounds": list(self.bounds) if self.bounds is not None else None,
            "targets": self.targets,
            "device": self.device,
            "threads": self.threads,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "RecordSettings":
        data = _object(data, "settings", where)
        where = f"{where}, settings"
        raw_norm = _get(data, "norm", where)
        try:
            norm = parse_norm(raw_norm)
        except CleverError:
            raise RecordError(f"{where}: field 'norm' must be 1, 2 or 'inf', got {raw_norm!r}") from None
        bounds = data.get("bounds")
        if bounds is not None:
            pair = _list(bounds, "bounds", where)
            if len(pair) != 2:
                raise RecordError(f"{where}: field 'bounds' must be two numbers, got {bounds!r}")
            bounds = (_number(pair[0], "bounds", where), _number(pair[1], "bounds", where))
        if "targets" in data:
            targets = _str(data["targets"], "targets", where)
        else:  # schemas 1 and 2: one class, or None for all
            target = data.get("target")
            targets = "all" if target is None else str(_int(target, "target", where))
        device = data.get("device")
        threads = data.get("threads")
        return cls(
            norm=norm,
            radius=_number(_get(data, "radius", where), "radius", where),
            order=_int(_get(data, "order", where), "order", where, 1),
            n_batches=_int(_get(data, "n_batches", where), "n_batches", where, 1),
            batch_size=_int(_get(data, "batch_size", where), "batch_size", where, 1),
            seed=_int(data.get("seed", 0), "seed", where),
            bounds=bounds,
            targets=targets,
            device=_str(device, "device", where, optional=True),
            threads=None if threads is None else _int(threads, "threads", where, 1),
        )

    def differences(self, before: "RecordSettings") -> list[str]:
        """``"radius 2.0 -> 1.0"`` for each comparable setting that differs from ``before``."""
        now, then = self.to_dict(), before.to_dict()
        return [f"{k} {then[k]!r} -> {now[k]!r}" for k in COMPARABLE_SETTINGS if now[k] != then[k]]


@dataclass(frozen=True)
class Threshold:
    """The gate a call was held to: ``statistic`` of its scores must be >= ``min_score``,
    with the evidence ``gate`` asks for (``gates.GATE_MODES``; "point" compares the statistic itself)."""

    statistic: str
    min_score: float
    gate: str = POINT_GATE

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"statistic": self.statistic, "min_score": self.min_score}
        if self.gate != POINT_GATE:  # absent means the point gate, as in records saved before gate modes
            data["gate"] = self.gate
        return data

    def __str__(self) -> str:
        text = f"{self.statistic}>={self.min_score:g}"
        return text if self.gate == POINT_GATE else f"{text} ({self.gate})"


@dataclass(frozen=True)
class RunRecord:
    """One scored call in one test: summary statistics, the gate, settings and every result.

    ``value`` is the thresholded statistic (``mean`` when there is no
    threshold); ``results`` holds each input's ``CleverResult.to_dict()``;
    ``attack`` the attack cross-check (``checked``, ``found``,
    ``contradicted`` input indices, ``checks``) or None. ``interval`` is the
    confidence interval of ``value`` at level ``confidence`` (both None in
    records saved before intervals existed, or when a score has none).
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

    def verdict(self) -> "GateVerdict | None":
        """The threshold gate's verdict on ``value`` and its ``interval`` (None without a threshold)."""
        from pytest_clever.runs.gates import threshold_gate  # pure Python; gates imports this module

        if self.threshold is None:
            return None
        return threshold_gate(self.value, self.interval, self.threshold.min_score, self.threshold.gate)

    def paired_scores(self) -> tuple[list[float], list["tuple[float, float] | None"]]:
        """Each input's score and its interval (None when the result has none), in input order."""
        scores = [float(r["score"]) for r in self.results]
        intervals = [None if r.get("interval") is None else (float(r["interval"][0]), float(r["interval"][1])) for r in self.results]
        return scores, intervals

    def settings_differences(self, before: "RunRecord") -> list[str]:
        """The comparable settings that differ from ``before``'s; empty when comparable."""
        return self.settings.differences(before.settings)

    def report(self) -> "CleverReport":
        """The results as a :class:`CleverReport` (imports numpy: only where results are needed)."""
        from pytest_clever.stats.results import CleverReport

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
        targets: str = "all",
        checks: Sequence[Any] | None = None,
    ) -> "RunRecord":
        """The record of a :class:`CleverReport` scored by the fixture.

        ``gate`` is the threshold gate mode (``gates.GATE_MODES``): the status
        is :func:`~pytest_clever.runs.gates.threshold_gate`'s verdict on ``statistic``
        and its interval (computed when every score has one). ``checks`` are the :class:`~pytest_clever.attack.AttackCheck` objects of
        an attack cross-check, one per input; any contradiction fails the record.
        """
        from pytest_clever.runs.gates import threshold_gate

        value = report.statistic(statistic)
        interval = report.interval(statistic) if report.intervals_known else None
        threshold = None if min_score is None else Threshold(statistic, min_score, gate)
        status = "recorded"
        if threshold is not None:
            status = "passed" if threshold_gate(value, interval, min_score, gate).passed else "failed"
        attack = None
        if checks is not None:
            contradicted = [i for i, c in enumerate(checks) if c.contradicts]
            attack = {
                "checked": len(checks),
                "found": sum(1 for c in checks if c.found),
                "contradicted": contradicted,
                "checks": [c.to_dict() for c in checks],
            }
            if contradicted:
                status = "failed"
            elif status == "recorded":
                status = "passed"  # the attack check is a gate of its own, and it held
        first = report.results[0]
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
            status=status,
            elapsed=report.elapsed,
            settings=RecordSettings(
                norm=first.norm,
                radius=first.radius,
                order=first.order,
                n_batches=first.n_batches,
                batch_size=first.batch_size,
                seed=report.seed,
                bounds=tuple(first.bounds) if first.bounds else None,
                targets=targets,
                device=first.device,
            ),
            results=tuple(r.to_dict() for r in report.results),
            attack=attack,
            interval=None if interval is None else (float(interval[0]), float(interval[1])),
            confidence=first.confidence,
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
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "record") -> "RunRecord":
        """Read :meth:`to_dict` output (schemas 2 and 3), checking each field's type.

        Raises :class:`RecordError` naming ``where`` and the field when the record is malformed.
        """
        data = _object(data, "record", where)
        nodeid = _str(_get(data, "nodeid", where), "nodeid", where)
        where = f"{where} ({nodeid})"
        stats = {s: _number(_get(data, s, where), s, where) for s in ("min", "mean", "median", "max")}
        threshold = _object(data.get("threshold"), "threshold", where, optional=True)
        if threshold is not None:
            gate = threshold.get("gate", POINT_GATE)  # records saved before gate modes: the point gate
            threshold = Threshold(
                _str(_get(threshold, "statistic", where), "threshold.statistic", where),
                _number(_get(threshold, "min_score", where), "threshold.min_score", where),
                _str(gate, "threshold.gate", where),
            )
        status = _get(data, "status", where)
        if status not in STATUSES:
            raise RecordError(f"{where}: field 'status' must be one of {', '.join(STATUSES)}, got {status!r}")
        results = _list(data.get("results", []), "results", where)
        for i, result in enumerate(results):
            _object(result, f"results[{i}]", where)
        attack = _object(data.get("attack"), "attack", where, optional=True)
        if attack is not None:
            for i in _list(_get(attack, "contradicted", where), "attack.contradicted", where):
                _int(i, "attack.contradicted", where)
            _list(_get(attack, "checks", where), "attack.checks", where)
        value = data.get("value", stats["mean"])
        elapsed = data.get("elapsed", 0.0)
        interval = data.get("interval")  # absent before intervals existed
        if interval is not None:
            pair = _list(interval, "interval", where)
            if len(pair) != 2:
                raise RecordError(f"{where}: field 'interval' must be two numbers, got {interval!r}")
            interval = (_number(pair[0], "interval", where), _number(pair[1], "interval", where))
        confidence = data.get("confidence")
        return cls(
            nodeid=nodeid,
            name=_str(data.get("name"), "name", where, optional=True),
            call=_int(_get(data, "call", where), "call", where),
            n=_int(_get(data, "n", where), "n", where),
            **stats,
            value=_number(value, "value", where),
            threshold=threshold,
            status=status,
            elapsed=_number(elapsed, "elapsed", where),
            settings=RecordSettings.from_dict(_get(data, "settings", where), where),
            results=tuple(results),
            attack=attack,
            interval=interval,
            confidence=None if confidence is None else _number(confidence, "confidence", where),
        )


def upgrade_schema_1(records: list[Any]) -> list[Any]:
    """Schema-1 records had no ``call``: number them per (test, name) in file order.

    Schema 1 wrote each test's records in the order of its calls, so this
    gives the keys the same calls get today.
    """
    seen: dict[tuple[Any, Any], int] = {}
    out = []
    for record in records:
        if isinstance(record, dict) and "call" not in record:
            pair = (record.get("nodeid"), record.get("name"))
            record = {**record, "call": seen.get(pair, 0)}
            seen[pair] = record["call"] + 1
        out.append(record)
    return out


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

