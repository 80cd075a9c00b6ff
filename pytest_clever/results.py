"""Result objects: named fields, a readable repr, and a JSON-safe ``to_dict``/``from_dict``.

Pure Python and numpy: results can be loaded, compared and
reported without torch. The ``weak`` and ``consistent`` rules of a score live here only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterator, Sequence

import numpy as np

from .evt import CONSTANT_MAXIMA, WEAK_PVALUE
from .norms import norm_label, norm_to_json, parse_norm
from .validation import STATISTICS, parse_statistic


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

        The sample maximum of constant batch maxima is exact, not weak.
        """
        if self.fit_method == "max":
            return self.fit_reason != CONSTANT_MAXIMA
        return self.ks_pvalue < WEAK_PVALUE

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_float(v) if isinstance(v, float) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TargetScore":
        data = {_RENAMED.get(k, k): v for k, v in data.items()}
        kwargs = {}
        for f in fields(cls):
            if f.name not in data:  # fields added later keep their defaults
                continue
            value = data[f.name]
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
        return (
            f"CleverResult(score={self.score:.4g}, target={self.target}, "
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
        key = parse_statistic(name)
        if key in STATISTICS:
            return getattr(self, key)
        return self.quantile(int(key[1:]) / 100)

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
        return (
            f"CleverReport(n={len(self)}, min={self.min:.4g}, mean={self.mean:.4g}, "
            f"median={self.median:.4g}, norm={norm_label(first.norm)}, "
            f"radius={first.radius:g}, order={first.order}, seed={self.seed}, "
            f"elapsed={self.elapsed:.2f}s)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Summary statistics plus every result's :meth:`CleverResult.to_dict`."""
        summary = {s: self.statistic(s) for s in STATISTICS} if self.results else {}
        return {
            "n": len(self),
            **summary,
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
