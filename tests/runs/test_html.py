"""The HTML report: one offline page, rows in verdict order, plots per test, and no HTML from names or metadata."""

from html.parser import HTMLParser

from pytest_clever.runs.compare import compare_records
from pytest_clever.runs.html import FIT_PLOTS, html_report
from pytest_clever.runs.rules import ChangeRule
from pytest_clever.runs.verdict import Verdict

from .report_records import saved_run, scored_record


class _Page(HTMLParser):
    """The tags, the summary table's rows and the plots' sizes of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.svgs: list[dict] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "svg":
            self.svgs.append(dict(attrs))
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _verdict(nodeid_b="t.py::b", baseline_name="main"):
    before = [scored_record("t.py::a", [0.5, 0.52, 0.54, 0.56]), scored_record(nodeid_b, [0.5, 0.52, 0.54, 0.56])]
    now = [
        scored_record("t.py::a", [0.5, 0.52, 0.54, 0.56], min_score=0.1, status="passed"),
        scored_record(nodeid_b, [0.3, 0.31, 0.32, 0.33], min_score=0.1, status="passed", notes=["weak <fit>"]),
    ]
    comparisons = compare_records(now, before, [ChangeRule.parse("mean:10%")])
    regressions = tuple(f"{c.label}: {r}" for c in comparisons for r in c.reasons if c.status == "regressed")
    history = (saved_run(before, run_id="20261201T000000000000Z-aaaaaa"), saved_run(now, run_id="20261202T0000Z-b"))
    baseline = saved_run(before, name=baseline_name, git={"commit": "<b>commit</b>"})
    return Verdict(tuple(now), tuple(comparisons), regressions, baseline, history=history)


def test_the_summary_puts_the_regression_first_and_every_test_gets_its_plots():
    page = _Page(html_report(_verdict()))
    summary, comparison = page.tables
    assert [row[0] for row in summary[1:]] == ["t.py::b", "t.py::a"]
    assert summary[1][-1] == "PASSED, REGRESSED" and summary[2][-1] == "PASSED"
    assert [row[0] for row in comparison[1:]] == ["t.py::b", "t.py::a"] and comparison[1][-1] == "REGRESSED"
    # Per test: the score distribution, a fit for each of its 3 worst inputs, and the trend over 2 saved runs;
    # and one chart of the deltas with their intervals in the comparison.
    per_test = 1 + FIT_PLOTS + 1
    assert len(page.svgs) == 2 * per_test + 1
    assert all(int(svg["width"]) > 0 and int(svg["height"]) > 0 for svg in page.svgs)
    labels = [svg["aria-label"] for svg in page.svgs]
    assert labels.count("scores over the inputs") == 2 and labels.count("mean over saved runs") == 2
    assert labels.count("input 0: score 0.3, target 1") == 1  # b's worst input
    assert labels[0] == "change of the mean score, with its interval"


def test_the_page_fetches_nothing_and_runs_no_script():
    text = html_report(_verdict())
    page = _Page(text)
    assert not {"script", "img", "link", "iframe", "object", "embed"} & set(page.tags)
    for fetch in ("src=", "http://", "https://", "@import", "url("):
        assert fetch not in text.replace('xmlns="http://www.w3.org/2000/svg"', ""), fetch


def test_a_hostile_test_id_and_saved_metadata_show_as_text():
    hostile = "t.py::test_x[<script>alert(1)</script>|\nü\"'&]"
    text = html_report(_verdict(nodeid_b=hostile, baseline_name="<img src=x onerror=alert(2)>"))
    page = _Page(text)
    assert not {"script", "img"} & set(page.tags)
    assert "<script>" not in text and "<img" not in text and "<b>commit" not in text
    assert page.tables[0][1][0] == hostile  # the cell's text is the id, character for character
    shown = "".join(page.text)
    assert "<img src=x onerror=alert(2)>" in shown and "weak <fit>" in shown


def test_a_record_without_results_or_fits_says_why_instead_of_a_plot():
    record = scored_record("t.py::a", [0.5, 0.6])
    bare = Verdict((type(record)(**{**record.__dict__, "results": ()}),))
    assert "This record keeps no per-input results: no plots." in html_report(bare)
    old = scored_record("t.py::a", [0.5, 0.6])
    for result in old.results:
        result["batch_maxima"] = []
    text = html_report(Verdict((old,)))
    assert "no fit plot: input 0: this result has no batch maxima saved (older run file)" in text
