"""``pytest-clever`` / ``python -m pytest_clever``: inspect and compare saved runs.

Commands: ``list``, ``compare A B``, ``history TEST``, ``plot trend``,
``plot fit RUN TEST``, ``report [RUN] --html PATH``. Exit codes (:data:`EXIT_CODES`): 0 fine, 1 a regression
past the ``--fail`` rule, 2 any error (usage, storage, output, or an unexpected one),
so no error reads as "regression found".
"""

from __future__ import annotations

import argparse
import configparser
import math
import os
import sys
import tomllib
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_clever.errors import CleverError
from pytest_clever.runs.compare import compare_records, comparison_table
from pytest_clever.runs.plot_data import deciding_fit, matching, trend_series
from pytest_clever.runs.report import format_table
from pytest_clever.runs.rules import ChangeRule
from pytest_clever.runs.storage import (
    DEFAULT_STORAGE,
    SavedRun,
    Storage,
    StorageError,
    folder_problem,
    storage_root,
)

EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2
#: The exit codes, as ``--help`` lists them.
EXIT_CODES = (
    "exit codes:\n"
    f"  {EXIT_OK}  fine (compare: no regression past --fail)\n"
    f"  {EXIT_REGRESSION}  compare: a regression past a --fail rule\n"
    f"  {EXIT_ERROR}  an error: bad arguments, a run or storage folder that cannot be read, an output that "
    "cannot be written"
)
STORAGE_INI = "clever_storage"


def _read_ini(path: Path) -> dict[str, str] | None:
    """The pytest settings in ``path`` when it is a pytest config file, else None (pytest's rules:
    pytest.ini and .pytest.ini always count, the others only with a pytest section)."""
    if path.suffix == ".toml":
        try:
            tool = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
        except (OSError, ValueError):
            return None
        table = tool.get("pytest", {})
        table = table.get("ini_options", table) if isinstance(table, dict) else None
        return {k: str(v) for k, v in table.items()} if isinstance(table, dict) and table else None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return None
    section = "tool:pytest" if path.name == "setup.cfg" else "pytest"
    if parser.has_section(section):
        return dict(parser.items(section))
    return {} if path.name in ("pytest.ini", ".pytest.ini") else None


def find_rootdir(start: str | os.PathLike | None = None) -> tuple[Path, dict[str, str]]:
    """pytest's rootdir and ini settings seen from ``start`` (default: the current directory).

    Walks up for pytest.ini, .pytest.ini, pyproject.toml, tox.ini, setup.cfg
    (in that order within a folder), as pytest does; without one, the first
    folder up with setup.py, else ``start`` itself.
    """
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        for name in ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
            candidate = folder / name
            if candidate.is_file():
                settings = _read_ini(candidate)
                if settings is not None:
                    return folder, settings
    for folder in (here, *here.parents):
        if (folder / "setup.py").is_file():
            return folder, {}
    return here, {}


def default_storage() -> Path:
    """The storage folder the plugin would use for a pytest run started here."""
    rootdir, ini = find_rootdir()
    return storage_root(rootdir, ini.get(STORAGE_INI))


def check_storage(storage: Storage) -> None:
    """A storage folder that cannot hold runs (a file, a dangling symbolic link) is an error, not "no saved runs"."""
    problem = folder_problem(storage.root)
    if problem is not None:
        raise StorageError(f"storage {storage.root}: {problem}")


def _commit(run: SavedRun) -> str:
    commit = (run.git.get("commit") or "-")[:10]
    return commit + ("*" if run.git.get("dirty") else "")


_said: set[str] = set()  # each skipped file or record is named once per command


def _say_skipped(problems: Sequence[str]) -> None:
    for problem in problems:
        if problem not in _said:
            _said.add(problem)
            print(problem, file=sys.stderr)


def _runs(storage: Storage) -> list[SavedRun]:
    """Every readable run; unreadable files and malformed records are named on stderr."""
    runs, problems = storage.runs()
    _say_skipped(problems)
    for run in runs:
        _say_skipped(run.problems)
    return runs


def _find(storage: Storage, ref: str, *, prefer_whole: bool = True) -> SavedRun:
    run = storage.find(ref, prefer_whole=prefer_whole)
    _say_skipped(run.problems)
    return run


def cmd_list(storage: Storage, args: argparse.Namespace) -> int:
    runs = _runs(storage)
    if not runs:
        print(f"no saved runs in {storage.root}")
        return EXIT_OK
    rows = [("id", "name", "created", "commit", "records", "failed", "complete")]
    for run in runs:
        failed = sum(1 for r in run.records if r.status == "failed")
        complete = "yes" if run.incomplete is None else f"NO ({run.incomplete})"
        complete += "" if run.partial is None else f", partial ({run.partial})"
        rows.append((run.id, run.name, run.created, _commit(run), str(len(run.records)), str(failed), complete))
    print("\n".join(format_table(rows)))
    return EXIT_OK


def _rules(text: str) -> list[ChangeRule]:
    """One ``--fail`` value; an empty list (an unset variable, a stray comma) would turn the gate off."""
    rules = ChangeRule.parse_many(text)
    if not rules:
        raise ValueError(f"--fail {text!r} holds no rule: give STAT:DROP[:significant] or leave the option out")
    return rules


