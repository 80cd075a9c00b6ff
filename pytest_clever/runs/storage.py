"""Saved runs (baselines) on disk: one JSON file per run, written atomically.

A run file holds the recorded results of one pytest session plus metadata
(schema version, time, git commit and dirty flag, machine and versions).
Environment details are metadata, never part of the path, so comparisons
work across machines. File names are unique per save (time + random
suffix), so concurrent runs never overwrite each other, and each file is
written to a temp file in the same folder and renamed into place, so a
crash mid-write leaves no partial file. A corrupt or foreign file is
reported by name and skipped; it never hides the other runs.

The layout version and the upgrades of older layouts are :mod:`pytest_clever.runs.schema`'s.

Pure Python: no torch, no numpy.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_clever.errors import CleverError
from pytest_clever.runs import files
from pytest_clever.runs.record import RecordError, RecordKey, RunRecord, index_records, sorted_records
from pytest_clever.runs.schema import SCHEMA, check_schema, upgrade_run

KIND = "pytest-clever-run"
DEFAULT_STORAGE = ".clever"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Names a lookup would read as something else: "latest", and names ending in ".json" (a path).
_RESERVED = "'latest' and names ending in '.json' are reserved"


def storage_root(rootdir: str | os.PathLike, configured: str | os.PathLike | None = None) -> Path:
    """The folder of saved runs: ``configured`` (option or ini ``clever_storage``; default
    ``.clever``), relative to pytest's rootdir unless absolute. The plugin and the CLI share it."""
    path = Path(configured or DEFAULT_STORAGE)
    return path if path.is_absolute() else Path(rootdir) / path


class StorageError(CleverError):
    """A saved run is missing, corrupt or not a pytest-clever file."""


