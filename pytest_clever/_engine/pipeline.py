"""The one scoring path behind :func:`~pytest_clever.api.clever_score` and :func:`~pytest_clever.api.clever_scores`.

Data flow: settings validated once (:class:`~pytest_clever.core.options.ScoreOptions`)
-> resolve the device (``device``) and borrow the model (``model_state``) -> per
input: resolve it and its prediction (``inputs``), sample the ball and collect
batch maxima (``first_order`` or ``second_order``, both on the loop of
``maxima``), check for masking (``diagnostics``), fit and score per target,
attach the notes (``diagnostics``) -> result (``results``). With an executor
each input is one task there (``executor``), scored by the same function.
"""

from __future__ import annotations

import functools
import hashlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import ModuleType
from typing import Any

import torch

from pytest_clever._engine import first_order, second_order
from pytest_clever._engine.device import check_dtype, resolve_device
from pytest_clever._engine.diagnostics import check_masking, score_notes
from pytest_clever._engine.inputs import (
    as_input_tensor,
    check_in_bounds,
    check_prediction,
    check_rows_independent,
    resolve_single_input,
    warn_if_probabilities,
)
from pytest_clever._engine.maxima import Problem
from pytest_clever._engine.model_state import borrowed_model
from pytest_clever._engine.numerics import exact_float32
from pytest_clever._engine.outputs import is_output_note, output_note, unwrapped_kind
from pytest_clever.core import progress
from pytest_clever.core.options import ScoreOptions
from pytest_clever.core.seeds import derive_seed
from pytest_clever.core.targets import resolve_targets
from pytest_clever.errors import CleverError, InvalidInputError, WeakFitWarning
from pytest_clever.stats.evt import endpoint_interval
from pytest_clever.stats.results import CleverResult


def _score_one(
    model: Callable,
    x: torch.Tensor,
    *,
    options: ScoreOptions,
    device: torch.device,
    dtype: torch.dtype,
    label: int | None,
    seed: int,
) -> CleverResult:
    """Score one input with ``seed``; the model is already borrowed (eval mode, on ``device``)."""
    started = time.perf_counter()
    settings = options.sampling
    x = x.to(device=device, dtype=dtype)
    x0, logits0 = resolve_single_input(model, x)
    warn_if_probabilities(logits0)
    check_in_bounds(x0, settings.bounds)
    check_rows_independent(model, x0, logits0, settings.radius, settings.bounds)
    predicted = check_prediction(logits0, label, options.target)
    spec = options.targets
    targets = resolve_targets(spec, logits0, predicted, seed)
    margins0 = logits0[predicted] - logits0[targets]
    tracker = progress.current()
    if tracker is not None:
        tracker.input(len(targets))

    problem = Problem(model, x0, margins0, predicted, targets, seed, options.chunk_size)
    order: ModuleType
    samples: first_order.GradientSamples | second_order.CurvatureSamples
    if settings.order == 2:
        order, samples = second_order, second_order.sample_targets(problem, settings, curvature=options.curvature)
    else:
        order, samples = first_order, first_order.sample_targets(problem, settings)
    check_masking(samples.sampled, model, x0)
    per_target = order.score_targets(samples, targets, margins0.double().cpu().tolist(), settings)

    deciding = min(per_target.values(), key=lambda s: (s.score, s.target))
    maxima = samples.sampled.maxima[:, targets.index(deciding.target)].double().cpu().numpy()
    # Only the deciding target gets an interval: it is the score's, and each fit costs a profile likelihood.
    deciding = per_target[deciding.target] = deciding.with_interval(
        endpoint_interval(
            maxima,
            method=deciding.fit_method,
            reason=deciding.fit_reason,
            endpoint=deciding.endpoint,
            confidence=options.confidence,
        ),
        settings.radius,
    )
    return CleverResult(
        score=deciding.score,
        target=deciding.target,
        predicted=predicted,
        norm=settings.norm,
        radius=settings.radius,
        order=settings.order,
        per_target=per_target,
        n_batches=settings.n_batches,
        batch_size=settings.batch_size,
        seed=seed,
        elapsed=time.perf_counter() - started,
        targeted=spec.targeted,
        targets=str(spec),
        target_classes=tuple(targets),
        label=None if label is None else int(label),
        bounds=settings.bounds,
        device=str(device),
        notes=_output_notes(model)
        + score_notes(per_target, deciding.target, radius=settings.radius, order=settings.order),
        batch_maxima=tuple(maxima.tolist()),
        confidence=options.confidence,
        # Second order shows its layout and cost (the first order's cost is one gradient per point and target).
        chunk_size=samples.chunk_size if isinstance(samples, second_order.CurvatureSamples) else None,
        hvp_per_point=samples.hvp_per_point if isinstance(samples, second_order.CurvatureSamples) else None,
        steps_per_row=samples.steps_per_row if isinstance(samples, second_order.CurvatureSamples) else None,
    )


