"""The README fits on two screens, every link in it resolves, and its test-suite command is the one CI runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
pytestmark = pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="the docs/ folder is not here (wheel suite)")

#: Markdown links and images: [text](target) and ![alt](target).
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_is_at_most_8_kb():
    assert len(README.read_bytes()) <= 8 * 1024


def test_every_link_of_the_readme_resolves_to_a_file_or_a_heading():
    text = README.read_text(encoding="utf-8")
    links = _LINK.findall(text)
    assert len(links) >= 15  # the picture and the links into the docs
    for link in links:
        assert not link.startswith(("http://", "https://")), f"{link}: link into the repository's docs instead"
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), f"README links to {link}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"README links to {link}: no such heading"


def test_the_readme_test_command_is_the_one_ci_runs():
    commands = re.findall(r"^python3 -m venv .*$", README.read_text(encoding="utf-8"), re.M)
    assert [c.rsplit("&& ", 1)[1] for c in commands] == ["pytest examples", "pytest --run-slow"]
    assert f"{commands[1]} || readme_rc=$?" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
