"""Text views of recorded results: failure messages, the summary table, the JSON document's body.

Works on :class:`~pytest_clever.runs.record.RunRecord` objects, so the pytest
controller can report results from xdist workers without torch. Only the
failure message parses the per-input results (numpy/scipy), and it is built
where the scores were computed anyway. Files are written by ``files``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pytest_clever.core.norms import norm_label, parse_norm
from pytest_clever.core.validation import INTERVAL_KIND_TEXT
from pytest_clever.runs.files import environment
from pytest_clever.runs.gates import POINT_GATE
from pytest_clever.runs.record import RunRecord, sorted_records
from pytest_clever.runs.schema import SCHEMA
from pytest_clever.stats.radius import CAPPED_NOTE, is_capped


def settings_text(record: RunRecord) -> str:
    """The settings a record was scored with, in words: ``L2, radius 1, order 1, 10x16 samples, seed 3``."""
    s = record.settings
    parts = [
        norm_label(s.norm),
        f"radius {s.radius:g}",
        f"order {s.order}",
        f"{s.n_batches}x{s.batch_size} samples" if s.max_batches is None else _rounds_text(record),
        f"seed {s.seed}",
    ]
    if s.targets != "all":
        parts.append(f"minimum over targets {s.targets} only")
    return ", ".join(parts)


def _rounds_text(record: RunRecord) -> str:
    """``rounds of 20 to 1000 batches x 128, precision 0.1, budget 60 s``: the stopping settings of a record."""
    s = record.settings
    text = f"rounds of {s.n_batches} to {s.max_batches} batches x {s.batch_size}"
    if s.precision is not None:
        text += f", precision {s.precision:g}"
    if s.budget is not None:
        text += f", budget {s.budget:g} s"
    return text


def points_used(record: RunRecord) -> list[int]:
    """Sampled points behind each input's score (per target), in input order."""
    return [int(r.get("points") or r["n_batches"] * r["batch_size"]) for r in record.results]


def rounds_lines(records: Iterable[RunRecord]) -> list[str]:
    """One line per call sampled in rounds: why its inputs stopped, the points and the precision they reached;
    and a warning for a gate decision the rounds left unsettled (its verdict then follows ``gate=``)."""
    lines = []
    for r in sorted_records(records):
        if r.settings.max_batches is None:
            continue
        stops: dict[str, int] = {}
        for result in r.results:
            stops[str(result.get("stop_reason"))] = stops.get(str(result.get("stop_reason")), 0) + 1
        reached = [float(x) for result in r.results if (x := result.get("precision_reached")) is not None]
        points = points_used(r)
        text = (
            f"  {r.label}: stopped by "
            + ", ".join(f"{k} {v}" for k, v in sorted(stops.items()))
            + f"; points per input {min(points)}-{max(points)}"
            + (f"; precision reached +-{max(reached):.1%} at worst" if reached else "; precision reached unknown")
        )
        lines.append(text)
        if r.settled is False:
            gate = r.threshold.gate if r.threshold else POINT_GATE
            lines.append(
                f"  WARNING {r.label}: the gate's decision is UNSETTLED (its interval still straddles the bar "
                f"when sampling stopped); the verdict follows gate={gate}"
            )
    return ["CLEVER rounds (precision/budget):", *lines] if lines else []


