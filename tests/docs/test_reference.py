"""The generated reference: every setting of the registry and every plugin option is in the settings table,
and the pages that hold the generated parts keep their markers (docs/hooks.py, run by mkdocs)."""

import importlib.util
from pathlib import Path

import pytest

from pytest_clever.core.settings import OPTIONS, PROGRESS, THREADS

DOCS = Path(__file__).parents[2] / "docs"
pytestmark = pytest.mark.skipif(not (DOCS / "hooks.py").is_file(), reason="the docs/ folder is not here (wheel suite)")


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_has_one_row_with_its_default(hooks):
    table = hooks.settings_table()
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in table.splitlines() if line.startswith("| ")}
    for option in (*OPTIONS.values(), THREADS, PROGRESS):
        row = rows[option.name]
        assert f"| {option.default_text} |" in row.replace("\\|", "|"), row
        assert (f"`{option.flag}`" in row) == option.cli and (f"`{option.ini_key}`" in row) == option.ini
    for flag in (
        "--clever-json=PATH",
        "--clever-md=PATH",
        "--clever-html=PATH",
        "--clever-compare-fail=",
        "--clever-skip",
    ):
        assert f"`{flag}" in table, flag


def test_the_pages_hold_their_markers_and_the_hook_fills_them(hooks):
    for page, marker in (("reference/settings.md", "settings"), ("reference/cli.md", "cli")):
        text = (DOCS / page).read_text(encoding="utf-8")
        assert hooks.MARKERS[marker] in text, page
        filled = hooks.on_page_markdown(text)
        assert hooks.MARKERS[marker] not in filled and len(filled) > len(text) + 500
    cli = hooks.cli_help()
    for command in ("list", "compare", "history", "plot trend", "plot fit", "report"):
        assert f"## `pytest-clever {command}`" in cli, command
