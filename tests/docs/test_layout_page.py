"""The layout page lists every module of the package under its own subpackage, and no module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (ROOT / "docs").is_dir() or not (ROOT / "pytest_clever").is_dir(),
    reason="the docs/ and pytest_clever/ folders are not here (wheel suite)",
)
PACKAGE = ROOT / "pytest_clever"


def _listed() -> set[str]:
    """``core/norms.py``-style paths named in the page's tree (one level of subpackages, as the package has)."""
    page = (ROOT / "docs" / "reference" / "layout.md").read_text()
    tree = page[page.index("```\npytest_clever/") : page.index("```", page.index("```\npytest_clever/") + 3)]
    listed, package = set(), ""
    for line in tree.splitlines()[2:]:
        if re.match(r"^\S", line):  # the tree's end: docs/, tests/, ... at the root
            break
        sub = re.match(r"^  (\w+)/", line)
        if sub:
            package = sub.group(1) + "/"
            listed.update(f"{package}{name}" for name in re.findall(r"\b(\w+\.py)\b", line))
            continue
        if re.match(r"^  \S", line):
            package = ""
        listed.update(f"{package}{name}" for name in re.findall(r"\b(\w+\.py)\b", line))
    return listed


def test_the_layout_page_lists_every_module():
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    listed = {path for path in _listed() if not path.endswith("__init__.py")}
    assert sorted(modules - listed) == [], "modules missing from docs/reference/layout.md"
    assert sorted(listed - modules) == [], "docs/reference/layout.md lists modules that do not exist"
