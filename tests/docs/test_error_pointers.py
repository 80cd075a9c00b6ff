"""Every documentation page an error message points to exists: a message's pointer is a promise to the user."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (ROOT / "docs").is_dir() or not (ROOT / "pytest_clever").is_dir(),
    reason="the docs/ and pytest_clever/ folders are not here (wheel suite)",
)


def test_every_page_named_by_see_exists():
    pages = set()
    for module in (ROOT / "pytest_clever").rglob("*.py"):
        pages.update(re.findall(r'\bsee\("([^"]+)"\)', module.read_text()))
    assert pages, "no see(...) pointer found: the search itself is broken"
    missing = sorted(page for page in pages if not (ROOT / "docs" / page).is_file())
    assert not missing, f"error messages point to documentation pages that do not exist: {missing}"
