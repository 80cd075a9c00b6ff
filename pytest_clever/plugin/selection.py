"""Whether a run covers the whole suite: a run narrowed by ``-k``, ``-m``, deselection or some files is partial.

A partial run saved under a name must not become that name's baseline: the tests it left
out would show MISSING BASELINE in the next full run and pass unchecked. ``partial_reason``
says how a run was narrowed, and storage keeps the whole run as the baseline
(:meth:`pytest_clever.runs.storage.Storage.find`).

The whole suite is what the project's own configuration runs: the ini ``testpaths``
(relative to the rootdir), else the rootdir, with the ``-k``, ``-m``, ``--deselect``,
``--ignore`` and ``--ignore-glob`` of the ini ``addopts`` (say ``-m "not slow"``). With
``testpaths``, a run given paths on the command line is whole when every testpath is inside
a given path. Without them, a folder given (``pytest tests/``, the usual CI command) is the
whole suite; a file or a node id (``file.py::test``) is a part. ``--ignore`` and
``--ignore-glob`` on the command line leave out part of the suite.

``--lf`` and ``--sw`` make a run partial only when they left tests out (``--lf`` with
nothing failed runs them all), so they count by what they did, not by the flag. Tests a
collection hook or ``--sw`` deselects count only when no ``-k``, ``-m`` or ``--deselect``
is in effect, since those deselect through the same hook; ``--lf`` acts after every other
collection hook and while collecting, so its part is counted apart
(:class:`pytest_clever.plugin.session.CleverSession`).
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import pytest


def partial_reason(config: pytest.Config, deselected: int, lf_deselected: int = 0, lf_reran: int = 0) -> str | None:
    """How this run was narrowed to part of the suite, or None when it covers it all.

    ``deselected``: how many tests ``pytest_deselected`` removed in the collection hooks
    (``-k``, ``-m``, ``--deselect``, ``--sw``, or a plugin's or conftest's hook);
    ``lf_deselected``: the tests ``--lf`` deselected after them; ``lf_reran``: the tests
    that failed last time, when ``--lf`` ran only those (it drops the others while
    collecting, uncounted).
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
    selecting = keyword or markexpr or getattr(option, "deselect", None)
    if deselected and not selecting:  # a collection hook or --sw deselected tests: no selection option names it
        by = "--sw: " if getattr(option, "stepwise", False) or getattr(option, "stepwise_skip", False) else ""
        reasons.append(f"{by}{_tests(deselected)} deselected")
    if lf_reran:
        reasons.append(f"--lf: only the {_tests(lf_reran)} that failed last time")
    elif lf_deselected:
        reasons.append(f"--lf: {_tests(lf_deselected)} deselected")
    for name in ("--ignore", "--ignore-glob"):
        ignored = [i for i in getattr(option, name[2:].replace("-", "_"), None) or [] if i not in ini[name]]
        if ignored:
            reasons.append(f"{name} " + " ".join(ignored))
    paths = _given_part(config)
    if paths:
        reasons.append(paths)
    return "; ".join(reasons) or None


def _tests(count: int) -> str:
    return f"{count} test{'s' if count != 1 else ''}"


def _ini_selection(config: pytest.Config) -> dict[str, Any]:
    """The ``-k``, ``-m`` (last of each), ``--deselect``, ``--ignore`` and ``--ignore-glob`` values of the ini
    ``addopts``: part of the suite's definition, not a narrowing of one run."""
    found: dict[str, Any] = {"-k": None, "-m": None, "--deselect": [], "--ignore": [], "--ignore-glob": []}
    listed = ("--deselect", "--ignore", "--ignore-glob")
    args = list(config.getini("addopts") or [])
    for i, arg in enumerate(args):
        if arg in found:
            name, value = arg, args[i + 1] if i + 1 < len(args) else ""
        elif arg.partition("=")[0] in listed:
            name, _, value = arg.partition("=")
        elif arg[:2] in ("-k", "-m") and len(arg) > 2:
            name, value = arg[:2], arg[2:]
        else:
            continue
        if name in listed:
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
    if not testpaths:  # a folder given is the suite of that folder; only a file is a part
        files = [arg for arg, path in zip(config.args, given, strict=True) if not path.is_dir()]
        return f"only {' '.join(files)}" if files else None
    wanted = [Path(p).resolve() for t in testpaths for p in sorted(glob.glob(str(root / t)))]
    wanted = wanted or [(root / t).resolve() for t in testpaths]
    if all(any(w == g or g in w.parents for g in given) for w in wanted):
        return None
    return f"only {' '.join(config.args)}, not all of the testpaths {' '.join(testpaths)}"
