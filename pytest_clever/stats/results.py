"""Result objects: named fields, a readable repr, and a JSON-safe ``to_dict``/``from_dict``.

A :class:`CleverResult` is one input's score, its per-target
:class:`~pytest_clever.stats.target_score.TargetScore` objects (where the
``weak`` and ``consistent`` rules live), and the settings; a
:class:`~pytest_clever.stats.report.CleverReport` holds several.
Pure Python and numpy: results can be loaded, compared and reported without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_clever.core.norms import norm_label, norm_to_json, parse_norm
from pytest_clever.core.validation import (
    DEFAULT_CONFIDENCE,
)
from pytest_clever.errors import InvalidInputError
from pytest_clever.stats.radius import CAPPED_NOTE, is_capped
from pytest_clever.stats.result_json import from_json_float, interval_to_json, json_float, upgrade_result
from pytest_clever.stats.target_score import TargetScore

__all__ = ["CAPPED_NOTE", "CleverResult", "TargetScore"]


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
    #: The target specification's canonical text ("all", "top-2", "3,5"; see :mod:`pytest_clever.core.targets`)
    #: and the classes it resolved to for this input, in scoring order.
    targets: str = "all"
    target_classes: tuple[int, ...] = ()
    confidence: float = DEFAULT_CONFIDENCE
    #: A hash of the input's dtype, shape and bytes (``_engine.pipeline.input_fingerprint``): comparisons with a
    #: baseline pair inputs by it. None in results read from layouts without it.
    fingerprint: str | None = None
    #: Second order's cost and layout (None for first order and in layouts without them): points per chunk,
    #: per-row Hessian-vector products per sampled point (all targets together) and mean Lanczos steps per
    #: (point, target) row. A row's value does not depend on its chunk-mates; ``chunk_size`` is kept because
    #: batched kernels may still round differently at another chunk size.
    chunk_size: int | None = None
    hvp_per_point: float | None = None
    steps_per_row: float | None = None
    #: Why sampling stopped (``core.validation.STOP_REASONS``: "fixed", "precision", "cap", "budget",
    #: "decision"); None in results read from layouts without it.
    stop_reason: str | None = None
    #: The ``precision=`` and ``budget=`` (seconds per call) the input was sampled under (None: not set).
    precision: float | None = None
    budget: float | None = None
    #: Whether the sampled passes ran through ``torch.compile`` (``torch_compile=True``; scores within
    #: ``_engine.compiled.COMPILED_TOLERANCE`` of eager).
    torch_compile: bool = False
    #: Target classes screened out (``stats.screening``; their ``fit_method`` is "screened") and the points
    #: of every class sampled before (None: no screening round, as in layouts without it).
    screened: int = 0
    screened_after: int | None = None

    @property
    def points(self) -> int:
        """Sampled points behind the score: ``n_batches * batch_size`` (the rounds chose ``n_batches``)."""
        return self.n_batches * self.batch_size

    @property
    def precision_reached(self) -> float:
        """The relative half-width ``(hi - lo) / (2 * score)`` of :attr:`interval` (inf when unknown or 0)."""
        if self.interval is None or not self.score > 0:
            return float("inf")
        return (self.interval[1] - self.interval[0]) / (2 * self.score)

    @property
    def interval(self) -> tuple[float, float] | None:
        """Confidence interval ``(lo, hi)`` of :attr:`score` at :attr:`confidence`, from the deciding target's fit.

        None when unknown (read from JSON without intervals).
        """
        return self.per_target[self.target].interval

    @property
    def capped(self) -> bool:
        """Whether the score is the radius itself (``min(g / L, R)`` or the second-order radius hit ``R``).

        Then the ball holds no decision change the estimate can see: the score says only
        "at least the radius", and any bar below the radius passes whatever the model (:data:`CAPPED_NOTE`).
        """
        return is_capped(self.score, self.radius)

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
        if self.capped:
            interval += " (capped at the radius)"
        return (
            f"CleverResult(score={self.score:.4g}{interval}, target={self.target}, "
            f"predicted={self.predicted}, norm={norm_label(self.norm)}, radius={self.radius:g}, "
            f"order={self.order}, lipschitz={deciding.lipschitz:.4g}, {curvature}fit={fit}, "
            f"samples={self.n_batches}x{self.batch_size}{self._stop_text()}, seed={self.seed}, "
            f"elapsed={self.elapsed:.2f}s)"
        )

    def _stop_text(self) -> str:
        if self.stop_reason in (None, "fixed"):
            return ""
        return f" (stopped: {self.stop_reason}, +-{self.precision_reached:.1%})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``json.dumps`` works on it as is)."""
        return {
            "score": json_float(self.score),
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
            "interval": interval_to_json(self.interval),
            "confidence": self.confidence,
            "capped": self.capped,
            **({"capped_note": CAPPED_NOTE} if self.capped else {}),
            "fingerprint": self.fingerprint,
            "chunk_size": self.chunk_size,
            "hvp_per_point": self.hvp_per_point,
            "steps_per_row": self.steps_per_row,
            "stop_reason": self.stop_reason,
            "points": self.points,
            "precision": self.precision,
            "precision_reached": json_float(self.precision_reached),
            "budget": self.budget,
            "torch_compile": self.torch_compile,
            "screened": self.screened,
            "screened_after": self.screened_after,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleverResult:
        """Rebuild a result from :meth:`to_dict` output; absent optional fields keep their defaults.

        Raises :class:`~pytest_clever.errors.InvalidInputError` naming the field when ``data`` is not
        such a result: a field missing or of the wrong type, a null (NaN) score or interval bound, or
        a deciding ``target`` without its ``per_target`` entry.
        """
        if not isinstance(data, dict):
            raise InvalidInputError(f"a result must be a JSON object, got {type(data).__name__}")
        for key in ("score", "target", "per_target"):
            if key not in data:
                raise InvalidInputError(f"result: missing field {key!r}")
        if data["score"] is None:
            raise InvalidInputError("result: field 'score' is null (NaN): a result always has a score")
        interval = data.get("interval")
        if interval is not None and (not isinstance(interval, list) or any(v is None for v in interval)):
            raise InvalidInputError(f"result: field 'interval' must be two numbers, got {interval!r}")
        try:
            result = cls._read(data)
        except KeyError as exc:
            raise InvalidInputError(f"result: missing field {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"result: malformed field ({exc})") from None
        if result.target not in result.per_target:
            raise InvalidInputError(f"result: field 'per_target' has no entry for the deciding target {result.target}")
        return result

    @classmethod
    def _read(cls, data: dict[str, Any]) -> CleverResult:
        data = upgrade_result(data)
        return cls(
            score=from_json_float(data["score"]),
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
            targets=str(data["targets"]),
            target_classes=tuple(int(j) for j in data.get("target_classes", ())),
            confidence=float(data.get("confidence", DEFAULT_CONFIDENCE)),
            fingerprint=None if data.get("fingerprint") is None else str(data["fingerprint"]),
            chunk_size=None if data.get("chunk_size") is None else int(data["chunk_size"]),
            hvp_per_point=None if data.get("hvp_per_point") is None else float(data["hvp_per_point"]),
            steps_per_row=None if data.get("steps_per_row") is None else float(data["steps_per_row"]),
            stop_reason=None if data.get("stop_reason") is None else str(data["stop_reason"]),
            precision=None if data.get("precision") is None else float(data["precision"]),
            budget=None if data.get("budget") is None else float(data["budget"]),
            torch_compile=bool(data.get("torch_compile", False)),
            screened=int(data.get("screened", 0)),
            screened_after=None if data.get("screened_after") is None else int(data["screened_after"]),
        )