def cmd_compare(storage: Storage, args: argparse.Namespace) -> int:
    # The baseline side prefers a run of the whole suite; the current side is the run asked for, partial or not.
    before, now = _find(storage, args.baseline), _find(storage, args.current, prefer_whole=False)
    if before.id == now.id:
        raise CleverError(
            f"both sides are run {now.id} ({args.baseline!r} and {args.current!r}): a run compared with itself "
            "checks nothing; name two different runs"
        )
    rules = [rule for text in args.fail for rule in _rules(text)]
    comparisons = compare_records(now.records, before.records, rules, unreadable=dict(before.unreadable))
    print(f"baseline {before.name} ({before.id}, {_commit(before)}) -> {now.name} ({now.id}, {_commit(now)})")
    print("\n".join(comparison_table(comparisons)))
    regressed = [c for c in comparisons if c.status == "regressed"]
    if regressed:
        print(f"{len(regressed)} regression(s) past {', '.join(map(str, rules))}")
        return EXIT_REGRESSION
    return EXIT_OK


def cmd_history(storage: Storage, args: argparse.Namespace) -> int:
    runs = _runs(storage)
    rows = [("run", "name", "commit", "test", "n", "min", "mean", "median")]
    for run in runs:
        for r in matching(run.records, args.test, args.name):
            rows.append(
                (run.id, run.name, _commit(run), r.label, str(r.n), f"{r.min:.4g}", f"{r.mean:.4g}", f"{r.median:.4g}")
            )
    if len(rows) == 1:
        print(f"no saved results for tests matching {args.test!r} in {storage.root}")
        return EXIT_ERROR
    print("\n".join(format_table(rows)))
    return EXIT_OK


def _pyplot() -> ModuleType:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CleverError("plots need matplotlib: pip install 'pytest-clever[plot]'") from None
    return plt


