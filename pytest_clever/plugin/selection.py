"""Whether a run covers the whole suite: a run narrowed by ``-k``, ``-m``, deselection or some files is partial.

A partial run saved under a name must not become that name's baseline: the tests it left
out would show MISSING BASELINE in the next full run and pass unchecked. ``partial_reason``
says how a run was narrowed, and storage keeps the whole run as the baseline
(:meth:`pytest_clever.runs.storage.Storage.find`).

The whole suite is what the project's own configuration runs: the ini ``testpaths``
(relative to the rootdir), else the rootdir, with the ``-k``, ``-m`` and ``--deselect`` of
the ini ``addopts`` (say ``-m "not slow"``). A run given paths on the command line is whole
when every one of those folders is inside a given path; a node id (``file.py::test``) or a
file under them is a part. Tests a collection hook deselects count only when no ``-k``,
``-m`` or ``--deselect`` is in effect, since those deselect through the same hook.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import pytest


def partial_reason(config: pytest.Config, deselected: int) -> str | None:
    """How this run was narrowed to part of the suite, or None when it covers it all.

    ``deselected``: how many tests ``pytest_deselected`` removed (``-k``, ``-m``,
    ``--deselect``, ``--lf``, or a plugin's or conftest's collection hook).
    """
    reasons = []
    option = config.option
    ini = _ini_selection(config)
    keyword, markexpr = getattr(option, "keyword", ""), getattr(option, "markexpr", "")
    deselect = [d for d in getattr(option, "deselect", None) or [] if d not in ini["--deselect"]]
    if keyword and keyword != ini["-k"]:
        reasons.append(f"-k {keyword!r}")
    if markexpr and markexpr != ini["-m"]:
        reasons.append(f"-m {markexpr!r}")
    if deselect:
        reasons.append("--deselect " + " ".join(deselect))
    if getattr(option, "lf", False):
        reasons.append("--lf")
    selecting = keyword or markexpr or getattr(option, "deselect", None) or getattr(option, "lf", False)
    if deselected and not selecting:  # a collection hook deselected tests: no option names it
        reasons.append(f"{deselected} test{'s' if deselected != 1 else ''} deselected")
    paths = _given_part(config)
    if paths:
        reasons.append(paths)
    return "; ".join(reasons) or None


def _ini_selection(config: pytest.Config) -> dict[str, Any]:
    """The ``-k``, ``-m`` (last of each) and ``--deselect`` values of the ini ``addopts``: part of the suite's
    definition, not a narrowing of one run."""
    found: dict[str, Any] = {"-k": None, "-m": None, "--deselect": []}
    args = list(config.getini("addopts") or [])
    for i, arg in enumerate(args):
        if arg in found:
            name, value = arg, args[i + 1] if i + 1 < len(args) else ""
        elif arg.startswith("--deselect="):
            name, value = "--deselect", arg.partition("=")[2]
        elif arg[:2] in ("-k", "-m") and len(arg) > 2:
            name, value = arg[:2], arg[2:]
        else:
            continue
        if name == "--deselect":
            found[name].append(value)
        else:
            found[name] = value
    return found


def _given_part(config: pytest.Config) -> str | None:
    """The paths given on the command line, when they select less than the whole suite."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return None  # no paths given: pytest collects the testpaths or the invocation folder
    here = config.invocation_params.dir
    given = []
    for arg in config.args:
        path, sep, _ = arg.partition("::")
        if sep:  # a node id: part of a file
            return f"only {' '.join(config.args)}"
        given.append((here / path).resolve())
    testpaths = config.getini("testpaths") or []
    root = config.rootpath
    if testpaths:
        wanted = [Path(p).resolve() for t in testpaths for p in sorted(glob.glob(str(root / t)))]
        wanted = wanted or [(root / t).resolve() for t in testpaths]
        whole = "the testpaths " + " ".join(testpaths)
    else:
        wanted, whole = [root.resolve()], "the rootdir"
    if all(any(w == g or g in w.parents for g in given) for w in wanted):
        return None
    return f"only {' '.join(config.args)}, not all of {whole}"
