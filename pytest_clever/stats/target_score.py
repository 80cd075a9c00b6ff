"""The score against one target class, the extreme-value fit behind it, and when to trust it.

The ``weak`` and ``consistent`` rules of a score live here only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pytest_clever.stats.evt import EXACT_REASONS, WEAK_PVALUE
from pytest_clever.stats.radius import first_order_score, second_order_radius
from pytest_clever.stats.result_json import (
    from_json_float,
    interval_from_json,
    interval_to_json,
    json_float,
    upgrade_target_score,
)

#: Relative slack of the consistency check: float32 finite differences of the
#: margin carry rounding error, which must not read as proof of a low estimate.
CONSISTENCY_SLACK = 1e-3


#: A fallback to the sample maximum whose score interval is narrower than this share of
#: the score is not weak: whatever an accepted fit could have said would change the score
#: by less (a ReLU net's tied maxima often span a fraction of a percent).
NEGLIGIBLE_WIDTH = 0.02


@dataclass(frozen=True)
class TargetScore:
    """The score against one target class and the extreme-value fit behind it.

    ``lipschitz`` is the estimated maximum of the margin gradient's dual norm
    over the ball (the EVT end point); ``lipschitz_lower_bound`` the largest
    ``|g(x) - g(x0)| / ||x - x0||`` seen at the samples, which the true
    Lipschitz constant provably exceeds. ``shape``, ``loc``, ``scale``
    parametrise ``scipy.stats.weibull_min`` for the negated batch maxima; they
    are NaN when ``fit_method == "max"`` (the sample maximum was used, for
    the reason given in ``fit_reason``).

    Second-order scores (``order=2``) fill the fields after ``fit_reason``
    (first-order scores leave them at their defaults): ``gradient_norm`` is
    the exact ``||grad g(x0)||_q``; ``curvature`` the EVT end point ``M`` of the
    sampled curvature, measured as ``curvature_method`` ("spectral": Hessian
    spectral norm, "negative": ``max(0, -lambda_min)``), and the Weibull
    fields describe that fit; ``curvature_lower_bound`` is the largest
    curvature the Taylor residuals at the samples prove; ``solver_steps``
    the most Lanczos steps (Hessian-vector products) any (point, target) row of
    the eigenvalue solver (``lanczos.py``) used, and ``solver_converged`` the share of
    sampled points where it converged (older layouts name them ``power_iterations``
    and ``power_converged``; :meth:`from_dict` reads both).
    There ``lipschitz`` is ``margin / r`` for the uncapped second-order
    radius ``r`` (so ``score == min(margin / lipschitz, radius)`` still holds)
    and ``lipschitz_lower_bound`` is not measured (0).

    ``points`` is how many sampled points the fit used (with ``precision=`` or ``budget=`` the
    rounds choose it). ``interval`` is the score's confidence interval ``(lo, hi)`` from the
    fit's end-point interval (:meth:`with_interval`); None when unknown
    (not computed, or read from JSON without intervals).
    """

    target: int
    score: float
    margin: float
    lipschitz: float
    lipschitz_lower_bound: float
    sample_max: float
    fit_method: str
    shape: float
    loc: float
    scale: float
    ks_statistic: float
    ks_pvalue: float
    fit_reason: str = ""
    gradient_norm: float = math.nan
    curvature: float = math.nan
    curvature_lower_bound: float = math.nan
    curvature_method: str = ""
    solver_steps: int = 0
    solver_converged: float = math.nan
    interval: tuple[float, float] | None = None
    #: Sampled points behind this target's fit (0 when unknown: layouts without it).
    points: int = 0

    @property
    def endpoint(self) -> float:
        """The fitted end point: the Lipschitz estimate (order 1) or the curvature's (order 2), before clipping."""
        return -self.loc if self.fit_method == "weibull" else self.sample_max

    def score_at(self, endpoint: float, radius: float) -> float:
        """The score this target would have with the fitted end point at ``endpoint``.

        First order: ``min(margin / L, R)``. Second order: the Taylor radius,
        whose curvature coefficient ``M k_p^2`` scales with the end point
        (``k_p^2`` recovered from ``lipschitz = a + M k_p^2 r / 2``).
        """
        if math.isnan(self.curvature):  # first order
            return first_order_score(self.margin, endpoint, radius)
        reach = self.margin / self.lipschitz if self.lipschitz > 0 else math.inf
        if self.curvature <= 0 or not math.isfinite(reach):
            coefficient = 0.0  # no curvature measured: the radius does not depend on it
        else:
            coefficient = 2 * (self.lipschitz - self.gradient_norm) / reach / self.curvature
        return min(second_order_radius(self.margin, self.gradient_norm, max(endpoint, 0.0) * coefficient), radius)

    def with_interval(self, endpoint_interval: tuple[float, float], radius: float) -> TargetScore:
        """This score with ``interval`` mapped from the end point's interval (a higher end point, a lower score)."""
        lo, hi = endpoint_interval
        interval = (min(self.score_at(hi, radius), self.score), max(self.score_at(lo, radius), self.score))
        return replace(self, interval=interval)

    @property
    def consistent(self) -> bool:
        """False when the samples prove the Lipschitz (or curvature) estimate too low (score too high)."""
        if self.lipschitz_lower_bound > self.lipschitz * (1 + CONSISTENCY_SLACK):
            return False
        # NaN (first order) compares False: nothing to check.
        return not self.curvature_lower_bound > self.curvature * (1 + CONSISTENCY_SLACK)

    @property
    def weak(self) -> bool:
        """True when the estimate needs a second look: no trustworthy Weibull fit, or a weak one.

        The sample maximum of constant batch maxima, or of maxima whose top
        value recurs, is exact, not weak; so is a fallback whose score interval
        is narrower than ``NEGLIGIBLE_WIDTH`` of the score (no fit could have
        moved it further).
        """
        if self.fit_method == "max":
            if self.fit_reason in EXACT_REASONS:
                return False
            if self.interval is not None and self.score > 0:
                return (self.interval[1] - self.interval[0]) > NEGLIGIBLE_WIDTH * self.score
            return True
        return self.ks_pvalue < WEAK_PVALUE

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN as None, infinities as strings)."""
        data = {k: json_float(v) if isinstance(v, float) else v for k, v in asdict(self).items()}
        data["interval"] = interval_to_json(self.interval)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetScore:
        """Rebuild a target score from :meth:`to_dict` output; absent fields keep their defaults."""
        data = upgrade_target_score(data)
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name == "interval":
                kwargs[f.name] = interval_from_json(value)
            else:
                kwargs[f.name] = value if f.type in ("int", "str") else from_json_float(value)
        return cls(**kwargs)
