"""The run's verdict as one self-contained HTML page: tables, and per test its scores, fits and trend.

The page holds everything inline (CSS and SVG; no script, no link, no font or image fetched), so it opens
offline, from a CI artifact or a mail. Every text from a test id, a model name, a note or a saved run's
metadata is escaped with :func:`html.escape`, so a test id such as ``test_x[<script>]`` shows as text.

Per recorded call: the distribution of its scores over the inputs with the threshold line, the reverse
Weibull fit of the deciding batch maxima for its worst inputs (the data ``pytest-clever plot fit`` draws),
its baseline comparison, and its statistic over the saved runs (the data of ``plot trend``).

Pure Python, like the rest of ``runs``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

from pytest_clever.runs.fields import RecordError
from pytest_clever.runs.plot_data import deciding_fit, trend_series, worst_inputs
from pytest_clever.runs.plots import PALETTE, VLine, histogram_svg, intervals_svg, line_svg
from pytest_clever.runs.report import settings_text
from pytest_clever.runs.verdict import (
    COMPARISON_HEADER,
    SUMMARY_HEADER,
    Verdict,
    comparison_cells,
    headline,
    ordered,
    ordered_comparisons,
    summary_cells,
)

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.runs.compare import Comparison
    from pytest_clever.runs.record import RunRecord

#: How many of a call's lowest-scoring inputs get a fit plot.
FIT_PLOTS = 3
_TREND_STATISTICS = ("min", "mean", "median", "max")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.status-bad { background: #fde2e1; font-weight: bold; }
td.status-warn { background: #fff4d6; }
td.status-good { background: #e3f6e5; }
section.test { border-top: 2px solid #ddd; margin-top: 1.5em; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
svg.plot { border: 1px solid #eee; background: #fff; }
p.problem { color: #a40000; }
code { font-size: 12px; }
"""