def check_output(path: str, option: str = "-o/--output", example: str = "plot.png") -> Path:
    """The file an output option names, checked before any work: a file name in an existing, writable folder."""
    if not path.strip():
        raise CleverError(f"{option}: give a file name, e.g. {example} (got an empty name)")
    target = Path(path)
    if target.is_dir():
        raise CleverError(f"{option}: {path} is a folder; give a file name such as {target / example}")
    folder = target.absolute().parent
    if not folder.is_dir():
        raise CleverError(f"{option}: folder {folder} does not exist; create it or write elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CleverError(f"{option}: folder {folder} is not writable")
    return target


def _save(plt: ModuleType, fig: Any, path: str) -> int:
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise CleverError(f"could not write {path}: {exc}") from None
    finally:
        plt.close(fig)
    print(f"wrote {path}")
    return EXIT_OK


def cmd_plot_trend(storage: Storage, args: argparse.Namespace) -> int:
    check_output(args.output)
    runs = _runs(storage)
    series = trend_series(runs, args.statistic, args.test or "", args.name)
    if not series:
        print(f"nothing to plot in {storage.root}", file=sys.stderr)
        return EXIT_ERROR
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, points in sorted(series.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xticks(range(len(runs)), [f"{r.name}\n{r.id[:15]}" for r in runs], rotation=30, fontsize=7)
    ax.set_ylabel(f"{args.statistic} CLEVER score")
    ax.set_title("CLEVER scores across saved runs")
    ax.legend(fontsize=7)
    return _save(plt, fig, args.output)


def cmd_plot_fit(storage: Storage, args: argparse.Namespace) -> int:
    """The reverse Weibull fit against the histogram of the batch maxima it was fitted to."""
    check_output(args.output)
    run = _find(storage, args.run)
    records = matching(run.records, args.test, args.name)
    if not records:
        raise StorageError(f"no result for tests matching {args.test!r} in run {run.id}")
    results = records[0].results
    if not 0 <= args.input < len(results):
        raise StorageError(f"input {args.input} out of range: the record has {len(results)} result(s)")
    fit = deciding_fit(results[args.input], f"{run.path}: {records[0].label}, input {args.input}")
    maxima = fit.maxima
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.hist(maxima, bins=max(10, int(math.sqrt(len(maxima)))), density=True, alpha=0.5, label="batch maxima")
    if fit.shape is not None:
        lo = min(maxima) - 0.1 * (max(maxima) - min(maxima))
        grid = [lo + (fit.estimate - lo) * k / 399 for k in range(400)]
        ax.plot(grid, fit.density(grid), "r-", label=f"reverse Weibull (c={fit.shape:.3g}, KS p={fit.ks_pvalue:.2g})")
    ax.axvline(fit.estimate, color="k", ls="--", label=f"estimate {fit.estimate:.4g} ({fit.method})")
    ax.axvline(max(maxima), color="g", ls=":", label=f"sample max {max(maxima):.4g}")
    ax.set_xlabel(fit.quantity)
    ax.set_title(f"{records[0].label}, input {args.input}, target {fit.target}", fontsize=9)
    ax.legend(fontsize=8)
    return _save(plt, fig, args.output)


def cmd_report(storage: Storage, args: argparse.Namespace) -> int:
    """The HTML report and/or markdown summary of a saved run, compared with ``--baseline`` when given."""
    from pytest_clever.runs.files import atomic_write_bytes
    from pytest_clever.runs.html import html_report
    from pytest_clever.runs.markdown import markdown_summary
    from pytest_clever.runs.verdict import saved_run_verdict

    if args.html is None and args.md is None:
        raise CleverError("report: give --html PATH, --md PATH or both")
    outputs = [
        (check_output(p, o, e), f)
        for p, o, e, f in (
            (args.html, "--html", "report.html", html_report),
            (args.md, "--md", "summary.md", markdown_summary),
        )
        if p is not None
    ]
    run = _find(storage, args.run, prefer_whole=False)
    baseline, comparisons, regressions = None, [], []
    if args.baseline is not None:
        baseline = _find(storage, args.baseline)
        if baseline.id == run.id:
            raise CleverError(f"--baseline {args.baseline!r} is run {run.id} itself; name another run")
        rules = [rule for text in args.fail for rule in _rules(text)]
        comparisons = compare_records(run.records, baseline.records, rules, unreadable=dict(baseline.unreadable))
        regressions = [f"{c.label}: {reason}" for c in comparisons if c.status == "regressed" for reason in c.reasons]
    history = [r for r in _runs(storage) if r.incomplete is None and r.id <= run.id]
    verdict = saved_run_verdict(run, baseline, comparisons, regressions, history)
    for path, render in outputs:
        try:
            atomic_write_bytes(path, render(verdict).encode("utf-8"))
        except OSError as exc:
            raise CleverError(f"could not write {path}: {exc}") from None
        print(f"wrote {path}")
    return EXIT_REGRESSION if regressions else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytest-clever",
        description="Inspect and compare saved CLEVER runs.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--storage",
        default=None,
        help=f"folder of saved runs (default: ini {STORAGE_INI} or {DEFAULT_STORAGE}, under pytest's rootdir "
        "found from the current folder, as the plugin uses)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list saved runs").set_defaults(func=cmd_list)

    p = sub.add_parser("compare", help="compare two runs: deltas per test, non-zero exit past --fail")
    p.add_argument("baseline", help="name, id or path of the baseline run")
    p.add_argument(
        "current",
        nargs="?",
        default="latest",
        help="name, id or path (default: latest); the newest run, partial or not",
    )
    p.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="STAT:DROP[:significant]",
        help="e.g. mean:10%% or min:0.05; mean:10%%:significant fails only on a significant drop",
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("history", help="scores of matching tests over saved runs")
    p.add_argument("test", help="substring of the test id")
    p.add_argument("--name", help="only this model name")
    p.set_defaults(func=cmd_history)

    plot = sub.add_parser("plot", help="PNG plots (needs matplotlib)").add_subparsers(dest="plot", required=True)
    p = plot.add_parser("trend", help="a statistic of each test across saved runs")
    p.add_argument("--test", help="substring of the test id (default: all)")
    p.add_argument("--name", help="only this model name")
    p.add_argument("--statistic", choices=("min", "mean", "median", "max"), default="mean")
    p.add_argument("-o", "--output", default="clever-trend.png")
    p.set_defaults(func=cmd_plot_trend)
    p = plot.add_parser("fit", help="Weibull fit vs the histogram of batch maxima of one result")
    p.add_argument("run", help="name, id or path of the run")
    p.add_argument("test", help="substring of the test id")
    p.add_argument("--name", help="only this model name")
    p.add_argument("--input", type=int, default=0, help="index of the input in the record (default 0)")
    p.add_argument("-o", "--output", default="clever-fit.png")
    p.set_defaults(func=cmd_plot_fit)
    p = sub.add_parser("report", help="HTML report (--html) or markdown summary (--md) of a saved run")
    p.add_argument("run", nargs="?", default="latest", help="name, id or path (default: latest)")
    p.add_argument("--html", metavar="PATH", help="write the self-contained HTML report to PATH")
    p.add_argument("--md", metavar="PATH", help="write the markdown summary to PATH")
    p.add_argument("--baseline", metavar="RUN", help="compare with this run (name, id or path)")
    p.add_argument("--fail", action="append", default=[], metavar="STAT:DROP[:significant]", help="as in compare")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code is :data:`EXIT_OK`, :data:`EXIT_REGRESSION` or :data:`EXIT_ERROR`.

    Every error is :data:`EXIT_ERROR`, an unexpected one included (with its traceback), so a
    script never reads a crash as "regression found".
    """
    args = build_parser().parse_args(argv)
    _said.clear()
    try:
        storage = Storage(args.storage or default_storage())
        check_storage(storage)
        return int(args.func(storage, args))
    except (CleverError, ValueError, OSError) as exc:
        print(f"pytest-clever: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:  # noqa: BLE001  (any crash: the error code with its traceback, never "regression found")
        traceback.print_exc()
        print("pytest-clever: internal error (the traceback above); please report it", file=sys.stderr)
        return EXIT_ERROR
