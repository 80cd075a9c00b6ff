"""Several inputs' scores: a :class:`CleverReport` with its summary statistics and their intervals.

Pure Python and numpy, like :mod:`.results`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from pytest_clever.core.norms import norm_label
from pytest_clever.core.validation import (
    ESTIMATOR_NOISE,
    STATISTICS,
    check_confidence,
    parse_statistic,
)
from pytest_clever.errors import InvalidInputError
from pytest_clever.stats.intervals import statistic_interval, statistic_rows
from pytest_clever.stats.results import CleverResult

__all__ = ["CleverReport"]


@dataclass(frozen=True)
class CleverReport(Sequence[CleverResult]):
    """CLEVER scores of several inputs, with summary statistics.

    Indexing and iteration give the per-input :class:`CleverResult` objects.
    """

    results: tuple[CleverResult, ...]
    seed: int | None = None
    elapsed: float = 0.0
    #: With ``min_score`` and rounds (``precision=``/``budget=``): whether the rounds settled the gate's
    #: decision (the statistic's interval wholly above or below the bar); None when there was none to settle.
    settled: bool | None = None

    def __len__(self) -> int:
        return len(self.results)

    @overload
    def __getitem__(self, index: int) -> CleverResult: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[CleverResult, ...]: ...

    def __getitem__(self, index: int | slice) -> CleverResult | tuple[CleverResult, ...]:
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
        """Whether every score carries its interval (results read from JSON without intervals do not)."""
        return all(r.interval is not None for r in self.results)

    def interval(
        self, statistic: str, confidence: float | None = None, over: str = ESTIMATOR_NOISE
    ) -> tuple[float, float]:
        """Confidence interval of a statistic ("min", "mean", "median", "max", "qNN") of the scores.

        ``over="estimator"`` (the default) holds the inputs fixed: only each
        score's own interval enters (the estimator's noise). ``over="inputs"``
        reads the inputs as a sample of a population and adds the spread from
        input to input (a bootstrap over inputs, for all but "min" and "max");
        see :mod:`pytest_clever.stats.intervals`. ``confidence`` defaults to the
        results' own level. Scores without an interval count as exact.
        """
        if not self.results:
            raise ValueError("an empty report has no statistics")
        level = self.results[0].confidence if confidence is None else check_confidence(confidence)
        scores = [r.score for r in self.results]
        intervals = [r.interval for r in self.results]
        return statistic_interval(scores, intervals, parse_statistic(statistic), level, over=over)

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
        intervals = {}
        if self.intervals_known and self.results:
            intervals = {f"{s}_interval": list(self.interval(s)) for s in STATISTICS}
        return {
            "n": len(self),
            **summary,
            **intervals,
            "seed": self.seed,
            "elapsed": self.elapsed,
            "settled": self.settled,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleverReport:
        """Rebuild a report from :meth:`to_dict` output (the summary statistics are recomputed).

        A malformed result raises :class:`~pytest_clever.errors.InvalidInputError` naming its index and field.
        """
        raw = data.get("results") if isinstance(data, dict) else None
        if not isinstance(raw, list):
            raise InvalidInputError("a report must be a JSON object with a list 'results'")
        results = []
        for i, item in enumerate(raw):
            try:
                results.append(CleverResult.from_dict(item))
            except InvalidInputError as exc:
                raise InvalidInputError(f"results[{i}]: {str(exc).removeprefix('result: ')}") from None
        settled = data.get("settled")
        return cls(
            results=tuple(results),
            seed=data.get("seed"),
            elapsed=float(data.get("elapsed", 0.0)),
            settled=None if settled is None else bool(settled),
        )
