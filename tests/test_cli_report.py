"""``pytest-clever report``: the HTML report and markdown summary of a saved run, from the command line."""

import pytest

from pytest_clever.cli import main
from pytest_clever.runs.storage import Storage

from .runs.report_records import scored_record

pytestmark = pytest.mark.usefixtures("no_git")


@pytest.fixture
def store(tmp_path):
    """Three saved runs of t.py::test_gate: 'main' twice (mean 0.52 then 0.51) and 'feature' (mean 0.31)."""
    store = Storage(tmp_path / "runs")
    for name, scores in (("main", [0.5, 0.52, 0.54]), ("main", [0.49, 0.51, 0.53]), ("feature", [0.3, 0.31, 0.32])):
        store.save([scored_record("t.py::test_gate", scores, name="<i>net</i>")], name)
    return store


def run(store, *args):
    return main(["--storage", str(store.root), *args])


def test_report_writes_the_page_with_the_trend_and_the_regression(store, tmp_path, capsys):
    page, summary = tmp_path / "report.html", tmp_path / "summary.md"
    code = run(
        store,
        "report",
        "feature",
        "--baseline",
        "main",
        "--fail",
        "mean:10%",
        "--html",
        str(page),
        "--md",
        str(summary),
    )
    assert code == 1  # a regression past --fail, as in compare
    assert capsys.readouterr().out.splitlines() == [f"wrote {page}", f"wrote {summary}"]
    text = page.read_text()
    assert "t.py::test_gate [&lt;i&gt;net&lt;/i&gt;]" in text and "<i>net" not in text
    assert (
        'aria-label="mean over saved runs"' in text and text.count("</circle>") == 3
    )  # the trend: 3 runs, a titled point each
    assert "Compared with baseline main (" in text and "REGRESSED" in text
    md = summary.read_text()
    assert "| t.py::test\\_gate \\[&lt;i&gt;net&lt;/i&gt;\\] | L2 | 1 |" in md and "PASSED" not in md
    assert "**1 recorded call, 1 regressed against the baseline**" in md


def test_the_trend_stops_at_the_run_reported(store, tmp_path):
    first = store.runs()[0][0]
    assert run(store, "report", first.id, "--html", str(tmp_path / "r.html")) == 0
    text = (tmp_path / "r.html").read_text()
    assert "Trend over runs: 1 run with this call; two make a line." in text and "<circle" not in text


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "report: give --html PATH, --md PATH or both"),
        (["--html", ""], "--html: give a file name, e.g. report.html (got an empty name)"),
        (["--md", "{tmp}"], "is a folder; give a file name such as"),
        (["--html", "{tmp}/missing/r.html"], "--html: folder {tmp}/missing does not exist"),
        (["--html", "{tmp}/r.html", "--baseline", "feature"], "is run"),
        (["--html", "{tmp}/r.html", "--baseline", "main", "--fail", ""], "--fail '' holds no rule"),
    ],
)
def test_bad_report_arguments_are_errors_before_any_work(store, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    assert run(store, "report", "feature", *args) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
