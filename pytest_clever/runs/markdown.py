"""The run's verdict as GitHub-flavoured markdown, for a CI job summary (``$GITHUB_STEP_SUMMARY``).

A headline, one table row per recorded call (regressions and failures first), the baseline comparison with
deltas and their intervals, and the details (regression reasons, worst inputs, fit notes) folded under
``<details>``. Every text that comes from a test id, a model name or a saved run goes through
:func:`cell` or :func:`text`: pipes and newlines cannot break a table, and HTML in a test id shows as text.

Pure Python, like the rest of ``runs``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

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

# CommonMark lets a backslash escape any ASCII punctuation; these are the ones that start markup inline.
_MARKUP = re.compile(r"([\\`*_\[\]|#~!])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text(value: str) -> str:
    """``value`` as literal markdown text: markup escaped, ``<``/``>``/``&`` as entities, and newlines and
    other control characters shown as escapes (``\\n``), so one value stays on one line."""
    visible = _CONTROL.sub(lambda m: repr(m.group())[1:-1], value)
    return _MARKUP.sub(r"\\\1", escape(visible, quote=False))


def cell(value: str) -> str:
    """``value`` for a table cell (:func:`text`; an empty cell shows "-")."""
    return text(value) if value else "-"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GFM pipe table; every cell escaped."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def _details(verdict: Verdict) -> list[str]:
    """The folded part: regression reasons, problems, then per call its worst inputs and fit notes."""
    lines = []
    for reason in verdict.regressions:
        lines.append(f"- **regression**: {text(reason)}")
    for problem in verdict.problems:
        lines.append(f"- **problem**: {text(problem)}")
    for c in verdict.comparisons:
        lines += [f"- {text(c.label)}: {text(reason)}" for reason in c.reasons if c.status != "regressed"]
        lines += [f"- {text(c.label)}: note: {text(note)}" for note in c.notes]
    for record, _ in ordered(verdict):
        scores = sorted((float(r["score"]), i) for i, r in enumerate(record.results))
        if not scores:
            continue
        worst = ", ".join(f"input {i}: {s:.4g}" for s, i in scores[:3])
        notes = [note for r in record.results for note in r.get("notes") or ()]
        line = f"- {text(record.label)}: worst inputs {worst}"
        if notes:
            line += f"; {len(notes)} fit note{'s' if len(notes) != 1 else ''}, first: {text(notes[0])}"
        lines.append(line)
    return lines


def markdown_summary(verdict: Verdict) -> str:
    """The section appended to the job summary (ends with a newline)."""
    lines = [f"## {text(verdict.title)}", "", f"**{text(headline(verdict))}**", ""]
    lines += [f"- {text(label)}: {text(value)}" for label, value in verdict.about]
    if verdict.about:
        lines.append("")
    if verdict.records:
        lines += table(SUMMARY_HEADER, [summary_cells(r, c) for r, c in ordered(verdict)])
    else:
        lines.append("No test recorded a CLEVER score in this run.")
    lines.append("")
    if verdict.baseline is not None:
        commit = (verdict.baseline.git.get("commit") or "")[:10]
        name = f"{verdict.baseline.name} ({verdict.baseline.id}{', ' + commit if commit else ''})"
        lines += [f"### Compared with baseline {text(name)}", ""]
        lines += table(COMPARISON_HEADER, [comparison_cells(c) for c in ordered_comparisons(verdict.comparisons)])
        lines.append("")
    details = _details(verdict)
    if details:
        # The blank lines around the body let GitHub render it as markdown inside the HTML element.
        lines += [
            "<details><summary>Details: reasons, worst inputs, fit notes</summary>",
            "",
            *details,
            "",
            "</details>",
        ]
        lines.append("")
    return "\n".join(lines) + "\n"