def fit_quality_text(results: Sequence[Any]) -> str:
    """How many deciding fits were good, weak, or fell back to the sample maximum; how many
    target estimates (Lipschitz or curvature) the samples prove too low.

    ``results`` are :class:`~pytest_clever.stats.results.CleverResult` objects: the
    rules (``TargetScore.weak`` and ``.consistent``) are the engine's.
    """
    from pytest_clever.stats.evt import (  # numpy/scipy: only where results were computed anyway
        CONSTANT_MAXIMA,
        WEAK_PVALUE,
    )

    deciding = [r.per_target[r.target] for r in results]
    good = sum(1 for t in deciding if t.fit_method == "weibull" and not t.weak)
    exact = sum(1 for t in deciding if t.fit_method == "max" and t.fit_reason == CONSTANT_MAXIMA)
    fallback = sum(1 for t in deciding if t.fit_method == "max") - exact
    text = f"{good}/{len(results)} deciding fits with KS p >= {WEAK_PVALUE:g}"
    if exact:
        text += f", {exact} with a constant gradient norm (maximum exact)"
    if fallback:
        text += f", {fallback} fell back to the sample maximum"
    inconsistent = sum(1 for r in results for t in r.per_target.values() if not t.consistent)
    if inconsistent:
        text += f", {inconsistent} target estimate(s) provably too low"
    return text


def _estimate_text(result: Any) -> str:
    """The deciding target's estimate: L (first order), or the curvature M and gradient norm (second)."""
    t = result.per_target[result.target]
    fit = t.fit_method + (f", KS p={t.ks_pvalue:.2g}" if t.fit_method == "weibull" else "")
    if result.order == 2:
        estimate = f"M={t.curvature:.4g}, |grad|={t.gradient_norm:.4g}"
    else:
        estimate = f"L={t.lipschitz:.4g}"
    return f"({estimate}, margin={t.margin:.4g}, fit {fit})"


def worst_lines(report: Any, k: int = 3) -> list[str]:
    """The ``k`` lowest-scoring inputs of a :class:`~pytest_clever.stats.results.CleverReport`."""
    lines = []
    for i in report.worst(k):
        r = report[i]
        lines.append(
            f"  input {i:<4d} score {r.score:.4g}  predicted {r.predicted} -> target {r.target}  {_estimate_text(r)}"
        )
    return lines


def _distortion_text(value: Any) -> str:
    return "none found" if value is None else f"{value:.4g}"


def attack_lines(record: RunRecord, k: int = 3) -> list[str]:
    """Why an attack cross-check failed: each contradicted input with both numbers (none without a check)."""
    attack = record.attack
    if attack is None:
        return []
    checks = attack["checks"]
    contradicted = record.contradicted
    first = checks[0]
    lines = [
        f"CLEVER score contradicted by an adversarial example for {record.label}:",
        (
            f"  {len(contradicted)} of {attack['checked']} input{'s' if attack['checked'] != 1 else ''}: "
            f"PGD found a {norm_label(parse_norm(first['norm']))} distortion below the CLEVER score, which therefore "
            "overestimates the minimal adversarial distortion"
        ),
    ]
    for i in contradicted[:k]:
        c = checks[i]
        lines.append(
            f"    input {i:<4d} PGD distortion {_distortion_text(c['distortion'])} < CLEVER score "
            f"{c['score']:.4g}  (predicted {c['predicted']} -> {c['adversarial_class']})"
        )
    if len(contradicted) > k:
        lines.append(f"    ... and {len(contradicted) - k} more")
    lines.append(
        f"  attack: PGD, {first['steps']} steps, {first['restarts']} restarts, seed {first['seed']}; "
        "raise n_batches/batch_size (or check the model for masked gradients)"
    )
    return lines


def interval_text(record: RunRecord) -> str:
    """``95% interval [lo, hi]`` of the record's gated statistic, or "-" when it has none."""
    if record.interval is None:
        return "-"
    level = f"{record.confidence:.0%} " if record.confidence is not None else ""
    kind = f" ({INTERVAL_KIND_TEXT[record.interval_kind]})" if record.interval_kind in INTERVAL_KIND_TEXT else ""
    return f"{level}interval [{record.interval[0]:.4g}, {record.interval[1]:.4g}]{kind}"


def capped_inputs(record: RunRecord) -> list[int]:
    """Inputs whose score is capped at the radius (:data:`~pytest_clever.stats.radius.CAPPED_NOTE`)."""
    radius = record.settings.radius
    return [i for i, r in enumerate(record.results) if is_capped(float(r["score"]), float(r.get("radius", radius)))]


