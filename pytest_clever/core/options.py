"""The keyword settings of one ``clever_score`` / ``clever_scores`` call, validated once.

Pure Python (no torch, no numpy): the pytest fixture reads the keyword names
from here without importing the engine. The public functions in
:mod:`pytest_clever.api` own the keywords and their defaults; they hand them
over as one :class:`ScoreOptions`, which the scoring pipeline, the executor
tasks and the fixture read. The device is checked by the engine, which
knows the model (:mod:`pytest_clever._engine.device`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from pytest_clever.core.seeds import resolve_seed
from pytest_clever.core.targets import TargetSpec, combine_target_and_targets
from pytest_clever.core.validation import (
    DEFAULT_EXECUTOR_TIMEOUT,
    SCREEN_AUTO,
    SCREEN_FROM_TARGETS,
    SCREEN_ON,
    Settings,
    Stopping,
    check_chunk_size,
    check_confidence,
    check_curvature,
    check_flag,
    check_gate_mode,
    check_interval_kind,
    check_number,
    check_screen,
    check_settings,
    check_stopping,
    check_timeout,
    parse_statistic,
    screenable,
)
from pytest_clever.errors import InvalidInputError

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from pytest_clever.core.progress import ProgressSetting

#: The keywords that make up the sampling :class:`~pytest_clever.core.validation.Settings`.
SAMPLING = ("norm", "radius", "n_batches", "batch_size", "bounds", "order")


@dataclass(frozen=True)
class ScoreOptions:
    """Every keyword setting of a scoring call, validated and normalised; one field per public keyword.

    ``seed`` is the run's seed (the one given, or one drawn at random for
    ``seed=None``); ``targets`` the parsed specification with ``target=``
    folded in, while ``target`` keeps the class as given, which each input's
    prediction is checked against. ``device``, ``executor`` and ``progress``
    are kept as given.
    """

    norm: float
    radius: float
    target: Any
    targets: TargetSpec
    n_batches: int
    batch_size: int
    bounds: tuple[float, float] | None
    seed: int
    device: Any
    executor: Executor | None
    executor_timeout: float
    order: int
    chunk_size: int | None
    curvature: str
    progress: ProgressSetting
    confidence: float
    precision: float | None = None
    max_batches: int | None = None
    budget: float | None = None
    min_score: float | None = None
    statistic: str = "mean"
    gate: str = "point"
    interval: str = "estimator"
    torch_compile: bool = False
    screen: str = SCREEN_AUTO

    @classmethod
    def from_keywords(cls, given: Mapping[str, Any]) -> ScoreOptions:
        """Validate the keywords of a public call (its ``locals()``; only the executor's two may be absent).

        The checks run in a fixed order (the stopping rule, the sampling settings, torch_compile, rounds
        with an executor, then chunk_size, curvature, confidence, seed, target/targets and the gate), so a
        call with several bad settings always reports the same one first.
        ``n_batches`` becomes the first round's batches (:func:`~pytest_clever.core.validation.check_stopping`)
        and ``max_batches`` the cap, which is ``n_batches`` itself for a fixed count.
        """
        stopping = check_stopping(
            given["n_batches"], given.get("precision"), given.get("max_batches"), given.get("budget")
        )
        given_sampling = {name: given[name] for name in SAMPLING if name != "n_batches"}
        sampling = check_settings(**given_sampling, n_batches=stopping.first)
        if stopping.adaptive and sampling.order == 2:
            raise InvalidInputError(
                "precision= and budget= sample in rounds, which order=2 does not support: use order=1, or a "
                "fixed n_batches= for second order"
            )
        torch_compile = check_flag("torch_compile", given.get("torch_compile", False))
        if torch_compile and sampling.order == 2:
            raise InvalidInputError(
                "torch_compile=True compiles the first-order passes; second order's Hessian-vector products "
                "need double backward, which torch.compile does not support: use order=1 or torch_compile=False"
            )
        min_score = given.get("min_score")
        if given.get("executor") is not None and (
            stopping.budget is not None or (min_score is not None and stopping.adaptive)
        ):
            raise InvalidInputError(
                "budget= and a gate decision (min_score with precision=) share the rounds of all inputs, which "
                "run in this process: drop executor=, or use precision= alone (each input stops on its own there)"
            )
        first_points = stopping.first * sampling.batch_size
        return cls(
            **asdict(sampling),
            chunk_size=check_chunk_size(given["chunk_size"]),
            curvature=check_curvature(given["curvature"]),
            confidence=check_confidence(given["confidence"]),
            seed=resolve_seed(given["seed"]),
            targets=combine_target_and_targets(given["target"], given["targets"]),
            target=given["target"],
            device=given["device"],
            executor=given.get("executor"),
            executor_timeout=check_timeout("executor_timeout", given.get("executor_timeout", DEFAULT_EXECUTOR_TIMEOUT)),
            progress=given["progress"],
            precision=stopping.precision,
            max_batches=stopping.cap,
            budget=stopping.budget,
            min_score=None if min_score is None else check_number("min_score", min_score, strict=False),
            statistic=parse_statistic(given.get("statistic", "mean")),
            gate=check_gate_mode(given.get("gate", "point")),
            interval=check_interval_kind(given.get("interval", "estimator")),
            torch_compile=torch_compile,
            screen=check_screen(given.get("screen", SCREEN_AUTO), order=sampling.order, first_points=first_points),
        )

    @property
    def sampling(self) -> Settings:
        """The settings every input is sampled and fitted with."""
        return Settings(**{name: getattr(self, name) for name in SAMPLING})

    @property
    def stopping(self) -> Stopping:
        """When each input's sampling stops (a fixed count unless ``precision`` or ``budget`` is set)."""
        cap = self.n_batches if self.max_batches is None else self.max_batches
        return Stopping(first=self.n_batches, cap=cap, precision=self.precision, budget=self.budget)

    def screens(self, n_targets: int) -> bool:
        """Whether an input with ``n_targets`` target classes is screened (``stats.screening``).

        ``on``: always (validated: first order, a first round above ``SCREEN_POINTS`` points); ``auto``: first
        order with at least ``SCREEN_FROM_TARGETS`` classes and such a first round; ``off``: never.
        """
        if self.screen == SCREEN_ON:
            return True
        enough = screenable(self.order, self.n_batches * self.batch_size)
        return self.screen == SCREEN_AUTO and enough and n_targets >= SCREEN_FROM_TARGETS

    @property
    def decides(self) -> bool:
        """Whether rounds also stop once the gate's decision (``min_score``) is settled."""
        return self.min_score is not None and self.stopping.adaptive


#: The keyword names of ``clever_scores`` after its positional arguments, in signature order.
KEYWORDS = tuple(f.name for f in fields(ScoreOptions))

__all__ = ["KEYWORDS", "SAMPLING", "ScoreOptions"]
