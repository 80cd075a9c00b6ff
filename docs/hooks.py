"""MkDocs hook: the reference pages that mirror the code are generated at build time.

A page holding ``<!-- generated: settings -->`` gets every setting in one table, built from the options
registry (``pytest_clever.core.settings.OPTIONS`` and the process-wide ``THREADS`` and ``PROGRESS``) and
from the options the plugin declares (outputs, baselines, reports); ``<!-- generated: cli -->`` gets the
``--help`` of every ``pytest-clever`` command. So the documentation cannot leave a setting out or show a
stale default. mkdocs.yml names this file under ``hooks:``; tests/docs imports it to check the tables.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from pytest_clever.cli import build_parser
from pytest_clever.core.settings import OPTIONS, PROGRESS, THREADS, Option
from pytest_clever.plugin.options import add_options
from pytest_clever.plugin.reports import add_report_options

#: The markers a page holds where a generated part goes.
MARKERS = {"settings": "<!-- generated: settings -->", "cli": "<!-- generated: cli -->"}


class _Recorder:
    """Stands in for pytest's parser and option group: records every option and ini key declared."""

    def __init__(self) -> None:
        self.options: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self.ini: dict[str, str] = {}

    def getgroup(self, *args: Any, **kwargs: Any) -> _Recorder:
        return self

    def addoption(self, *names: str, **kwargs: Any) -> None:
        self.options.append((names, kwargs))

    def addini(self, name: str, help: str, **kwargs: Any) -> None:
        self.ini[name] = help


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str | None) -> str:
    return f"`{text}`" if text else ""


def _setting_row(option: Option, where: str) -> str:
    marker = _code(f"{option.name}=") if option.marker else ""
    ini = _code(option.ini_key) if option.ini else ""
    cli = _code(option.flag) if option.cli else ""
    return f"| {option.name} | {marker} | {ini} | {cli} | {_cell(option.default_text)} | {_cell(option.help)}{where} |"


def settings_table() -> str:
    recorder = _Recorder()
    add_options(recorder)  # type: ignore[arg-type]
    add_report_options(recorder)  # type: ignore[arg-type]
    fixture_flags = {o.flag for o in (*OPTIONS.values(), THREADS, PROGRESS)}
    lines = [
        "| setting | marker / call | ini key | command line | default | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
        *(_setting_row(o, "") for o in OPTIONS.values()),
        *(_setting_row(o, " (whole run)") for o in (THREADS, PROGRESS)),
        "",
        "## Run options",
        "",
        "Options of the whole run: outputs, baselines and reports. They have no marker keyword.",
        "",
        "| command line | ini key | meaning |",
        "| --- | --- | --- |",
    ]
    for names, kwargs in recorder.options:
        flag = names[0]
        if flag in fixture_flags:
            continue
        ini_key = "clever_" + flag.removeprefix("--clever-").replace("-", "_")
        ini = _code(ini_key) if ini_key in recorder.ini else ""
        if ini_key == "clever_storage_path":
            ini = _code("clever_storage")
        metavar = kwargs.get("metavar") or ("|".join(kwargs["choices"]) if "choices" in kwargs else None)
        shown = f"{flag}={metavar}" if metavar and kwargs.get("action") != "store_true" else flag
        lines.append(f"| `{_cell(shown)}` | {ini} | {_cell(kwargs.get('help', '').replace('%%', '%'))} |")
    return "\n".join(lines) + "\n"


def cli_help() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal's width: one width for every build
    parser = build_parser()
    lines = [
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        commands = [(f"{name} {n}", c) for n, c in nested[0].choices.items()] if nested else [(name, command)]
        for title, parser_ in commands:
            lines += ["", f"## `pytest-clever {title}`", "", "```text", parser_.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


GENERATORS = {"settings": settings_table, "cli": cli_help}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """MkDocs' hook: put each generated part where its marker stands."""
    for name, marker in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, GENERATORS[name]())
    return markdown
