"""What a record was scored with and held to: its comparable settings and its threshold.

Pure Python: no torch, no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_clever.core.norms import norm_to_json, parse_norm
from pytest_clever.errors import CleverError
from pytest_clever.runs import fields as read
from pytest_clever.runs.fields import RecordError
from pytest_clever.runs.gates import POINT_GATE

#: Settings that must agree for two records to be compared. The seed joins them when the targets are
#: random-k, whose classes the seed draws (:meth:`RecordSettings.differences`). With ``precision``/``budget``
#: the rounds choose each input's points, so runs under other stopping settings (or a fixed count) are told
#: apart rather than mixed.
COMPARABLE_SETTINGS = (
    "norm",
    "radius",
    "order",
    "n_batches",
    "batch_size",
    "bounds",
    "targets",
    "precision",
    "max_batches",
    "budget",
    "screen",
)
#: Second-order results may still differ in the last digits at another chunk size (batched kernels round
#: differently), so for ``order == 2`` the chunk size joins them when both records know it.
SECOND_ORDER_SETTINGS = ("chunk_size",)
#: Target specifications whose classes the seed picks ("random-3"): prefix of their canonical text.
SEEDED_TARGETS = "random-"


@dataclass(frozen=True)
class RecordSettings:
    """The settings one call was scored with. ``seed`` is the derived seed the API was given.

    With ``precision`` or ``budget`` (seconds per call) set, ``n_batches`` is the first round and
    ``max_batches`` the cap; all three are None for a fixed count of ``n_batches``.
    """

    norm: float
    radius: float
    order: int
    n_batches: int
    batch_size: int
    seed: int
    bounds: tuple[float, float] | None = None
    #: The classes each score is the minimum over: "all", "top-2", "least-likely", "3,5" (``core.targets``).
    targets: str = "all"
    device: str | None = None
    #: torch intra-op threads of the process that scored it (not a comparable setting).
    threads: int | None = None
    #: Points per chunk of a second-order run (``CleverResult.chunk_size`` of its first input); None otherwise.
    chunk_size: int | None = None
    precision: float | None = None
    max_batches: int | None = None
    budget: float | None = None
    #: Whether the sampled passes ran compiled (not a comparable setting: scores move by at most 1e-5).
    torch_compile: bool = False
    #: "on" when the inputs were screened (``CleverResult.screened_after`` set: a screening round ran),
    #: else "off" (also records without the field): screened and fully fitted runs are told apart.
    screen: str = "off"

    def to_dict(self) -> dict[str, Any]:
        return {
            "norm": norm_to_json(self.norm),
            "radius": self.radius,
            "order": self.order,
            "n_batches": self.n_batches,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "bounds": list(self.bounds) if self.bounds is not None else None,
            "targets": self.targets,
            "device": self.device,
            "threads": self.threads,
            "chunk_size": self.chunk_size,
            "precision": self.precision,
            "max_batches": self.max_batches,
            "budget": self.budget,
            "torch_compile": self.torch_compile,
            "screen": self.screen,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RecordSettings:
        """Read :meth:`to_dict` output, checking each field's type (``where`` names the record)."""
        data = read.obj(data, "settings", where)
        where = f"{where}, settings"
        raw_norm = read.get(data, "norm", where)
        try:
            norm = parse_norm(raw_norm)
        except CleverError:
            raise RecordError(f"{where}: field 'norm' must be 1, 2 or 'inf', got {raw_norm!r}") from None
        bounds = read.optional_pair(data.get("bounds"), "bounds", where)
        targets = read.text(read.get(data, "targets", where), "targets", where)
        threads, chunk_size = data.get("threads"), data.get("chunk_size")
        precision, max_batches, budget = (data.get(k) for k in ("precision", "max_batches", "budget"))
        return cls(
            norm=norm,
            radius=read.number(read.get(data, "radius", where), "radius", where),
            order=read.integer(read.get(data, "order", where), "order", where, 1),
            n_batches=read.integer(read.get(data, "n_batches", where), "n_batches", where, 1),
            batch_size=read.integer(read.get(data, "batch_size", where), "batch_size", where, 1),
            seed=read.integer(data.get("seed", 0), "seed", where),
            bounds=bounds,
            targets=targets,
            device=read.optional_text(data.get("device"), "device", where),
            threads=None if threads is None else read.integer(threads, "threads", where, 1),
            chunk_size=None if chunk_size is None else read.integer(chunk_size, "chunk_size", where, 1),
            precision=None if precision is None else read.number(precision, "precision", where),
            max_batches=None if max_batches is None else read.integer(max_batches, "max_batches", where, 1),
            budget=None if budget is None else read.number(budget, "budget", where),
            torch_compile=read.flag(data.get("torch_compile", False), "torch_compile", where),
            screen=read.text(data.get("screen", "off"), "screen", where),
        )

    def differences(self, before: RecordSettings) -> list[str]:
        """``"radius 2.0 -> 1.0"`` for each comparable setting that differs from ``before``."""
        now, then = self.to_dict(), before.to_dict()
        out = [f"{k} {then[k]!r} -> {now[k]!r}" for k in COMPARABLE_SETTINGS if now[k] != then[k]]
        if self.order == 2 and before.order == 2:
            out += [
                f"{k} {then[k]!r} -> {now[k]!r} (second-order results may round differently)"
                for k in SECOND_ORDER_SETTINGS
                if None not in (now[k], then[k]) and now[k] != then[k]
            ]
        if self.targets.startswith(SEEDED_TARGETS) and self.targets == before.targets and self.seed != before.seed:
            out.append(f"seed {before.seed} -> {self.seed} (targets {self.targets} draws its classes with the seed)")
        return out


@dataclass(frozen=True)
class Threshold:
    """The gate a call was held to: ``statistic`` of its scores must be >= ``min_score``,
    with the evidence ``gate`` asks for (``core.validation.GATE_MODES``; "point" compares the statistic itself).

    The JSON layout leaves out the point gate, so a threshold without ``gate`` is a point gate.
    """

    statistic: str
    min_score: float
    gate: str = POINT_GATE

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"statistic": self.statistic, "min_score": self.min_score}
        if self.gate != POINT_GATE:
            data["gate"] = self.gate
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Threshold:
        """Read :meth:`to_dict` output, checking each field's type."""
        return cls(
            read.text(read.get(data, "statistic", where), "threshold.statistic", where),
            read.number(read.get(data, "min_score", where), "threshold.min_score", where),
            read.text(data.get("gate", POINT_GATE), "threshold.gate", where),
        )

    def __str__(self) -> str:
        text = f"{self.statistic}>={self.min_score:g}"
        return text if self.gate == POINT_GATE else f"{text} ({self.gate})"


__all__ = ["COMPARABLE_SETTINGS", "SECOND_ORDER_SETTINGS", "SEEDED_TARGETS", "RecordSettings", "Threshold"]
