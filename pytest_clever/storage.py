"""Saved runs (baselines) on disk: one JSON file per run, written atomically.

A run file holds the recorded results of one pytest session plus metadata
(schema version, time, git commit and dirty flag, machine and versions).
Environment details are metadata, never part of the path, so comparisons
work across machines. File names are unique per save (time + random
suffix), so concurrent runs never overwrite each other, and each file is
written to a temp file in the same folder and renamed into place, so a
crash mid-write leaves no partial file. A corrupt or foreign file is
reported by name and skipped; it never hides the other runs.

Pure Python: no torch, no numpy.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from . import files
from .errors import CleverError
from .record import RecordError, RunRecord, index_records, sorted_records, upgrade_schema_1

#: Version of the saved-run layout (2: records carry their ``call`` index).
SCHEMA = 2
#: Older layouts that still load (upgraded on reading).
READABLE_SCHEMAS = (1, 2)
KIND = "pytest-clever-run"
DEFAULT_STORAGE = ".clever"
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class StorageError(CleverError):
    """A saved run is missing, corrupt or not a pytest-clever file."""


@dataclass(frozen=True)
class SavedRun:
    """One saved run: where it is and what it holds."""

    path: Path
    id: str
    name: str
    created: str
    git: dict[str, Any]
    environment: dict[str, Any]
    records: tuple[RunRecord, ...]
    #: One message per malformed record that was skipped.
    problems: tuple[str, ...] = ()
    schema: int = SCHEMA


def check_name(name: str) -> str:
    if not _NAME.match(name) or name == "latest":
        raise StorageError(
            f"invalid run name {name!r}: use 1-64 letters, digits, '.', '_' or '-' ('latest' is reserved)"
        )
    return name


class Storage:
    """The folder of saved runs (default ``.clever/``)."""

    def __init__(self, root: str | os.PathLike = DEFAULT_STORAGE) -> None:
        self.root = Path(root)

    def save(self, records: Sequence[RunRecord], name: str = "run", *, git: dict[str, Any] | None = None) -> Path:
        """Write a new run file atomically and return its path.

        ``git`` is the commit metadata to keep; by default that of the current directory.
        Records are saved in :func:`~pytest_clever.record.sorted_records` order.
        """
        check_name(name)
        index_records(records, f"run {name!r}")  # a duplicate key is an error, not a lost record
        now = datetime.now(timezone.utc)
        run_id = f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"
        document = {
            "schema": SCHEMA,
            "kind": KIND,
            "id": run_id,
            "name": name,
            "created": now.isoformat(timespec="seconds"),
            "git": files.git_info() if git is None else git,
            "environment": files.environment(),
            "records": [r.to_dict() for r in sorted_records(records)],
        }
        path = self.root / f"{run_id}_{name}.json"
        files.write_json(path, document, indent=1)
        return path

    def read(self, path: str | os.PathLike) -> SavedRun:
        """Load one run file; raise StorageError naming the file when it is unusable."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StorageError(f"no saved run at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StorageError(f"{path}: not a readable JSON file ({exc})") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise StorageError(f"{path}: not a pytest-clever run file")
        schema = data.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise StorageError(
                f"{path}: schema {schema!r} is not supported (this version reads "
                f"{', '.join(map(str, READABLE_SCHEMAS))})"
            )
        try:
            raw = data["records"]
            if not isinstance(raw, list):
                raise TypeError("'records' must be a list")
            if schema == 1:
                raw = upgrade_schema_1(raw)
            records, problems = [], []
            for i, item in enumerate(raw):
                try:
                    records.append(RunRecord.from_dict(item, f"{path}: record {i}"))
                except RecordError as exc:  # name it and keep the others
                    problems.append(f"skipped {exc}")
            index_records(records, str(path))
            return SavedRun(
                path=path,
                id=str(data["id"]),
                name=str(data["name"]),
                created=str(data["created"]),
                git=dict(data.get("git") or {}),
                environment=dict(data.get("environment") or {}),
                records=tuple(records),
                problems=tuple(problems),
                schema=schema,
            )
        except RecordError as exc:
            raise StorageError(str(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"{path}: malformed run file ({exc})") from None

    def runs(self) -> tuple[list[SavedRun], list[str]]:
        """Every readable run, oldest first, and one message per file that was skipped."""
        if not self.root.is_dir():
            return [], []
        runs, problems = [], []
        for path in sorted(self.root.glob("*.json")):
            try:
                runs.append(self.read(path))
            except StorageError as exc:
                problems.append(str(exc))
        runs.sort(key=lambda r: r.id)
        return runs, problems

    def find(self, ref: str) -> SavedRun:
        """A run by ``latest``, name (its newest run), id, id prefix or file path."""
        if ref.endswith(".json") or os.sep in ref:
            return self.read(ref)
        runs, _ = self.runs()
        if not runs:
            raise StorageError(f"no saved runs in {self.root}")
        if ref == "latest":
            return runs[-1]
        named = [r for r in runs if r.name == ref]
        if named:
            return named[-1]
        by_id = [r for r in runs if r.id.startswith(ref)]
        if len(by_id) == 1:
            return by_id[0]
        if len(by_id) > 1:
            raise StorageError(f"run id prefix {ref!r} is ambiguous in {self.root}")
        names = sorted({r.name for r in runs})
        raise StorageError(f"no saved run named {ref!r} in {self.root} (names: {', '.join(names)})")