def _status_class(status: str) -> str:
    upper = status.upper()
    if "REGRESSED" in upper or "FAILED" in upper or "ATTACK" in upper:
        return "status-bad"
    if "NOT COMPARABLE" in upper or "MISSING" in upper or "NOT RUN" in upper:
        return "status-warn"
    return "status-good" if upper.startswith(("PASSED", "OK")) else ""


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], links: list[str | None] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            inner = escape(value)
            if j == 0 and links and links[k]:
                inner = f'<a href="#{links[k]}">{inner}</a>'
            css = f' class="{_status_class(value)}"' if j == len(row) - 1 else ""
            cells.append(f"<td{css}>{inner}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _distribution(record: RunRecord) -> str:
    scores = [float(r["score"]) for r in record.results]
    statistic = record.threshold.statistic if record.threshold else "mean"
    lines = [VLine(record.value, f"{statistic} {record.value:.4g}", PALETTE[2], "")]
    if record.threshold is not None:
        lines.append(VLine(record.threshold.min_score, f"min_score {record.threshold.min_score:g}", PALETTE[1]))
    if record.interval is not None:
        lines += [
            VLine(b, f"interval {which} {b:.4g}", PALETTE[3], "2 2")
            for which, b in zip("lo hi".split(), record.interval, strict=True)
        ]
    return histogram_svg(scores, title="scores over the inputs", xlabel="CLEVER score", lines=lines)


def _fit(record: RunRecord, i: int) -> str:
    try:
        fit = deciding_fit(record.results[i], f"input {i}")
    except RecordError as exc:
        return f'<p class="problem">no fit plot: {escape(str(exc))}</p>'
    lines = [
        VLine(fit.estimate, f"estimate {fit.estimate:.4g} ({fit.method})", "#000000"),
        VLine(max(fit.maxima), f"sample max {max(fit.maxima):.4g}", PALETTE[2], "1 3"),
    ]
    curve: list[tuple[float, float]] = []
    label = ""
    if fit.shape is not None:
        lo = min(fit.maxima) - 0.1 * (max(fit.maxima) - min(fit.maxima))
        grid = [lo + (fit.estimate - lo) * k / 199 for k in range(200)]
        curve = list(zip(grid, fit.density(grid), strict=True))
        ks = f", KS p={fit.ks_pvalue:.2g}" if fit.ks_pvalue is not None else ""
        label = f"reverse Weibull (c={fit.shape:.3g}{ks})"
    score = float(record.results[i]["score"])
    title = f"input {i}: score {score:.4g}, target {fit.target}"
    return histogram_svg(fit.maxima, title=title, xlabel=fit.quantity, lines=lines, curve=curve, curve_label=label)


def record_plots(record: RunRecord, fits: int = 1) -> str:
    """One recorded call's score distribution and the fits of its ``fits`` worst inputs, as one HTML block
    (the pytest-html extra of its test); empty when the record keeps no per-input results."""
    if not record.results:
        return ""
    plots = [_distribution(record), *(_fit(record, i) for i in worst_inputs(record, fits))]
    return f'<div class="clever"><p>{escape(record.label)}</p>{"".join(plots)}</div>'


def _trend(record: RunRecord, verdict: Verdict) -> str:
    statistic = record.threshold.statistic if record.threshold else "mean"
    statistic = statistic if statistic in _TREND_STATISTICS else "mean"
    series = {
        label: points
        for label, points in trend_series(verdict.history, statistic, record.nodeid, record.name).items()
        if label == record.label
    }
    points = series.get(record.label, [])
    if len(points) < 2:
        runs = f"{len(points)} run{'s' if len(points) != 1 else ''}"
        return f"<p>Trend over runs: {runs} with this call; two make a line.</p>"
    # A run id starts with its UTC time, 20261206T105729...: the label keeps month, day, hour and minute.
    labels = [f"{run.name} {run.id[4:8]}-{run.id[9:13]}" if run.id else run.name for run in verdict.history]
    return line_svg(series, labels, title=f"{statistic} over saved runs", ylabel=f"{statistic} score")


def _comparison(c: Comparison | None) -> str:
    if c is None:
        return ""
    cells = dict(zip(COMPARISON_HEADER, comparison_cells(c), strict=True))
    text = "; ".join(f"{k}: {v}" for k, v in cells.items() if k != "test")
    out = f"<p>Baseline: {escape(text)}</p>"
    out += "".join(f"<p>{escape(reason)}</p>" for reason in c.reasons)
    return out + "".join(f"<p>note: {escape(note)}</p>" for note in c.notes)


def _test_section(k: int, record: RunRecord, comparison: Comparison | None, verdict: Verdict) -> str:
    parts = [f'<section class="test" id="test-{k}"><h3>{escape(record.label)}</h3>']
    parts.append(f"<p>{escape(settings_text(record))}; threshold {escape(str(record.threshold or '-'))}</p>")
    parts.append(_comparison(comparison))
    if record.results:
        plots = [_distribution(record), *(_fit(record, i) for i in worst_inputs(record, FIT_PLOTS))]
        parts.append('<div class="plots">' + "".join(plots) + "</div>")
    else:
        parts.append("<p>This record keeps no per-input results: no plots.</p>")
    parts.append(_trend(record, verdict))
    notes = [(i, note) for i, r in enumerate(record.results) for note in r.get("notes") or ()]
    if notes:
        items = "".join(f"<li>input {i}: {escape(note)}</li>" for i, note in notes)
        parts.append(f"<details><summary>{len(notes)} fit notes</summary><ul>{items}</ul></details>")
    return "".join(parts) + "</section>"


def _comparison_section(verdict: Verdict) -> str:
    baseline = verdict.baseline
    if baseline is None:
        return ""
    commit = (baseline.git.get("commit") or "")[:10]
    name = f"{baseline.name} ({baseline.id}{', ' + commit if commit else ''})"
    comparisons = ordered_comparisons(verdict.comparisons)
    parts = [f"<h2>Compared with baseline {escape(name)}</h2>"]
    parts.append(_table(COMPARISON_HEADER, [comparison_cells(c) for c in comparisons]))
    rows = [(c.label, d, c.intervals.get("mean")) for c in comparisons if (d := c.delta("mean")) is not None]
    if rows:
        parts.append(intervals_svg(rows, title="change of the mean score, with its interval", xlabel="Δ mean"))
    if verdict.regressions:
        parts.append("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in verdict.regressions) + "</ul>")
    return "".join(parts)


def html_report(verdict: Verdict) -> str:
    """The whole page, as text."""
    pairs = ordered(verdict)
    about = [("written", datetime.now(UTC).isoformat(timespec="seconds")), *verdict.about]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(verdict.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(verdict.title)}</h1>",
        f'<p id="headline"><strong>{escape(headline(verdict))}</strong></p>',
        "<ul>" + "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in about) + "</ul>",
    ]
    parts += [f'<p class="problem">{escape(p)}</p>' for p in verdict.problems]
    if pairs:
        links: list[str | None] = [f"test-{k}" for k in range(len(pairs))]
        parts.append(_table(SUMMARY_HEADER, [summary_cells(r, c) for r, c in pairs], links))
    else:
        parts.append("<p>No test recorded a CLEVER score in this run.</p>")
    parts.append(_comparison_section(verdict))
    parts += [_test_section(k, r, c, verdict) for k, (r, c) in enumerate(pairs)]
    parts.append("</body></html>\n")
    return "\n".join(parts)
