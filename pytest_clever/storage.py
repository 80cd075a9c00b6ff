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
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import CleverError
from .report import atomic_write_text, environment

#: Version of the saved-run layout.
SCHEMA = 1
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
    records: list[dict[str, Any]]

    def record_for(self, key: tuple[str, str | None]) -> dict[str, Any] | None:
        for record in self.records:
            if record_key(record) == key:
                return record
        return None


def record_key(record: dict[str, Any]) -> tuple[str, str | None]:
    """Records match across runs by test id and model name."""
    return record["nodeid"], record.get("name")


def check_name(name: str) -> str:
    if not _NAME.match(name) or name == "latest":
        raise StorageError(
            f"invalid run name {name!r}: use 1-64 letters, digits, '.', '_' or '-' ('latest' is reserved)"
        )
    return name


def git_info(cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit, branch and dirty flag of the git checkout at ``cwd``, when there is one."""

    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = run("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "branch": run("rev-parse", "--abbrev-ref", "HEAD"), "dirty": bool(status)}


class Storage:
    """The folder of saved runs (default ``.clever/``)."""

    def __init__(self, root: str | os.PathLike = DEFAULT_STORAGE) -> None:
        self.root = Path(root)

    def save(self, records: list[dict[str, Any]], name: str = "run", *, git: dict[str, Any] | None = None) -> Path:
        """Write a new run file atomically and return its path."""
        check_name(name)
        now = datetime.now(timezone.utc)
        run_id = f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"
        document = {
            "schema": SCHEMA,
            "kind": KIND,
            "id": run_id,
            "name": name,
            "created": now.isoformat(timespec="seconds"),
            "git": git_info() if git is None else git,
            "environment": environment(),
            "records": records,
        }
        path = self.root / f"{run_id}_{name}.json"
        atomic_write_text(path, json.dumps(document, indent=1) + "\n")
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
        if data.get("schema") != SCHEMA:
            raise StorageError(f"{path}: schema {data.get('schema')!r} is not supported (expected {SCHEMA})")
        try:
            return SavedRun(
                path=path,
                id=str(data["id"]),
                name=str(data["name"]),
                created=str(data["created"]),
                git=dict(data.get("git") or {}),
                environment=dict(data.get("environment") or {}),
                records=[dict(r) for r in data["records"]],
            )
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