def capped_gate_text(record: RunRecord) -> str | None:
    """Why a threshold gate was decided by the radius, not the model: every input capped, or the
    gated statistic equal to the radius; None when the gate saw an uncapped score (or there is none)."""
    if record.threshold is None or not record.results:
        return None
    capped = capped_inputs(record)
    if len(capped) < len(record.results) and not is_capped(record.value, record.settings.radius):
        return None
    above = record.threshold.min_score > record.settings.radius
    side, verdict = ("above", "fails") if above else ("at or below", "passes")
    return (
        f"{record.label}: the gate {record.threshold} was decided by capped scores only "
        f"({len(capped)} of {record.n} inputs, {record.threshold.statistic} {record.value:.4g} at radius "
        f"{record.settings.radius:g}): {CAPPED_NOTE}; a min_score {side} the radius {verdict} whatever the model "
        "(raise the radius to see the boundary)"
    )


def capped_text(record: RunRecord) -> str | None:
    """``3 of 10 scores capped at the radius 2 (capped at the radius: ...)``; None when none is."""
    capped = capped_inputs(record)
    if not capped:
        return None
    return (
        f"{len(capped)} of {record.n} score{'s' if record.n != 1 else ''} capped at the radius "
        f"{record.settings.radius:g} (inputs {', '.join(map(str, capped[:8]))}{', ...' if len(capped) > 8 else ''}): "
        f"{CAPPED_NOTE}"
    )


def failure_message(record: RunRecord) -> str:
    """What a failing robustness test prints: statistic vs threshold, where the test made the call
    (``record.location``), worst inputs, settings, fit quality; and, when an attack cross-check
    contradicted scores, the distortions found vs the scores."""
    threshold, verdict = record.threshold, record.verdict()
    lines = []
    if threshold is not None and verdict is not None and not verdict.passed:
        over = f"over {record.n} input{'s' if record.n != 1 else ''}"
        below = record.value < threshold.min_score
        lines += [
            f"CLEVER robustness {'below' if below else 'not significantly above'} threshold for {record.label}:",
            (
                f"  {threshold.statistic} score {record.value:.4g} {'<' if below else '>='} "
                f"min_score {threshold.min_score:g}  ({over})"
            ),
        ]
        if record.interval is not None:
            lines.append(f"  {threshold.statistic}: {interval_text(record)}")
        if threshold.gate != POINT_GATE:
            lines.append(f"  gate {threshold.gate}: {verdict.message}")
        if record.settled is False:
            lines.append(
                f"  decision UNSETTLED: sampling stopped (budget, cap or precision) while the interval still "
                f"straddled the bar; the verdict follows gate={threshold.gate}"
            )
    if record.contradicted:
        lines += attack_lines(record)
    if record.location:  # which call failed, when a test makes several
        lines.insert(1 if lines else 0, f"  where: {record.location}")
    capped = capped_text(record)
    if capped is not None:
        lines.append(f"  capped: {capped}")
    report = record.report()
    lines += [
        f"  settings: {settings_text(record)}",
        "  worst inputs:",
        *["  " + line for line in worst_lines(report)],
        f"  EVT fit: {fit_quality_text(report.results)}",
    ]
    return "\n".join(lines)


def format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, one line per row (the first row is the header)."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _interval_cell(record: RunRecord) -> str:
    """The gated statistic (mean without a threshold) and its interval: ``mean [0.41, 0.52]``."""
    if record.interval is None:
        return "-"
    statistic = record.threshold.statistic if record.threshold else "mean"
    kind = f" ({record.interval_kind})" if record.interval_kind is not None else ""
    return f"{statistic} [{record.interval[0]:.4g}, {record.interval[1]:.4g}]{kind}"


