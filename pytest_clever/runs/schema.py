"""The layout version of saved records and the steps that bring older layouts up to it.

Run files (``Storage``) and ``--clever-json`` documents carry :data:`SCHEMA`,
the layout of the records they hold. Reading a file applies the upgrade of
each version to the next, in order, so :class:`~pytest_clever.runs.record.RunRecord`
reads the current layout only:

- 1 -> 2: records gain ``call``, their index among the calls with the same
  test and name (layout 1 wrote each test's calls in call order);
- 2 -> 3: the setting ``target`` (one class, or None for all) becomes
  ``targets``, the canonical target specification ("all", "3");
- 3 -> 4: nothing to change: results gain ``fingerprint`` and ``capped``,
  records ``interval_kind`` and run files ``partial``, all optional. The
  version changes so that a reader of layout 3 refuses these files by name
  rather than reading a partial run as a whole baseline, or inputs it cannot
  match as the same inputs.
- 4 -> 5: nothing to change: settings gain ``precision``, ``max_batches`` and
  ``budget``, records ``settled``, results ``stop_reason`` and ``points``, all
  optional (absent: a fixed count). The version changes so that a reader of
  layout 4 refuses records whose inputs were sampled in rounds rather than
  compare them with fixed-count ones as if alike.

Layout 1 needs a file's whole list of records to number the calls, so that
step runs on a file's list before its records are read (:func:`upgrade_run`).
Every step from :data:`RECORD_SCHEMA` on upgrades one record, and every record
goes through all of them when it is read (:func:`upgrade_record`), whatever
layout its file states or with none (records from xdist workers, or built by
hand): each changes only what its input lacks, so a record already in a later
layout passes unchanged. A step raises ValueError naming the field when an old
field holds what no version wrote.

The per-input results inside a record are the statistics layer's own JSON
(``CleverResult.to_dict``), read by :mod:`pytest_clever.stats.result_json`.

Pure Python: no imports from the package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Layout version of the records this version writes.
SCHEMA = 5
#: The oldest layout still read.
OLDEST_SCHEMA = 1
#: Layouts this version reads (upgraded on reading).
READABLE_SCHEMAS = tuple(range(OLDEST_SCHEMA, SCHEMA + 1))
#: The oldest layout whose records can be upgraded one at a time (layout 1 needs the whole list).
RECORD_SCHEMA = 2


def _number_calls(records: list[Any]) -> list[Any]:
    """1 -> 2: number each record per (test, name) in file order, which was call order."""
    seen: dict[tuple[Any, Any], int] = {}
    out = []
    for record in records:
        if isinstance(record, dict) and "call" not in record:
            pair = (record.get("nodeid"), record.get("name"))
            record = {**record, "call": seen.get(pair, 0)}
            seen[pair] = record["call"] + 1
        out.append(record)
    return out


def _targets_setting(record: Any) -> Any:
    """2 -> 3: the setting ``target`` (a class or None) becomes the specification ``targets``."""
    settings = record.get("settings") if isinstance(record, dict) else None
    if not isinstance(settings, dict) or "targets" in settings:
        return record
    target = settings.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 0):
        raise ValueError(f"settings: field 'target' must be an integer >= 0, got {target!r}")
    targets = "all" if target is None else str(target)
    rest = {k: v for k, v in settings.items() if k != "target"}
    return {**record, "settings": {**rest, "targets": targets}}


def _optional_fields(record: Any) -> Any:
    """3 -> 4 and 4 -> 5: the fields these layouts add are optional, so an older record already is a newer one."""
    return record


#: Steps that need a file's whole list of records, by the version they upgrade from.
_RUN_STEPS: dict[int, Callable[[list[Any]], list[Any]]] = {1: _number_calls}
#: Steps that upgrade one record, by the version they upgrade from, in order.
_RECORD_STEPS: dict[int, Callable[[Any], Any]] = {2: _targets_setting, 3: _optional_fields, 4: _optional_fields}
# One step per version, those on whole lists first.
assert [*_RUN_STEPS, *_RECORD_STEPS] == list(range(OLDEST_SCHEMA, SCHEMA))
assert all(version < RECORD_SCHEMA for version in _RUN_STEPS)


def check_schema(schema: object) -> int:
    """``schema`` as an int when this version reads it, else a ValueError naming the readable ones."""
    if schema not in READABLE_SCHEMAS:
        raise ValueError(
            f"schema {schema!r} is not supported (this version reads {', '.join(map(str, READABLE_SCHEMAS))})"
        )
    return READABLE_SCHEMAS[READABLE_SCHEMAS.index(schema)]


def upgrade_run(records: list[Any], schema: int) -> list[Any]:
    """The records of a layout-``schema`` file in layout :data:`RECORD_SCHEMA` or later, for
    :func:`upgrade_record` to finish one by one. Malformed entries pass through, for the reader to name."""
    for version in range(check_schema(schema), RECORD_SCHEMA):
        records = _RUN_STEPS[version](records)
    return records


def upgrade_record(record: Any) -> Any:
    """One record of layout :data:`RECORD_SCHEMA` or later in the current layout: every record step, in order."""
    for version in range(RECORD_SCHEMA, SCHEMA):
        record = _RECORD_STEPS[version](record)
    return record
