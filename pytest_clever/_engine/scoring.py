"""One input's scoring, split in steps so that rounds of sampling can alternate between inputs.

:func:`start_input` checks the input and resolves its prediction and targets
(``inputs``, ``targets``); :meth:`InputScoring.sample` samples it up to a
number of batches (first order: resumable on the same stream of points,
``maxima.MaximaRounds``; second order: one pass) and fits the result after
each round (``first_order``/``second_order``, masking check and notes from
``diagnostics``). :mod:`pytest_clever._engine.rounds` decides how many
batches each input gets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType

import torch

from pytest_clever._engine import first_order, second_order
from pytest_clever._engine.diagnostics import check_masking, score_notes, screen_notes
from pytest_clever._engine.inputs import (
    check_in_bounds,
    check_prediction,
    check_rows_independent,
    resolve_single_input,
    warn_if_probabilities,
)
from pytest_clever._engine.maxima import MaximaRounds, Problem
from pytest_clever._engine.outputs import output_note, unwrapped_kind
from pytest_clever.core import progress
from pytest_clever.core.options import ScoreOptions
from pytest_clever.core.targets import resolve_targets
from pytest_clever.core.validation import STOP_FIXED
from pytest_clever.stats.evt import score_endpoint_interval
from pytest_clever.stats.results import CleverResult


@dataclass
class InputScoring:
    """An input in the middle of being scored: what its rounds of sampling share.

    ``result`` is the fit after the last round (None before the first); ``sampling_s`` the seconds spent
    sampling and fitting so far (what a round's cost is estimated from).
    """

    model: Callable
    options: ScoreOptions
    device: torch.device
    label: int | None
    seed: int
    problem: Problem
    loop: MaximaRounds | None
    started: float
    result: CleverResult | None = None
    stop_reason: str | None = None
    sampling_s: float = 0.0

    @property
    def batches(self) -> int:
        return 0 if self.result is None else self.result.n_batches

    @property
    def active(self) -> bool:
        return self.stop_reason is None

    def seconds_per_batch(self) -> float:
        return self.sampling_s / self.batches if self.batches else math.inf

    def sample(self, total_batches: int) -> CleverResult:
        """Sample up to ``total_batches`` batches and refit; the result is also kept in ``result``."""
        began = time.perf_counter()
        options, problem = self.options, self.problem
        settings = replace(options.sampling, n_batches=total_batches)
        order: ModuleType
        samples: first_order.GradientSamples | second_order.CurvatureSamples
        if self.loop is not None:
            self.loop.extend(total_batches)
            order, samples = first_order, first_order.GradientSamples(self.loop.sampled(), self.loop.screened)
        else:
            order = second_order
            samples = second_order.sample_targets(problem, settings, curvature=options.curvature)
        check_masking(samples.sampled, self.model, problem.x0)
        targets = list(problem.targets)
        per_target = order.score_targets(samples, targets, problem.margins0.double().cpu().tolist(), settings)
        deciding = min(per_target.values(), key=lambda s: (s.score, s.target))
        maxima = samples.sampled.maxima[:, targets.index(deciding.target)].double().cpu().numpy()
        # Only the deciding target gets an interval: it is the score's, and each fit costs a profile likelihood.
        deciding = per_target[deciding.target] = deciding.with_interval(
            score_endpoint_interval(
                maxima,
                method=deciding.fit_method,
                reason=deciding.fit_reason,
                endpoint=deciding.endpoint,
                confidence=options.confidence,
            ),
            settings.radius,
        )
        points = total_batches * settings.batch_size
        per_target = {
            j: t if t.fit_method == first_order.SCREENED else replace(t, points=points) for j, t in per_target.items()
        }
        screened = samples.screened if isinstance(samples, first_order.GradientSamples) else None
        spec = options.targets
        self.result = CleverResult(
            score=deciding.score,
            target=deciding.target,
            predicted=problem.predicted,
            norm=settings.norm,
            radius=settings.radius,
            order=settings.order,
            per_target=per_target,
            n_batches=total_batches,
            batch_size=settings.batch_size,
            seed=self.seed,
            elapsed=time.perf_counter() - self.started,
            targeted=spec.targeted,
            targets=str(spec),
            target_classes=tuple(targets),
            label=None if self.label is None else int(self.label),
            bounds=settings.bounds,
            device=str(self.device),
            notes=_output_notes(self.model)
            + screen_notes(screened, targets)
            + score_notes(per_target, deciding.target, radius=settings.radius, order=settings.order),
            batch_maxima=tuple(maxima.tolist()),
            confidence=options.confidence,
            precision=options.precision,
            budget=options.budget,
            torch_compile=options.torch_compile,
            # Second order shows its layout and cost (the first order's cost is one gradient per point and target).
            chunk_size=samples.chunk_size if isinstance(samples, second_order.CurvatureSamples) else None,
            hvp_per_point=samples.hvp_per_point if isinstance(samples, second_order.CurvatureSamples) else None,
            steps_per_row=samples.steps_per_row if isinstance(samples, second_order.CurvatureSamples) else None,
            screened=0 if screened is None else len(screened.screened),
            screened_after=None if screened is None else screened.points,
        )
        self.sampling_s += time.perf_counter() - began
        return self.result

    def stop(self, reason: str) -> CleverResult:
        """End this input's sampling for ``reason`` (``core.validation.STOP_REASONS``); its final result."""
        assert self.result is not None, "an input stops after its first round"
        self.stop_reason = reason
        self.result = replace(self.result, stop_reason=reason, elapsed=time.perf_counter() - self.started)
        progress.input_scored()
        return self.result


def _output_notes(model: Callable) -> tuple[str, ...]:
    kind = unwrapped_kind(model)
    return () if kind is None else (output_note(kind),)


def start_input(
    model: Callable,
    x: torch.Tensor,
    *,
    options: ScoreOptions,
    device: torch.device,
    dtype: torch.dtype,
    label: int | None,
    seed: int,
) -> InputScoring:
    """Check one input and resolve its prediction and targets; nothing is sampled yet."""
    started = time.perf_counter()
    settings = options.sampling
    x = x.to(device=device, dtype=dtype)
    x0, logits0 = resolve_single_input(model, x)
    warn_if_probabilities(logits0)
    check_in_bounds(x0, settings.bounds)
    check_rows_independent(model, x0, logits0, settings.radius, settings.bounds)
    predicted = check_prediction(logits0, label, options.target)
    targets = resolve_targets(options.targets, logits0, predicted, seed)
    margins0 = logits0[predicted] - logits0[targets]
    tracker = progress.current()
    if tracker is not None:
        tracker.input(len(targets))
    problem = Problem(model, x0, margins0, predicted, targets, seed, options.chunk_size, options.torch_compile)
    screen = options.screens(len(targets))
    loop = (
        first_order.rounds(problem, settings, screen=screen, confidence=options.confidence)
        if settings.order == 1
        else None
    )
    return InputScoring(model, options, device, label, seed, problem, loop, started)


__all__ = ["STOP_FIXED", "InputScoring", "start_input"]