def n_cell(record: RunRecord) -> str:
    """The number of inputs, and how many of their scores are capped at the radius."""
    capped = len(capped_inputs(record))
    return f"{record.n} ({capped} capped)" if capped else str(record.n)


def status_cell(record: RunRecord) -> str:
    """``PASSED``, ``FAILED`` or ``RECORDED``, with ``(attack)`` when the attack contradicted a score."""
    return record.status.upper() + (" (attack)" if record.contradicted else "")


def _points_cell(record: RunRecord) -> str:
    """Sampled points per input (per target): one number, or the range when rounds chose them."""
    points = points_used(record)
    if not points:
        return f"{record.settings.n_batches * record.settings.batch_size}"
    return str(points[0]) if min(points) == max(points) else f"{min(points)}-{max(points)}"


def summary_table(records: Iterable[RunRecord]) -> list[str]:
    """Rows of the end-of-run table, one per recorded call, sorted by test id, name and call index."""
    header = (
        "test",
        "norm",
        "order",
        "targets",
        "n",
        "points",
        "min",
        "mean",
        "median",
        "interval",
        "threshold",
        "status",
    )
    rows = [header]
    for r in sorted_records(records):
        rows.append(
            (
                r.label,
                norm_label(r.settings.norm),
                str(r.settings.order),
                r.settings.targets,
                n_cell(r),
                _points_cell(r),
                f"{r.min:.4g}",
                f"{r.mean:.4g}",
                f"{r.median:.4g}",
                _interval_cell(r),
                str(r.threshold) if r.threshold else "-",
                status_cell(r),
            )
        )
    return format_table(rows)


def notes_lines(records: Iterable[RunRecord]) -> list[str]:
    """One line per recorded call whose results carry notes (weak fits and the like): how many,
    and the first one; the details stay in each result's ``notes`` in the JSON. Then the calls with
    scores capped at the radius (and a warning for a gate those alone decided), and what the intervals are."""
    records = list(records)
    lines = []
    for r in sorted_records(records):
        notes = [(i, note) for i, result in enumerate(r.results) for note in result.get("notes") or ()]
        if notes:
            i, first = notes[0]
            lines.append(f"  {r.label}: {len(notes)} note{'s' if len(notes) != 1 else ''}; first (input {i}): {first}")
    if lines:
        lines.insert(0, "CLEVER fit notes (all of them: each result's 'notes' in --clever-json or a saved run):")
    capped = [(r, capped_text(r), capped_gate_text(r)) for r in sorted_records(records)]
    capped_lines = [f"  {r.label}: {text}" for r, text, _ in capped if text is not None]
    capped_lines += [f"  WARNING {gate}" for _, _, gate in capped if gate is not None]
    if capped_lines:
        lines += ["CLEVER capped scores (a capped score says only 'at least the radius'):", *capped_lines]
    lines += rounds_lines(records)
    kinds = sorted({r.interval_kind for r in records if r.interval_kind is not None})
    if kinds:
        lines.append("CLEVER intervals: " + "; ".join(f"{k} = {INTERVAL_KIND_TEXT[k]}" for k in kinds))
    return lines


def capped_json(record: RunRecord) -> dict[str, Any]:
    """The ``capped`` entry of a record in the ``--clever-json`` document (empty when no score is capped)."""
    capped = capped_inputs(record)
    if not capped:
        return {}
    gate = capped_gate_text(record)
    return {"capped": {"inputs": capped, "note": CAPPED_NOTE, "gate_decided_by_capped_scores": gate is not None}}


def json_document(
    records: Iterable[RunRecord], failures: list[str] | None = None, errors: list[str] | None = None
) -> dict[str, Any]:
    """The ``--clever-json`` document: records sorted by test id, name and call index."""
    records = sorted_records(records)
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        "records": [{**r.to_dict(), **capped_json(r)} for r in records],
        "failed": [r.label for r in records if r.status == "failed"],
        "regressions": failures or [],
        "errors": errors or [],
    }
