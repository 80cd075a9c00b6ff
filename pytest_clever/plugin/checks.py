"""Checks made before any test runs, so a mistake costs seconds, not an hour of tests.

Bad marker arguments are found at collection, and outputs asked for (``--clever-save``,
``--clever-json``) that could not be written at the end of the run are found at startup.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from pytest_clever.plugin.options import JSON_OPTION, SAVE_OPTION, marker_of


def marker_errors(items: Iterable[pytest.Item]) -> list[str]:
    """One message per test whose ``@pytest.mark.clever`` arguments are bad, in collection order."""
    errors = []
    for item in items:
        try:
            marker_of(item)
        except pytest.UsageError as exc:
            errors.append(str(exc))
    return errors


def check_save_name(name: str) -> None:
    """A ``--clever-save`` name that could not be found again by name is a usage error."""
    from pytest_clever.runs.storage import StorageError, check_name

    try:
        check_name(name)
    except StorageError as exc:
        raise pytest.UsageError(f"{SAVE_OPTION}: {exc}") from None


def check_outputs(save_root: Path | None, json_path: str | None) -> None:
    """Raise a usage error when the storage folder ``save_root`` (when saving) or the ``--clever-json``
    file could not be written."""
    if save_root is not None:
        check_writable_folder(save_root, f"{SAVE_OPTION}: storage {save_root}")
    if json_path:
        target = Path(json_path)
        if target.is_dir():
            raise pytest.UsageError(f"{JSON_OPTION}: {target} is a folder; give a file path")
        check_writable_folder(target.absolute().parent, f"{JSON_OPTION}: {target}")


def check_writable_folder(folder: Path, what: str) -> None:
    """Raise a usage error now when ``folder`` cannot be created or written to at the end of the run."""
    from pytest_clever.runs.storage import folder_problem

    problem = folder_problem(folder)
    if problem is not None:
        raise pytest.UsageError(f"{what}: {problem}")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"{what}: folder {existing} is not writable")