def folder_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` could not be created or used as a folder, or None when it can (it may not exist yet).

    The nearest existing part of the path must be a folder, and no part of it a dangling symbolic
    link: ``exists()`` is False for one, so it looks like a folder still to be created, but creating
    it fails ("File exists") only when a run is saved, after every test ran.
    """
    path = Path(folder).absolute()
    for part in (path, *path.parents):
        if part.is_symlink() and not part.exists():
            return f"{part} is a symbolic link to {os.readlink(part)}, which does not exist"
        if part.exists():
            return None if part.is_dir() else f"{part} is not a folder"
    return None


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
    #: One message per malformed record (or, from :meth:`Storage.find`, unreadable file) skipped.
    problems: tuple[str, ...] = ()
    schema: int = SCHEMA
    #: Why the run is incomplete (interrupted, internal error); None for a complete run.
    incomplete: str | None = None
    #: How the run was narrowed to part of the suite (``-k``, ``-m``, deselection, some files); None for the whole.
    partial: str | None = None
    #: ``(key, why)`` of each record skipped as malformed whose key could still be read, so a comparison
    #: shows that test as not comparable rather than as missing from the baseline (its gate stays on).
    unreadable: tuple[tuple[RecordKey, str], ...] = ()


def check_name(name: str) -> str:
    """The one rule for run names: they become part of a file name and must be found again by name."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "latest" or name.lower().endswith(".json"):
        raise StorageError(f"invalid run name {name!r}: use 1-64 letters, digits, '.', '_' or '-' ({_RESERVED})")
    return name


def _record_key(item: Any) -> RecordKey | None:
    """The key of a malformed record, when its ``nodeid``, ``name`` and ``call`` are still well formed."""
    if not isinstance(item, dict):
        return None
    nodeid, name, call = item.get("nodeid"), item.get("name"), item.get("call")
    if not isinstance(nodeid, str) or not nodeid or not (name is None or (isinstance(name, str) and name)):
        return None
    if isinstance(call, bool) or not isinstance(call, int) or call < 0:
        return None
    return nodeid, name, call


class Storage:
    """The folder of saved runs (default ``.clever/``)."""

    def __init__(self, root: str | os.PathLike = DEFAULT_STORAGE) -> None:
        self.root = Path(root)

    def save(
        self,
        records: Sequence[RunRecord],
        name: str = "run",
        *,
        git: dict[str, Any] | None = None,
        incomplete: str | None = None,
        partial: str | None = None,
    ) -> Path:
        """Write a new run file atomically and return its path.

        ``git`` is the commit metadata to keep; by default that of the current directory.
        Records are saved in :func:`~pytest_clever.runs.record.sorted_records` order.
        ``incomplete`` says why the run did not finish (e.g. "interrupted"): such a
        run is kept for inspection but never found by ``latest`` or by name.
        ``partial`` says how the run was narrowed to part of the suite (e.g. "-k test_two"):
        ``latest`` and names prefer a run of the whole suite (see :meth:`find`).
        Temp files that crashed writers left in the folder are removed.
        """
        check_name(name)
        index_records(records, f"run {name!r}")  # a duplicate key is an error, not a lost record
        now = datetime.now(UTC)
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
        if incomplete is not None:
            document["incomplete"] = str(incomplete)
        if partial is not None:
            document["partial"] = str(partial)
        path = self.root / f"{run_id}_{name}.json"
        files.write_json(path, document, indent=1)
        files.remove_stale_temp_files(self.root)
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
        try:
            version = check_schema(schema)
        except ValueError as exc:
            raise StorageError(f"{path}: {exc}") from None
        try:
            raw = data["records"]
            if not isinstance(raw, list):
                raise TypeError("'records' must be a list")
            records, problems, unreadable = [], [], []
            for i, item in enumerate(upgrade_run(raw, version)):
                try:
                    records.append(RunRecord.from_dict(item, f"{path}: record {i}"))
                except RecordError as exc:  # name it and keep the others
                    problems.append(f"skipped {exc}")
                    key = _record_key(item)
                    if key is not None:
                        unreadable.append((key, str(exc)))
            index_records(records, str(path))
            incomplete = data.get("incomplete")
            partial = data.get("partial")
            return SavedRun(
                path=path,
                id=str(data["id"]),
                name=str(data["name"]),
                created=str(data["created"]),
                git=dict(data.get("git") or {}),
                environment=dict(data.get("environment") or {}),
                records=tuple(records),
                problems=tuple(problems),
                schema=version,
                incomplete=None if incomplete is None else str(incomplete),
                partial=None if partial is None else str(partial),
                unreadable=tuple(unreadable),
            )
        except RecordError as exc:
            raise StorageError(str(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"{path}: malformed run file ({exc})") from None

    def runs(self) -> tuple[list[SavedRun], list[str]]:
        """Every readable run (complete or not), oldest first, and one message per file that was skipped."""
        runs, skipped = self._scan()
        return runs, [f"skipped file {message}" for _, message in skipped]

    def _scan(self) -> tuple[list[SavedRun], list[tuple[Path, str]]]:
        if not self.root.is_dir():
            return [], []
        runs, skipped = [], []
        for path in sorted(self.root.glob("*.json")):
            try:
                runs.append(self.read(path))
            except StorageError as exc:
                skipped.append((path, str(exc)))
        runs.sort(key=lambda r: r.id)
        return runs, skipped

    def find(self, ref: str, *, prefer_whole: bool = True) -> SavedRun:
        """A run by ``latest``, name (its newest run), id, id prefix or file path.

        ``latest`` and names only pick complete runs; an incomplete run is
        returned for an explicit id or path, with a problem saying so. Among
        complete runs they pick the newest run of the whole suite, so a
        partial run (``-k``, deselection, some files) never shadows it; a
        newer partial run passed over, or a partial run picked because no
        whole run exists, is named in ``problems``. ``prefer_whole=False`` picks
        the newest complete run, partial or not (a partial one said so): the
        run being checked, as opposed to the baseline it is checked against. Files
        skipped on the way (corrupt, newer schema) are listed in the run's
        ``problems``; a name whose only files were skipped says why.
        """
        if ref.endswith(".json") or os.sep in ref:
            return _flag_incomplete(self.read(self._run_file(ref)))
        runs, skipped = self._scan()
        found = self._lookup(ref, runs, skipped, _prefer_whole if prefer_whole else _newest)
        notes = tuple(f"skipped file {message}" for _, message in skipped)
        return replace(found, problems=notes + found.problems)

    def _run_file(self, ref: str) -> Path:
        """The run file a path names: as given, else a bare file name in this storage folder."""
        path = Path(ref)
        if path.exists() or path.is_absolute() or len(path.parts) != 1:
            return path
        if (self.root / path).exists():
            return self.root / path
        raise StorageError(
            f"no saved run at {path} (nor {self.root / path}); give the run file's path, or its name or id"
        )

    def _lookup(
        self,
        ref: str,
        runs: list[SavedRun],
        skipped: list[tuple[Path, str]],
        pick: Callable[[list[SavedRun]], SavedRun],
    ) -> SavedRun:
        complete = [r for r in runs if r.incomplete is None]
        if ref == "latest":
            if complete:
                return pick(complete)
        else:
            named = [r for r in complete if r.name == ref]
            if named:
                return pick(named)
            by_id = [r for r in runs if r.id.startswith(ref)]
            if len(by_id) == 1:
                return _flag_incomplete(by_id[0])
            if len(by_id) > 1:
                raise StorageError(f"run id prefix {ref!r} is ambiguous in {self.root}")
        unusable = [m for p, m in skipped if ref == "latest" or p.name.endswith(f"_{ref}.json")]
        wanted = "no complete saved run" + ("" if ref == "latest" else f" named {ref!r}")
        why = [f"{m}" for m in unusable]
        why += [
            f"run {r.id} is incomplete ({r.incomplete}); compare with it by id or path if you must"
            for r in runs
            if r.incomplete is not None and ref in ("latest", r.name)
        ]
        if not runs and not skipped:
            problem = folder_problem(self.root)  # a dangling link or a file reads as an empty folder
            raise StorageError(f"no saved runs in {self.root}" + (f" ({problem})" if problem else ""))
        if why:
            raise StorageError(f"{wanted} in {self.root}: " + "; ".join(why))
        names = sorted({r.name for r in complete})
        raise StorageError(f"no saved run named {ref!r} in {self.root} (names: {', '.join(names)})")


def _prefer_whole(candidates: list[SavedRun]) -> SavedRun:
    """The newest run of the whole suite among ``candidates`` (complete runs, oldest first), with a
    problem naming each newer partial run passed over; the newest partial run, said so, when none is whole."""
    whole = [r for r in candidates if r.partial is None]
    if not whole:
        run = candidates[-1]
        note = (
            f"run {run.id} is partial ({run.partial}) and no run of the whole suite is saved under this name: "
            "tests it left out have no baseline"
        )
        return replace(run, problems=(note, *run.problems))
    run = whole[-1]
    notes = tuple(
        f"run {r.id} is newer but partial ({r.partial}): not used; compared with {run.id}, "
        "the latest run of the whole suite"
        for r in candidates
        if r.id > run.id
    )
    return replace(run, problems=notes + run.problems)


def _newest(candidates: list[SavedRun]) -> SavedRun:
    """The newest of ``candidates`` (complete runs, oldest first), partial or not; a partial one says so."""
    return _flag_incomplete(candidates[-1])


def _flag_incomplete(run: SavedRun) -> SavedRun:
    """An incomplete or partial run asked for by id or path: returned, with a problem that says what it is."""
    notes: tuple[str, ...] = ()
    if run.incomplete is not None:
        notes += (f"run {run.id} is incomplete ({run.incomplete}): its records may not cover the whole suite",)
    if run.partial is not None:
        notes += (f"run {run.id} is partial ({run.partial}): it covers part of the suite",)
    return replace(run, problems=notes + run.problems) if notes else run
