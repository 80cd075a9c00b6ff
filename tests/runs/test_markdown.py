"""The markdown job summary, checked by parsing it as GitHub-flavoured markdown (markdown-it-py's tables)."""

import pytest

from pytest_clever.runs.compare import compare_records
from pytest_clever.runs.markdown import cell, markdown_summary
from pytest_clever.runs.rules import ChangeRule
from pytest_clever.runs.verdict import SUMMARY_HEADER, Verdict

from .report_records import saved_run, scored_record

markdown_it = pytest.importorskip("markdown_it")


def _parser():
    return markdown_it.MarkdownIt("commonmark").enable("table")


def _tables(text: str) -> list[list[list[str]]]:
    """Each table's rows (header first) as lists of the cells' inline source."""
    tables, rows, row, in_cell = [], None, None, False
    for token in _parser().parse(text):
        if token.type == "table_open":
            rows = []
        elif token.type == "table_close":
            tables.append(rows)
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            rows.append(row)
        elif token.type in ("th_open", "td_open"):
            in_cell = True
        elif token.type == "inline" and in_cell:
            row.append(token.content)
            in_cell = False
    return tables


def _rendered_cells(text: str) -> list[list[str]]:
    """The first table's body cells as the text a reader sees (markdown-it's rendering of each inline)."""
    md = _parser()
    tokens = md.parse(text)
    rows, row = [], None
    for k, token in enumerate(tokens):
        if token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            rows.append(row)
        elif token.type == "inline" and row is not None and tokens[k - 1].type in ("td_open", "th_open"):
            row.append(md.renderer.render(token.children, md.options, {}))
        elif token.type == "table_close":
            break
    return rows[1:]


def _baseline_and_now():
    """Three tests; b lost 40% of its mean against the baseline, c failed its own bar."""
    before = [
        scored_record("t.py::a", [0.50, 0.52, 0.54]),
        scored_record("t.py::b", [0.50, 0.52, 0.54]),
        scored_record("t.py::c", [0.50, 0.52, 0.54]),
    ]
    now = [
        scored_record("t.py::a", [0.50, 0.52, 0.54], min_score=0.1, status="passed"),
        scored_record("t.py::b", [0.30, 0.31, 0.32], min_score=0.1, status="passed"),
        scored_record("t.py::c", [0.50, 0.52, 0.54], min_score=0.9, status="failed"),
    ]
    return before, now


def test_one_row_per_record_and_a_regression_at_the_top_then_the_failure():
    before, now = _baseline_and_now()
    comparisons = compare_records(now, before, [ChangeRule.parse("mean:10%")])
    regressions = tuple(f"{c.label}: {r}" for c in comparisons for r in c.reasons if c.status == "regressed")
    baseline = saved_run(before, git={"commit": "0123456789abcdef"})
    text = markdown_summary(Verdict(tuple(now), tuple(comparisons), regressions, baseline))
    assert "### Compared with baseline main (20261206T000000000000Z-abcdef, 0123456789)" in text
    summary, comparison = _tables(text)
    assert summary[0] == list(SUMMARY_HEADER)
    body = summary[1:]
    assert len(body) == 3 and all(len(row) == len(SUMMARY_HEADER) for row in body)
    assert [row[0] for row in body] == [r"t.py::b", r"t.py::c", r"t.py::a"]
    assert body[0][-1] == "PASSED, REGRESSED" and body[1][-1] == "FAILED" and body[2][-1] == "PASSED"
    assert body[0][5] == "mean 0.31" and body[0][6] == r"95% \[0.3038, 0.3162\] (estimator)"
    assert body[0][7] == "mean&gt;=0.1"
    # The comparison: the regression first, its delta -0.21 with the paired interval.
    assert [row[0] for row in comparison[1:]] == ["t.py::b", "t.py::a", "t.py::c"]
    assert comparison[1][3].startswith("-0.21 \\[") and comparison[1][-1] == "REGRESSED"
    assert "**1 regressed against the baseline" not in text  # the headline is one bold sentence
    assert "**3 recorded calls, 1 regressed against the baseline, 1 failed**" in text
    # Details are folded, with the reason of the regression.
    folded = text[text.index("<details>") :]
    assert "mean dropped 0.52 -&gt; 0.31" in folded and folded.rstrip().endswith("</details>")


@pytest.mark.parametrize(
    "nodeid",
    [
        "t.py::test_x[a|b]",
        "t.py::test_x[<script>alert(1)</script>]",
        "t.py::test_x[line\nbreak]",
        "t.py::test_x[ünïcödé ✓ `tick` *bold* _u_ \\ &amp;]",
    ],
)
def test_a_hostile_test_id_stays_in_its_cell_and_shows_as_text(nodeid):
    records = (scored_record(nodeid, [0.5, 0.6]), scored_record("t.py::z", [0.5, 0.6]))
    text = markdown_summary(Verdict(records))
    rows = _rendered_cells(text)
    assert len(rows) == 2 and all(len(row) == len(SUMMARY_HEADER) for row in rows)
    expected = nodeid.replace("\n", "\\n")
    import html

    assert html.unescape(rows[0][0]) == expected  # what the reader sees is the id itself
    rendered = _parser().render(text)
    assert "<script>" not in rendered and "<b>" not in rendered


def test_cell_escapes_control_characters_and_markup():
    assert cell("a|b") == r"a\|b"
    assert cell("x\r\ny\tz") == r"x\\r\\ny\\tz"
    assert cell("<i>") == "&lt;i&gt;"
    assert cell("") == "-"


def test_a_run_without_records_says_so():
    text = markdown_summary(Verdict(()))
    assert "No test recorded a CLEVER score in this run." in text and "<table" not in text
    assert "**0 recorded calls, no gate failed or regressed**" in text
