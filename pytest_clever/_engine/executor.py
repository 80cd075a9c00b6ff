"""Score the inputs of one ``clever_scores`` call on a ``concurrent.futures.Executor``.

Each input is one task (:func:`~.executor_worker.score_task`); the model is
serialised once in the caller and loaded once per worker process
(:mod:`.executor_ship`). Per-input seeds are computed by the caller (the
same function as the serial path), so a worker's result is bit-identical to
the serial one on the same device and torch build. Results come back in input
order, with the warnings the workers raised, re-emitted here once per call.

Nothing waits for ever: a wait in which no input comes back for ``timeout``
seconds raises :class:`ExecutorError` naming the pending inputs. A task lost
with its worker is submitted again; a process pool that broke is replaced
by a fresh one of the same kind (:mod:`.executor_pools`), and an input lost
again there is tried once more alone, so that one input that kills its
worker does not take the others with it. What was tried is in the error.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, CancelledError, Executor, Future, wait
from contextlib import ExitStack
from typing import Any

import torch

from pytest_clever._engine.executor_pools import (
    check_executor,
    close_pool,
    describe,
    fresh_pool,
    is_broken,
    refused_shutdown,
    sigterm_unwinds,
    start_method,
    worker_setup,
)
from pytest_clever._engine.executor_ship import PICKLE_FIX, serialise_model, ship, slow_malloc_workers
from pytest_clever._engine.executor_specs import close_executors, executor_from_spec
from pytest_clever._engine.executor_worker import RawInput, TaskResult, score_task
from pytest_clever._engine.model_state import Model, borrowed_model
from pytest_clever.core.validation import DEFAULT_EXECUTOR_TIMEOUT
from pytest_clever.errors import CleverError, CleverWarning, ExecutorError, InvalidInputError

#: Exceptions (by class name, so that no cluster library is imported) meaning the
#: worker running a task died or left, not that scoring the input failed.
LOST_WORKER_ERRORS = frozenset(
    {"KilledWorker", "CommClosedError", "FutureCancelledError", "WorkerCrashedError", "NodeDiedError", "OwnerDiedError"}
)
#: Characters of an exception's message kept in a "what was tried" line.
REASON_CHARS = 120


def _is_lost(exc: BaseException) -> bool:
    return isinstance(exc, (BrokenExecutor, CancelledError)) or type(exc).__name__ in LOST_WORKER_ERRORS


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    text = text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failure(index: int, exc: BaseException) -> CleverError:
    """The error for input ``index``: the engine's own error type, or :class:`ExecutorError`."""
    if isinstance(exc, CleverError) and type(exc).__module__ == CleverError.__module__:  # not a cluster's wrapper of it
        error = type(exc)(f"input {index}: {exc}")
    else:
        error = ExecutorError(f"input {index}: scoring failed in a worker: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _stuck(executor: Executor, timeout: float, pending: list[int]) -> str:
    return (
        f"no input came back from the executor {describe(executor)} for {timeout:g} s; input(s) "
        f"{', '.join(map(str, pending))} still pending (cancelled where not started). Its workers may be "
        "stuck (e.g. dead, or waiting on a lock they inherited), or one input takes longer than that: raise "
        "executor_timeout (--clever-executor-timeout) if so; see docs/cluster.md"
    )


def _run_round(
    executor: Executor,
    task: Callable[[int], tuple],
    indices: Sequence[int],
    results: dict[int, TaskResult],
    on_result: Callable[[int], None] | None,
    timeout: float,
) -> dict[int, str]:
    """Submit ``indices`` and fill ``results``, calling ``on_result(i)`` as each arrives.

    Returns the inputs lost with their worker, with what happened to each; the
    first input that fails for another reason, a wait of ``timeout`` seconds
    with no input back, or an interrupt cancel the rest and raise.
    """
    futures: dict[Future, int] = {}
    lost: dict[int, str] = {}
    try:
        for n, i in enumerate(indices):
            try:
                futures[executor.submit(score_task, *task(i))] = i
            except BrokenExecutor as exc:  # the pool died under an earlier task: nothing more goes in
                lost.update((j, f"not started, the executor was broken ({_reason(exc)})") for j in indices[n:])
                break
            except RuntimeError as exc:
                if "shutdown" in str(exc) or "shut down" in str(exc):
                    raise InvalidInputError(refused_shutdown(executor)) from None
                raise
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            if not done:
                raise ExecutorError(_stuck(executor, timeout, sorted(futures[f] for f in pending)))
            for future in sorted(done, key=futures.__getitem__):
                i = futures[future]
                error = CancelledError() if future.cancelled() else future.exception()  # cancelled by the cluster
                if error is None:
                    results[i] = future.result()
                    if on_result is not None:
                        on_result(i)
                elif _is_lost(error):
                    lost[i] = f"its worker was lost ({_reason(error)})"
                else:
                    raise _failure(i, error)
    except BaseException:  # a failed input, a failing progress callable, Ctrl-C, SIGTERM, a timeout
        for other in futures:
            other.cancel()
        raise
    return lost


def _lost_error(history: dict[int, list[str]]) -> ExecutorError:
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, tried in sorted(history.items()):
        groups.setdefault(tuple(tried), []).append(i)
    parts = [
        f"input(s) {', '.join(map(str, indices))}: the worker scoring them was lost each time they were tried "
        f"({'; then '.join(tried)})"
        for tried, indices in groups.items()
    ]
    return ExecutorError(
        "; ".join(parts) + ". No score was computed for them. A worker that dies on the same inputs every time "
        "points to the model (e.g. its memory per input); otherwise rerun"
    )


class _Retries:
    """The executor each round runs on, and what happened to each lost input on each round."""

    def __init__(self, executor: Executor, stack: ExitStack) -> None:
        self.current = executor
        self.stack = stack
        self.where = f"on the {describe(executor)} passed"
        self.history: dict[int, list[str]] = {}
        self.replaced = 0

    def record(self, lost: dict[int, str]) -> list[int]:
        for i, what in lost.items():
            self.history.setdefault(i, []).append(f"{self.where}: {what}")
        return sorted(lost)

    def next_executor(self, alone: bool = False) -> Executor:
        """The executor of the next round: a fresh pool for a broken process pool, else the same one."""
        if is_broken(self.current):
            self.current = fresh_pool(self.current)  # type: ignore[arg-type]
            self.stack.callback(close_pool, self.current)
            self.replaced += 1
            self.where = f"{'alone ' if alone else ''}on a fresh {describe(self.current)} replacing the broken one"
        else:
            self.where = f"{'alone ' if alone else 'again '}on the same {describe(self.current)}"
        return self.current


def _reemit(results: Sequence[TaskResult]) -> None:
    """The workers' warnings, each distinct one once per call, at the user's line (as the serial path)."""
    seen: set[tuple[type[Warning], str]] = set()
    for result in results:
        for category, text in result.warnings:
            if (category, text) not in seen:
                seen.add((category, text))
                # Five frames up: _reemit, score_on_executor, score_inputs, the public function, the user's line.
                warnings.warn(text, category, stacklevel=5)


def score_on_executor(
    executor: Executor,
    model: Model,
    inputs: Sequence[torch.Tensor],
    labels: Sequence[int | None],
    seeds: Sequence[int],
    device: torch.device,
    score: Callable,
    on_result: Callable[[int], None] | None = None,
    timeout: float = DEFAULT_EXECUTOR_TIMEOUT,
) -> list[Any]:
    """Score ``inputs[i]`` with ``seeds[i]`` as one task each; results in input order.

    ``score(prepared_model, x, label=..., seed=...)`` scores one input; it
    travels to the workers, so it must be picklable (a ``functools.partial``
    of a module-level function). The model is checked for picklability before
    any task is submitted, and handed back unchanged. ``on_result(i)`` is
    called in the caller as input ``i``'s result arrives (completion order).
    ``timeout``: seconds a wait may go with no input back before it fails.
    """
    check_executor(executor)
    with borrowed_model(model, None) as prepared:  # ship it in eval mode; warn like the serial path
        data = serialise_model(prepared)
    key = hashlib.sha256(data).hexdigest()
    results: dict[int, TaskResult] = {}
    with sigterm_unwinds(), ExitStack() as stack:
        path, shipped = ship(executor, data, stack, device)
        raw = [RawInput.of(x) for x in inputs]

        def run(on: Executor, indices: Sequence[int]) -> dict[int, str]:
            setup = worker_setup(on)
            return _run_round(
                on,
                lambda i: (key, path, shipped, device, score, raw[i], labels[i], seeds[i], setup),
                indices,
                results,
                on_result,
                timeout,
            )

        retries = _Retries(executor, stack)
        lost = retries.record(run(executor, range(len(inputs))))
        if lost:  # once more, on whatever workers are left (or a fresh pool)
            lost = retries.record(run(retries.next_executor(), lost))
        if lost and start_method(retries.current) is not None:
            # One worker's death breaks a whole process pool: alone, an input is lost only for itself.
            lost = [i for i in lost if retries.record(run(retries.next_executor(alone=True), [i]))]
        if lost:
            raise _lost_error({i: retries.history[i] for i in lost})
        if retries.replaced:
            died = any("its worker was lost" in what for tried in retries.history.values() for what in tried)
            warnings.warn(
                f"the {describe(executor)} passed {'broke when a worker died' if died else 'was already broken'} "
                f"(input(s) {', '.join(map(str, sorted(retries.history)))} lost or not started): they were scored "
                "on a fresh pool of the same kind, closed again at the end of this call. The pool passed stays "
                "broken: make a new one for later calls",
                CleverWarning,
                stacklevel=4,
            )
    ordered = [results[i] for i in range(len(inputs))]
    _reemit(ordered)
    return [r.result for r in ordered]


__all__ = [
    "PICKLE_FIX",
    "close_executors",
    "executor_from_spec",
    "score_on_executor",
    "serialise_model",
    "slow_malloc_workers",
]
