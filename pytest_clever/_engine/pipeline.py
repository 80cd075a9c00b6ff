"""The one scoring path behind :func:`~pytest_clever.api.clever_score` and :func:`~pytest_clever.api.clever_scores`.

Data flow: settings validated once (:class:`~pytest_clever.core.options.ScoreOptions`)
-> resolve the device (``device``) and borrow the model (``model_state``) -> per
input: resolve it and its prediction (``scoring``), sample the ball in rounds and
collect batch maxima (``rounds`` decides how many; ``first_order`` or ``second_order``,
both on the loop of ``maxima``), check for masking, fit and score per target,
attach the notes (``diagnostics``) -> result (``results``). With an executor
each input is one task there (``executor``), scored by the same function in its own rounds.
"""

from __future__ import annotations

import functools
import hashlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from pytest_clever._engine import rounds
from pytest_clever._engine.device import check_dtype, resolve_device
from pytest_clever._engine.diagnostics import is_screen_note
from pytest_clever._engine.inputs import as_input_tensor
from pytest_clever._engine.model_state import borrowed_model
from pytest_clever._engine.numerics import exact_float32
from pytest_clever._engine.outputs import is_output_note
from pytest_clever._engine.scoring import InputScoring, start_input
from pytest_clever.core import progress
from pytest_clever.core.options import ScoreOptions
from pytest_clever.core.seeds import derive_seed
from pytest_clever.errors import CleverError, InvalidInputError, WeakFitWarning
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
    """Score one input with ``seed`` in its own rounds; the model is already borrowed (eval mode, on ``device``).

    What an executor task runs; without a budget or a gate decision an input's rounds do not depend on
    the other inputs, so this gives the serial result.
    """
    state = start_input(model, x, options=options, device=device, dtype=dtype, label=label, seed=seed)
    rounds.run([state], options, time.perf_counter(), lambda _i, step: step())
    assert state.result is not None
    return state.result


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
    # The output and screening notes state what was scored and how: recorded, not warned.
    for note in (n for n in result.notes if not (is_output_note(n) or is_screen_note(n))):
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
) -> tuple[list[CleverResult], bool | None]:
    """Resolve the device, borrow the model and score each input (serially, or on ``options.executor``).

    Returns the results and whether the rounds settled the gate's decision (None without one, see
    :func:`pytest_clever._engine.rounds.run`).

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
    settled: bool | None = None
    points_each = options.stopping.cap * options.batch_size
    # On an executor each worker runs its own rounds, out of sight: only the inputs coming back are seen.
    in_rounds = options.stopping.adaptive and options.executor is None
    with progress.tracking(options.progress, len(tensors), points_each, rounds=in_rounds) as tracker:
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
            results, settled = _score_serially(model, tensors, labels, seeds, per_input, dev, dtype, indexed)
    # Each result names its input, so comparisons with a baseline pair inputs by identity, not position.
    results = [replace(r, fingerprint=input_fingerprint(x)) for r, x in zip(results, tensors, strict=True)]
    for i, result in enumerate(results):
        _warn(result, i if indexed else None)
    return results, settled


def _score_serially(
    model: Callable,
    tensors: Sequence[torch.Tensor],
    labels: Sequence[Any] | None,
    seeds: Sequence[int],
    options: ScoreOptions,
    device: torch.device,
    dtype: torch.dtype,
    indexed: bool,
) -> tuple[list[CleverResult], bool | None]:
    """Every input in this process: with a fixed count one after the other, else all of them in rounds."""
    started = time.perf_counter()

    def guard(i: int, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except CleverError as exc:
            if not indexed:
                raise
            raise type(exc)(f"input {i}: {exc}") from exc

    def start(prepared: Callable, i: int) -> InputScoring:
        label = None if labels is None else labels[i]
        return start_input(
            prepared, tensors[i], options=options, device=device, dtype=dtype, label=label, seed=seeds[i]
        )

    with borrowed_model(model, device) as prepared, exact_float32():
        if not options.stopping.adaptive:  # one input at a time: only one input's state is alive
            results = []
            for i in range(len(tensors)):
                state = guard(i, functools.partial(start, prepared, i))
                rounds.run([state], options, started, lambda _j, step, i=i: guard(i, step))  # type: ignore[misc]
                results.append(state.result)
            return results, None
        states = [guard(i, functools.partial(start, prepared, i)) for i in range(len(tensors))]
        settled = rounds.run(states, options, started, guard)
        return [s.result for s in states], settled


__all__ = ["input_fingerprint", "score_inputs"]
