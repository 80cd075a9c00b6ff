"""What the plots of saved results show, read from records: the deciding fit of one input, and trends over runs.

One data path for every picture: ``pytest-clever plot fit`` / ``plot trend`` (PNG, matplotlib) and the
HTML report (SVG, :mod:`.plots`) read the same fields through these functions, so a record that lacks a
field is named the same way everywhere.

Pure Python: the reverse Weibull density is written out here, so the pytest controller can draw the
HTML report without scipy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_clever.runs.fields import RecordError

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.runs.record import RunRecord
    from pytest_clever.runs.storage import SavedRun


@dataclass(frozen=True)
class DecidingFit:
    """The fit that decided one input's score: the batch maxima and what was fitted to them.

    ``estimate`` is the end point the score used (a Lipschitz constant in first order, a curvature bound in
    second order); ``shape``, ``loc`` and ``scale`` are the reverse Weibull parameters in scipy's
    ``weibull_min`` convention on the negated maxima (None unless ``method`` is ``"weibull"``).
    """

    target: int
    order: int
    method: str
    estimate: float
    maxima: tuple[float, ...]
    shape: float | None = None
    loc: float | None = None
    scale: float | None = None
    ks_pvalue: float | None = None

    @property
    def quantity(self) -> str:
        """What the maxima are maxima of, for an axis label."""
        return "largest curvature in a batch" if self.order == 2 else "largest gradient norm in a batch"

    def density(self, xs: Iterable[float]) -> list[float]:
        """The fitted reverse Weibull density at ``xs`` (zero past the end point); empty without a fit."""
        if self.shape is None or self.loc is None or self.scale is None:
            return []
        return [reverse_weibull_pdf(x, self.shape, self.loc, self.scale) for x in xs]


def reverse_weibull_pdf(x: float, shape: float, loc: float, scale: float) -> float:
    """``scipy.stats.weibull_min.pdf(-x, shape, loc, scale)``: the density of batch maxima ``x`` whose
    negation follows a Weibull law; its support ends at ``-loc``, the estimated end point."""
    z = (-x - loc) / scale
    if z <= 0 or scale <= 0:
        return 0.0
    return shape / scale * z ** (shape - 1) * math.exp(-(z**shape))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def deciding_fit(result: Mapping[str, Any], where: str) -> DecidingFit:
    """The deciding target's fit of one saved result (``CleverResult.to_dict()``).

    Raises :class:`~pytest_clever.runs.fields.RecordError` naming ``where`` and the missing field, e.g.
    for a run file written before batch maxima were kept.
    """
    per_target = result.get("per_target")
    fit = per_target.get(str(result.get("target"))) if isinstance(per_target, dict) else None
    if not isinstance(fit, dict):
        raise RecordError(f"{where}: no fit saved for its deciding target (fields 'target' and 'per_target')")
    order = int(result.get("order") or 1)
    estimate = _number(fit.get("curvature") if order == 2 else fit.get("lipschitz"))
    method = fit.get("fit_method")
    if not isinstance(method, str) or estimate is None:
        lacking = "curvature" if order == 2 else "lipschitz"
        raise RecordError(f"{where}: the deciding target's fit lacks fit_method or {lacking}")
    maxima = result.get("batch_maxima") or []
    if not maxima:
        raise RecordError(f"{where}: this result has no batch maxima saved (older run file)")
    params = [_number(fit.get(k)) for k in ("shape", "loc", "scale")]
    weibull = method == "weibull" and all(p is not None for p in params)
    return DecidingFit(
        target=int(result["target"]),
        order=order,
        method=method,
        estimate=estimate,
        maxima=tuple(float(m) for m in maxima),
        shape=params[0] if weibull else None,
        loc=params[1] if weibull else None,
        scale=params[2] if weibull else None,
        ks_pvalue=_number(fit.get("ks_pvalue")),
    )


def matching(records: Iterable[RunRecord], test: str, name: str | None = None) -> list[RunRecord]:
    """The records whose test id contains ``test`` (and whose ``name=`` is ``name``, when given)."""
    return [r for r in records if test in r.nodeid and (name is None or r.name == name)]


def trend_series(
    runs: Sequence[SavedRun], statistic: str, test: str = "", name: str | None = None
) -> dict[str, list[tuple[int, float]]]:
    """``{label: [(run index, statistic), ...]}`` of each matching record across ``runs`` (oldest first)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for i, run in enumerate(runs):
        for r in matching(run.records, test, name):
            series.setdefault(r.label, []).append((i, r.statistic(statistic)))
    return series


def worst_inputs(record: RunRecord, k: int = 3) -> list[int]:
    """The ``k`` inputs with the lowest scores (ties by index), the ones a reader checks the fit of."""
    scores = [(float(r["score"]), i) for i, r in enumerate(record.results)]
    return [i for _, i in sorted(scores)[:k]]
