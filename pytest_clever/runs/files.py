"""What output files hold besides the records: atomic writes and environment/git metadata.

Pure Python (no torch, no numpy): the pytest controller and the CLI write
files without the numeric stack.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

#: Temp files of atomic writes are named ``.clever-*.tmp`` in the target's folder.
TEMP_PATTERN = ".clever-*.tmp"
#: A temp file older than this was left by a writer that crashed (a write takes well under a
#: second); age, not the writer's pid, decides, because a shared folder has writers on other hosts.
STALE_TEMP_SECONDS = 600.0


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a unique temp file in the same folder, then rename.

    Readers see the old file or the new one, never a half-written one.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".clever-", suffix=".tmp", dir=folder)
    try:
        # mkstemp creates 0600; a saved baseline is shared like any file the user writes.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temp_files(folder: str | os.PathLike, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete temp files of atomic writes older than ``max_age`` seconds in ``folder``; return them.

    A writer killed mid-write (kill -9, power loss) leaves its temp file behind;
    readers never pick it up, and the next save clears it.
    """
    removed = []
    now = time.time()
    for path in Path(folder).glob(TEMP_PATTERN):
        try:
            if now - path.stat().st_mtime > max_age:
                path.unlink()
                removed.append(path)
        except OSError:  # gone already, or not ours to delete: leave it
            continue
    return removed


def write_json(path: str | os.PathLike, document: dict[str, Any], indent: int = 2) -> None:
    """``document`` as JSON at ``path``, written atomically."""
    atomic_write_text(path, json.dumps(document, indent=indent) + "\n")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Versions and machine facts worth keeping next to scores (no torch import)."""
    return {
        "pytest_clever": _version("pytest-clever"),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def git_info(cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit, branch and dirty flag of the git checkout at ``cwd``; ``{}`` outside one."""

    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = run("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "branch": run("rev-parse", "--abbrev-ref", "HEAD"), "dirty": bool(status)}
