"""Result objects: named fields, a readable repr, and a JSON-safe ``to_dict``/``from_dict``.

Pure Python and numpy: results can be loaded, compared and
reported without torch. The ``weak`` and ``consistent`` rules of a score live here only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Iterator, Sequence

import numpy as np

from pytest_clever.stats.evt import EXACT_REASONS, WEAK_PVALUE
from pytest_clever.stats.intervals import statistic_interval, statistic_rows
from pytest_clever.core.norms import norm_label, norm_to_json, parse_norm
from pytest_clever.core.validation import DEFAULT_CONFIDENCE, STATISTICS, check_confidence, parse_statistic


def _json_float(value: float | None) -> float | None:
    """NaN becomes None (JSON has no NaN); infinities become strings."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"  # type: ignore[return-value]
    return value


def _from_json_float(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


#: Relative slack of the consistency check: float32 finite differences of the
#: margin carry rounding error, which must not read as proof of a low estimate.
CONSISTENCY_SLACK = 1e-3


#: A fallback to the sample maximum whose score interval is narrower than this share of
#: the score is not weak: whatever an accepted fit could have said would change the score
#: by less (a ReLU net's tied maxima often span a fraction of a percent).
NEGLIGIBLE_WIDTH = 0.02


def _interval_to_json(interval: tuple[float, float] | None) -> list | None:
    return None if interval is None else [_json_float(float(v)) for v in interval]


def _interval_from_json(value: Any) -> tuple[float, float] | None:
    return None if value is None else (_from_json_float(value[0]), _from_json_float(value[1]))


def second_order_radius(margin: float, gradient_norm: float, curvature: float) -> float:
    """The root ``(-a + sqrt(a^2 + 2 M g)) / M`` of ``g - a r - M r^2 / 2``, written without cancellation.

    Tends to ``g / a`` as ``M -> 0``; infinite when both ``a`` and ``M`` vanish.
    (Here, torch-free, so that results can map a curvature interval to a score interval.)
    """
    denominator = gradient_norm + math.sqrt(gradient_norm**2 + 2.0 * curvature * margin)
    return 2.0 * margin / denominator if denominator > 0 else math.inf


#: Field names of files saved before the rename -> their names now.
_RENAMED = {"power_iterations": "solver_steps", "power_converged": "solver_converged"}


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
    the most Hessian-vector products per point the Lanczos eigenvalue solver
    (``lanczos.py``) used in a chunk, and ``solver_converged`` the share of
    sampled points where it converged (saved before 0.2 as ``power_iterations``
    and ``power_converged``, names :meth:`from_dict` still reads).
    There ``lipschitz`` is ``margin / r`` for the uncapped second-order
    radius ``r`` (so ``score == min(margin / lipschitz, radius)`` still holds)
    and ``lipschitz_lower_bound`` is not measured (0).

    ``interval`` is the score's confidence interval ``(lo, hi)`` from the
    fit's end-point interval (:meth:`with_interval`); None when unknown
    (not computed, or a record saved before intervals existed).
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
            return min(self.margin / endpoint, radius) if endpoint > 0 else radius
        reach = self.margin / self.lipschitz if self.lipschitz > 0 else math.inf
        if self.curvature <= 0 or not math.isfinite(reach):
            coefficient = 0.0  # no curvature measured: the radius does not depend on it
        else:
            coefficient = 2 * (self.lipschitz - self.gradient_norm) / reach / self.curvature
        return min(second_order_radius(self.margin, self.gradient_norm, max(endpoint, 0.0) * coefficient), radius)

    def with_interval(self, endpoint_interval: tuple[float, float], radius: float) -> "TargetScore":
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
        data = {k: _json_float(v) if isinstance(v, float) else v for k, v in asdict(self).items()}
        data["interval"] = _interval_to_json(self.interval)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TargetScore":
        data = {_RENAMED.get(k, k): v for k, v in data.items()}
        kwargs = {}
        for f in fields(cls):
            if f.name not in data:  # fields added later keep their defaults
                continue
            value = data[f.name]
            if f.name == "interval":
                kwargs[f.name] = _interval_from_json(value)
            else:
                kwargs[f.name] = value if f.type in ("int", "str") else _from_json_float(value)
        return cls(**kwargs)


@dataclass(frozen=True)
class CleverResult:
    """The CLEVER score of one input.

    ``score`` is ``min(margin / lipschitz, radius)`` for the target class
    ``target`` that attains the minimum (or the one requested); it estimates
    the smallest perturbation (in the ``norm``) that changes the prediction
    ``predicted``. ``per_target`` maps every scored class to its
    :class:`TargetScore`. ``seed`` reproduces the run bit-for-bit on the same
    device. ``notes`` lists anything worth a second look (weak fits, ...).
    ``confidence`` is the level of the score's :attr:`interval`.
    """

    score: float
    target: int
    predicted: int
    norm: float
    radius: float
    order: int
    per_target: dict[int, TargetScore]
    n_batches: int
    batch_size: int
    seed: int
    elapsed: float
    targeted: bool = False
    label: int | None = None
    bounds: tuple[float, float] | None = None
    device: str = "cpu"
    notes: tuple[str, ...] = field(default=())
    #: The deciding target's batch maxima: the data behind its EVT fit (for plots).
    batch_maxima: tuple[float, ...] = field(default=(), repr=False)
    #: The target specification's canonical text ("all", "top-2", "3,5"; see ``targets.py``)
    #: and the classes it resolved to for this input, in scoring order.
    targets: str = "all"
    target_classes: tuple[int, ...] = ()
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def interval(self) -> tuple[float, float] | None:
        """Confidence interval ``(lo, hi)`` of :attr:`score` at :attr:`confidence`, from the deciding target's fit.

        None when unknown (a record saved before intervals existed).
        """
        return self.per_target[self.target].interval

    @property
    def lipschitz(self) -> float:
        """The Lipschitz estimate of the deciding target."""
        return self.per_target[self.target].lipschitz

    @property
    def fit_method(self) -> str:
        return self.per_target[self.target].fit_method

    @property
    def ks_pvalue(self) -> float:
        return self.per_target[self.target].ks_pvalue

    @property
    def consistent(self) -> bool:
        """False when, for some target, the samples prove the Lipschitz estimate too low."""
        return all(t.consistent for t in self.per_target.values())

    def __repr__(self) -> str:
        deciding = self.per_target[self.target]
        fit = deciding.fit_method
        if fit == "weibull":
            fit += f"(p={deciding.ks_pvalue:.2g})"
        curvature = ""
        if self.order == 2:
            curvature = f"curvature={deciding.curvature:.4g}({deciding.curvature_method}), "
        interval = "" if self.interval is None else f" [{self.interval[0]:.4g}, {self.interval[1]:.4g}]"
        return (
            f"CleverResult(score={self.score:.4g}{interval}, target={self.target}, "
            f"predicted={self.predicted}, norm={norm_label(self.norm)}, radius={self.radius:g}, "
            f"order={self.order}, lipschitz={deciding.lipschitz:.4g}, {curvature}fit={fit}, "
            f"samples={self.n_batches}x{self.batch_size}, seed={self.seed}, "
            f"elapsed={self.elapsed:.2f}s)"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``json.dumps`` works on it as is)."""
        return {
            "score": _json_float(self.score),
            "target": self.target,
            "predicted": self.predicted,
            "norm": norm_to_json(self.norm),
            "radius": self.radius,
            "order": self.order,
            "per_target": {str(j): t.to_dict() for j, t in self.per_target.items()},
            "n_batches": self.n_batches,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "elapsed": self.elapsed,
            "targeted": self.targeted,
            "label": self.label,
            "bounds": list(self.bounds) if self.bounds is not None else None,
            "device": self.device,
            "notes": list(self.notes),
            "batch_maxima": [float(v) for v in self.batch_maxima],
            "targets": self.targets,
            "target_classes": list(self.target_classes),
            "interval": _interval_to_json(self.interval),
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CleverResult":
        """Rebuild a result from :meth:`to_dict` output."""
        return cls(
            score=_from_json_float(data["score"]),
            target=int(data["target"]),
            predicted=int(data["predicted"]),
            norm=parse_norm(data["norm"]),
            radius=float(data["radius"]),
            order=int(data["order"]),
            per_target={int(j): TargetScore.from_dict(t) for j, t in data["per_target"].items()},
            n_batches=int(data["n_batches"]),
            batch_size=int(data["batch_size"]),
            seed=int(data["seed"]),
            elapsed=float(data["elapsed"]),
            targeted=bool(data.get("targeted", False)),
            label=data.get("label"),
            bounds=tuple(data["bounds"]) if data.get("bounds") is not None else None,
            device=data.get("device", "cpu"),
            notes=tuple(data.get("notes", ())),
            batch_maxima=tuple(float(v) for v in data.get("batch_maxima", ())),
            # Records from before target selection: targeted meant the one class `target`.
            targets=str(data.get("targets", data["target"] if data.get("targeted") else "all")),
            target_classes=tuple(int(j) for j in data.get("target_classes", ())),
            confidence=float(data.get("confidence", DEFAULT_CONFIDENCE)),
        )


@dataclass(frozen=True)
class CleverReport(Sequence[CleverResult]):
    """CLEVER scores of several inputs, with summary statistics.

    Indexing and iteration give the per-input :class:`CleverResult` objects.
    """

    results: tuple[CleverResult, ...]
    seed: int | None = None
    elapsed: float = 0.0

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index):  # type: ignore[override]
        return self.results[index]

    def __iter__(self) -> Iterator[CleverResult]:
        return iter(self.results)

    @property
    def scores(self) -> np.ndarray:
        return np.array([r.score for r in self.results], dtype=np.float64)

    @property
    def min(self) -> float:
        return float(self.scores.min())

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    @property
    def median(self) -> float:
        return float(np.median(self.scores))

    @property
    def max(self) -> float:
        return float(self.scores.max())

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0 <= q <= 1) of the scores, linear interpolation."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q must lie in [0, 1], got {q}")
        return float(np.quantile(self.scores, q))

    def statistic(self, name: str) -> float:
        """A statistic by name: "min", "mean", "median", "max" or "qNN" (e.g. "q10")."""
        return float(statistic_rows(self.scores, parse_statistic(name)))

    @property
    def intervals_known(self) -> bool:
        """Whether every score carries its interval (records saved before intervals existed do not)."""
        return all(r.interval is not None for r in self.results)

    def interval(self, statistic: str, confidence: float | None = None) -> tuple[float, float]:
        """Confidence interval of a statistic ("min", "mean", "median", "max", "qNN") of the scores.

        Combines the spread from input to input (a bootstrap over inputs, for
        all but "min" and "max") with each score's own interval; see
        :mod:`pytest_clever.stats.intervals`. ``confidence`` defaults to the
        results' own level. Scores without an interval count as exact.
        """
        if not self.results:
            raise ValueError("an empty report has no statistics")
        level = self.results[0].confidence if confidence is None else check_confidence(confidence)
        return statistic_interval(self.scores, [r.interval for r in self.results], parse_statistic(statistic), level)

    def worst(self, k: int = 3) -> list[int]:
        """Indices of the ``k`` lowest-scoring inputs, lowest first."""
        return [int(i) for i in np.argsort(self.scores, kind="stable")[:k]]

    @property
    def consistent(self) -> bool:
        return all(r.consistent for r in self.results)

    def __repr__(self) -> str:
        if not self.results:
            return "CleverReport(n=0)"
        first = self.results[0]
        mean = f"{self.mean:.4g}"
        if self.intervals_known:
            lo, hi = self.interval("mean")
            mean += f" [{lo:.4g}, {hi:.4g}]"
        return (
            f"CleverReport(n={len(self)}, min={self.min:.4g}, mean={mean}, "
            f"median={self.median:.4g}, norm={norm_label(first.norm)}, "
            f"radius={first.radius:g}, order={first.order}, seed={self.seed}, "
            f"elapsed={self.elapsed:.2f}s)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Summary statistics plus every result's :meth:`CleverResult.to_dict`."""
        summary = {s: self.statistic(s) for s in STATISTICS} if self.results else {}
        intervals = {f"{s}_interval": list(self.interval(s)) for s in STATISTICS} if self.intervals_known and self.results else {}
        return {
            "n": len(self),
            **summary,
            **intervals,
            "seed": self.seed,
            "elapsed": self.elapsed,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CleverReport":
        return cls(
            results=tuple(CleverResult.from_dict(r) for r in data["results"]),
            seed=data.get("seed"),
            elapsed=float(data.get("elapsed", 0.0)),
        )
