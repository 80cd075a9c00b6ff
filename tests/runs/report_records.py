"""Records with per-input results (scores, intervals, deciding fits, batch maxima) for the report tests."""

from __future__ import annotations

from pathlib import Path

from pytest_clever.runs.record import RunRecord
from pytest_clever.runs.storage import SavedRun

from .records import make_record_dict

#: The reverse Weibull of every fake deciding fit: end point 1.0 (``-loc``), shape 3, scale 0.1.
FIT = {"shape": 3.0, "loc": -1.0, "scale": 0.1}


def result_dict(score: float, i: int, notes=(), fit_method: str = "weibull") -> dict:
    """One input's saved result: its score and interval, a deciding fit for target 1, ten batch maxima."""
    fit = {
        "target": 1,
        "score": score,
        "margin": score,
        "lipschitz": 1.0,
        "fit_method": fit_method,
        "ks_pvalue": 0.5 if fit_method == "weibull" else None,
        **(FIT if fit_method == "weibull" else {"shape": None, "loc": None, "scale": None}),
    }
    return {
        "score": score,
        "target": 1,
        "predicted": 0,
        "order": 1,
        "radius": 1.0,
        "per_target": {"1": fit},
        "batch_maxima": [0.90 + 0.008 * k for k in range(10)],
        "notes": list(notes),
        "interval": [score * 0.98, score * 1.02],
        "confidence": 0.95,
        "fingerprint": f"input-{i}",
    }


def scored_record(
    nodeid: str, scores, *, name=None, min_score=None, status="recorded", notes=(), **settings
) -> RunRecord:
    """A record of ``scores`` (one per input), gated on the mean by ``min_score`` when given."""
    results = [result_dict(s, i, notes if i == 0 else ()) for i, s in enumerate(scores)]
    data = make_record_dict(nodeid, name=name, results=results, **settings)
    mean = sum(scores) / len(scores)
    ordered = sorted(scores)
    data.update(
        n=len(scores),
        min=ordered[0],
        max=ordered[-1],
        mean=mean,
        median=ordered[len(ordered) // 2],
        value=mean,
        status=status,
        interval=[mean * 0.98, mean * 1.02],
        confidence=0.95,
        interval_kind="estimator",
    )
    if min_score is not None:
        data["threshold"] = {"statistic": "mean", "min_score": min_score}
    return RunRecord.from_dict(data)


def saved_run(records, name: str = "main", run_id: str = "20261206T000000000000Z-abcdef", git=None) -> SavedRun:
    """A saved run holding ``records``, as ``Storage.find`` returns one."""
    return SavedRun(Path(f"{run_id}.json"), run_id, name, "2026-12-06T00:00:00+00:00", git or {}, {}, tuple(records))
