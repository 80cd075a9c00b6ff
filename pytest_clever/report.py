"""Text and JSON views of recorded results: failure messages, the summary table, the JSON document.

Works on plain record dicts (as produced by ``fixture.make_record``), so the
pytest controller can report results from xdist workers without torch.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Iterable

#: Version of the JSON document layout written by --clever-json.
JSON_SCHEMA = 1


def _norm_text(norm: Any) -> str:
    return {"1": "L1", "2": "L2", "inf": "Linf"}.get(str(norm), str(norm))


def record_label(record: dict[str, Any]) -> str:
    """``nodeid`` plus ``[name]`` when the test named its model."""
    name = record.get("name")
    return f"{record['nodeid']} [{name}]" if name else record["nodeid"]


def settings_text(record: dict[str, Any]) -> str:
    s = record["settings"]
    parts = [
        _norm_text(s["norm"]),
        f"radius {s['radius']:g}",
        f"order {s['order']}",
        f"{s['n_batches']}x{s['batch_size']} samples",
        f"seed {s['seed']}",
    ]
    if s.get("target") is not None:
        parts.append(f"target {s['target']}")
    return ", ".join(parts)


def fit_quality_text(results: list[dict[str, Any]]) -> str:
    """How many deciding fits were good, weak, or fell back to the sample maximum."""
    from .evt import CONSTANT_MAXIMA  # numpy/scipy: only where results were computed anyway
    from .results import CONSISTENCY_SLACK

    deciding = [r["per_target"][str(r["target"])] for r in results]
    good = sum(1 for t in deciding if t["fit_method"] == "weibull" and (t["ks_pvalue"] or 0) >= 0.05)
    exact = sum(1 for t in deciding if t["fit_method"] == "max" and t.get("fit_reason") == CONSTANT_MAXIMA)
    fallback = sum(1 for t in deciding if t["fit_method"] == "max") - exact
    text = f"{good}/{len(results)} deciding fits with KS p >= 0.05"
    if exact:
        text += f", {exact} with a constant gradient norm (maximum exact)"
    if fallback:
        text += f", {fallback} fell back to the sample maximum"
    inconsistent = sum(
        1
        for r in results
        for t in r["per_target"].values()
        if (t["lipschitz_lower_bound"] or 0) > (t["lipschitz"] or 0) * (1 + CONSISTENCY_SLACK)
    )
    if inconsistent:
        text += f", {inconsistent} target estimate(s) provably too low"
    return text


def worst_lines(results: list[dict[str, Any]], k: int = 3) -> list[str]:
    order = sorted(range(len(results)), key=lambda i: (results[i]["score"], i))[:k]
    lines = []
    for i in order:
        r = results[i]
        t = r["per_target"][str(r["target"])]
        fit = t["fit_method"] + (f", KS p={t['ks_pvalue']:.2g}" if t["fit_method"] == "weibull" else "")
        lines.append(
            f"  input {i:<4d} score {r['score']:.4g}  predicted {r['predicted']} -> target {r['target']}  "
            f"(L={t['lipschitz']:.4g}, margin={t['margin']:.4g}, fit {fit})"
        )
    return lines


def _distortion_text(value: Any) -> str:
    return "none found" if value is None else f"{value:.4g}"


def attack_lines(record: dict[str, Any], k: int = 3) -> list[str]:
    """Why an attack cross-check failed: each contradicted input with both numbers."""
    attack = record["attack"]
    checks = attack["checks"]
    contradicted = attack["contradicted"]
    first = checks[0]
    lines = [
        f"CLEVER score contradicted by an adversarial example for {record_label(record)}:",
        f"  {len(contradicted)} of {attack['checked']} input{'s' if attack['checked'] != 1 else ''}: "
        f"PGD found a {_norm_text(first['norm'])} distortion below the CLEVER score, which therefore "
        "overestimates the minimal adversarial distortion",
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


def failure_message(record: dict[str, Any]) -> str:
    """What a failing robustness test prints: statistic vs threshold, worst inputs, settings, fit
    quality; and, when an attack cross-check contradicted scores, the distortions found vs the scores."""
    threshold = record["threshold"]
    attack = record.get("attack")
    lines = []
    if threshold is not None and record["value"] < threshold["min_score"]:
        lines += [
            f"CLEVER robustness below threshold for {record_label(record)}:",
            f"  {threshold['statistic']} score {record['value']:.4g} < min_score {threshold['min_score']:g}"
            f"  (over {record['n']} input{'s' if record['n'] != 1 else ''})",
        ]
    if attack and attack["contradicted"]:
        lines += attack_lines(record)
    lines += [
        f"  settings: {settings_text(record)}",
        "  worst inputs:",
        *["  " + line for line in worst_lines(record["results"])],
        f"  EVT fit: {fit_quality_text(record['results'])}",
    ]
    return "\n".join(lines)


def format_table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns two spaces apart, one line per row (the first row is the header)."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def summary_table(records: Iterable[dict[str, Any]]) -> list[str]:
    """Rows of the end-of-run table, one per recorded test/model."""
    header = ("test", "norm", "order", "n", "min", "mean", "median", "threshold", "status")
    rows = [header]
    for r in records:
        threshold = r.get("threshold")
        rows.append(
            (
                record_label(r),
                _norm_text(r["settings"]["norm"]),
                str(r["settings"]["order"]),
                str(r["n"]),
                f"{r['min']:.4g}",
                f"{r['mean']:.4g}",
                f"{r['median']:.4g}",
                f"{threshold['statistic']}>={threshold['min_score']:g}" if threshold else "-",
                r["status"].upper() + (" (attack)" if (r.get("attack") or {}).get("contradicted") else ""),
            )
        )
    return format_table(rows)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Versions and machine facts worth keeping next to scores (no torch import)."""
    return {
        "pytest_clever": _version("pytest-clever"),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def json_document(records: list[dict[str, Any]], failures: list[str] | None = None) -> dict[str, Any]:
    return {
        "schema": JSON_SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "records": records,
        "failed": [record_label(r) for r in records if r["status"] == "failed"],
        "regressions": failures or [],
    }


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a unique temp file in the same folder, then rename.

    Readers see the old file or the new one, never a half-written one.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".clever-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json(path: str | os.PathLike, document: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=False) + "\n")
