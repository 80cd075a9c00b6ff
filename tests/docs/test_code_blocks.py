"""Every Python code block of the tutorial and the how-to pages runs, so the docs cannot rot.

Per page, in a fresh folder and a fresh Python process: a block whose first line is ``# file: NAME``
is written to NAME (a conftest, a test module, a pytest.ini shown as ``ini``); every other ``python``
block runs, in page order, in one namespace, as a reader pasting them in turn would. When the page wrote
test modules, pytest then runs them there, with small samples (``--clever-n-batches=10
--clever-batch-size=32``: the point is that the code works, not the numbers), and every test must pass.
A block right after ``<!-- docs: no-run -->`` is shown only (a deliberately failing test, a snippet of a
bigger file). The plain blocks get small samples too: a prelude lowers the keyword defaults of
``clever_score`` and ``clever_scores`` (a block that passes ``n_batches=`` keeps its own), and every
process runs torch on one thread (on a busy shared CI machine that is faster, not slower).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[2] / "docs"
RUN_PAGES = [] if not DOCS.is_dir() else sorted([DOCS / "tutorial.md", *(DOCS / "how-to").glob("*.md")])
NO_RUN = "<!-- docs: no-run -->"
_FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
#: Samples for the pytest runs of the pages' test modules: enough for a fit, small enough for seconds.
SMALL = ("--clever-n-batches=10", "--clever-batch-size=32")
#: The same small samples for the pages' direct API calls.
PRELUDE = """
import pytest_clever.api as _api
for _f in (_api.clever_score, _api.clever_scores):
    _f.__kwdefaults__.update(n_batches=10, batch_size=32)
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def code_blocks(text: str) -> list[tuple[str, str, bool]]:
    """``(language, body, runs)`` of each fenced block, in page order."""
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1].strip()
        language = match["info"].strip().split(" ")[0]
        body = "\n".join(line.removeprefix(match["indent"]) for line in match["body"].splitlines())
        blocks.append((language, body + "\n", before != NO_RUN))
    return blocks


def _page_script(blocks: list[tuple[str, str, bool]]) -> tuple[dict[str, str], str]:
    """The files a page writes and the Python it runs."""
    files, code = {}, []
    for language, body, runs in blocks:
        if not runs:
            continue
        first, _, rest = body.partition("\n")
        if first.startswith(("# file: ", "; file: ")):
            files[first.split("file: ", 1)[1].strip()] = rest
        elif language == "python":
            code.append(body)
    return files, "\n".join(code)


def test_the_block_reader_finds_runnable_blocks_files_and_shown_only_ones():
    page = (
        "text\n```python\nx = 1\n```\n\n<!-- docs: no-run -->\n```python\nraise SystemExit(1)\n```\n"
        "```python\n# file: test_a.py\ndef test_a():\n    pass\n```\n```bash\nls\n```\n"
        "- item\n\n    ```python\n    y = x + 1\n    ```\n"
    )
    blocks = code_blocks(page)
    assert [(lang, runs) for lang, _, runs in blocks] == [
        ("python", True),
        ("python", False),
        ("python", True),
        ("bash", True),
        ("python", True),
    ]
    files, code = _page_script(blocks)
    assert files == {"test_a.py": "def test_a():\n    pass\n"} and code == "x = 1\n\ny = x + 1\n"


@pytest.mark.slow  # a fresh process and a pytest run per page, about 100 s in all on 2 busy cores: CI runs it
@pytest.mark.parametrize("page", RUN_PAGES, ids=[str(p.relative_to(DOCS)) for p in RUN_PAGES])
def test_the_python_blocks_of_the_page_run(page, tmp_path):
    files, code = _page_script(code_blocks(page.read_text(encoding="utf-8")))
    if not (files or code.strip()):
        pytest.skip(f"{page.name} has no runnable Python block")
    for name, body in files.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    if code.strip():
        ran = subprocess.run(
            [sys.executable, "-c", PRELUDE + code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env=ENV,
        )
        assert ran.returncode == 0, f"{page.name}: its Python blocks failed:\n{ran.stderr[-4000:]}"
    if any(name.startswith("test_") for name in files):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SMALL],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env=ENV,
        )
        assert result.returncode == 0, f"{page.name}: its tests failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