def _output_notes(model: Callable) -> tuple[str, ...]:
    kind = unwrapped_kind(model)
    return () if kind is None else (output_note(kind),)


#: Hex digits of an input fingerprint kept: 64 bits tell apart the inputs of any realistic run.
FINGERPRINT_CHARS = 16


def input_fingerprint(x: torch.Tensor) -> str:
    """A hash of ``x``'s dtype, shape and bytes: how records recognise the same input across runs.

    Taken from a contiguous CPU copy of the input as given (before the move to the scoring device
    and its dtype), so the same input has the same fingerprint on any device. Records keep the
    fingerprint, never the input.
    """
    data = x.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(f"{data.dtype}|{tuple(x.shape)}|".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def _warn(result: CleverResult, index: int | None = None) -> None:
    where = "" if index is None else f"input {index}: "
    # The output note states what was scored (the user's model chose its output type): recorded, not warned.
    for note in (n for n in result.notes if not is_output_note(n)):
        # Four frames up: _warn, score_inputs, the public function, the user's line.
        warnings.warn(f"CLEVER {where}{note}", WeakFitWarning, stacklevel=4)


def _tensors(inputs: Sequence[Any], indexed: bool) -> list[torch.Tensor]:
    tensors = []
    for i, x in enumerate(inputs):
        try:
            tensors.append(as_input_tensor(x))
        except CleverError as exc:
            if not indexed:
                raise
            raise type(exc)(f"input {i}: {exc}") from exc
    if not tensors:
        raise InvalidInputError("xs holds no inputs")
    return tensors


def score_inputs(
    model: Callable,
    inputs: Sequence[Any],
    labels: Sequence[Any] | None,
    options: ScoreOptions,
    *,
    indexed: bool,
) -> list[CleverResult]:
    """Resolve the device, borrow the model and score each input (serially, or on ``options.executor``).

    With ``indexed`` (``clever_scores``) errors and warnings name the input
    (``input i: ...``) and input ``i`` is scored with
    ``derive_seed(options.seed, i)``; otherwise with ``options.seed`` itself.
    Called straight from the public functions: the warnings raised below
    count their stack levels from there.
    """
    tensors = _tensors(inputs, indexed)
    if labels is not None and len(labels) != len(tensors):
        raise InvalidInputError(f"got {len(labels)} labels for {len(tensors)} inputs")
    # With an executor the workers compute: a CPU-only caller may drive GPU workers, so only the name is checked here.
    dev, dtype = resolve_device(model, tensors[0], options.device, here=options.executor is None)
    check_dtype(options.order, dtype)
    seeds = [derive_seed(options.seed, i) if indexed else options.seed for i in range(len(tensors))]
    # The per-input settings travel to executor workers by pickle: without the executor and the progress sink.
    per_input = replace(options, executor=None, progress=False)
    score = functools.partial(_score_one, options=per_input, device=dev, dtype=dtype)
    with progress.tracking(options.progress, len(tensors), options.n_batches * options.batch_size) as tracker:
        if options.executor is not None:
            from pytest_clever._engine.executor import score_on_executor

            # Workers report nothing back while they sample: progress counts inputs as they come back.
            results = score_on_executor(
                options.executor,
                model,
                tensors,
                labels or [None] * len(tensors),
                seeds=seeds,
                device=dev,
                score=score,
                on_result=None if tracker is None else (lambda _index: tracker.scored()),
                timeout=options.executor_timeout,
            )
        else:
            results = []
            with borrowed_model(model, dev) as prepared, exact_float32():
                for i, x in enumerate(tensors):
                    try:
                        results.append(score(prepared, x, label=None if labels is None else labels[i], seed=seeds[i]))
                    except CleverError as exc:
                        if not indexed:
                            raise
                        raise type(exc)(f"input {i}: {exc}") from exc
                    if tracker is not None:
                        tracker.scored()
    # Each result names its input, so comparisons with a baseline pair inputs by identity, not position.
    results = [replace(r, fingerprint=input_fingerprint(x)) for r, x in zip(results, tensors, strict=True)]
    for i, result in enumerate(results):
        _warn(result, i if indexed else None)
    return results


__all__ = ["input_fingerprint", "score_inputs"]
