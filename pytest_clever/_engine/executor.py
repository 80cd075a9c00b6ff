"""Score the inputs of one ``clever_scores`` call on a ``concurrent.futures.Executor``.

Each input is one task. The model is serialised once in the caller and
reaches each worker process once (see :func:`_ship`), where it is
deserialised once and cached by the content hash of its bytes:

- ``dask.distributed`` (``client.get_executor()``): the bytes are scattered
  to every worker with ``broadcast=True``; each task carries only a
  reference to them.
- ``ProcessPoolExecutor`` / ``ThreadPoolExecutor`` (one machine): the bytes
  go to a temporary file whose path travels with each task; a worker reads
  it on its first task.
- Any other executor (Ray through an adapter, ...): the bytes travel with
  each task, but are still deserialised only once per worker process.

Per-input seeds are computed by the caller (the same function as the
serial path), so a worker's result is bit-identical to the serial one on
the same device and torch build. Results come back in input order; a task
lost with its worker is resubmitted once, then reported by input index.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import tempfile
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import (
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch

from pytest_clever._engine.model_state import Model, borrowed_model, find_modules
from pytest_clever._engine.numerics import exact_float32
from pytest_clever.errors import CleverError, CleverWarning, ExecutorError, InvalidInputError

#: Exceptions (by class name, so that no cluster library is imported) meaning the
#: worker running a task died or left, not that scoring the input failed.
LOST_WORKER_ERRORS = frozenset(
    {"KilledWorker", "CommClosedError", "FutureCancelledError", "WorkerCrashedError", "NodeDiedError", "OwnerDiedError"}
)
#: What to do when the model cannot be pickled, shown in the error.
PICKLE_FIX = (
    "a model scored on an executor travels to the workers by pickle, so it must be importable there: "
    "define its class at module level (not inside a function or test), replace lambdas by a "
    "module-level function or functools.partial of one, or compile it with torch.jit.script / "
    "torch.jit.trace and score the scripted module"
)
#: Models kept deserialised per worker process (one per distinct model scored recently).
CACHE_SIZE = 2

# -- in the worker ----------------------------------------------------------------------

_cache: OrderedDict[tuple[str, str], Model] = OrderedDict()
_cache_lock = threading.Lock()


def _cached_model(key: str, path: str | None, data: bytes | None, device: torch.device) -> Model:
    """The model with content hash ``key`` on ``device``, deserialised on first use in this process."""
    with _cache_lock:  # threads of one worker share the model, and load it once
        entry = (key, str(device))
        if entry in _cache:
            _cache.move_to_end(entry)
            return _cache[entry]
        if path is not None:
            with open(path, "rb") as f:
                data = f.read()
        assert data is not None, "a task carries the model's file or its bytes"
        model = torch.load(io.BytesIO(data), map_location=device, weights_only=False)
        # Every module the callable uses (a Module, or one inside a lambda/partial/method) is
        # prepared for good: borrowed_model then restores these same flags, so concurrent
        # tasks in threads of one process never see the train mode.
        for module in find_modules(model)[0]:
            module.eval()
            module.requires_grad_(False)
        _cache[entry] = model
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return model


@dataclass(frozen=True)
class _RawInput:
    """An input as its raw bytes, dtype and shape: how inputs travel to the workers.

    A tensor sent as itself costs far more: to a process pool it goes through
    torch's shared-memory reductions (file-descriptor passing per task), and
    unpickling a tensor runs ``torch.load``; these bytes cost microseconds
    (measured in ``benchmarks/bench_executor.py``). The values are on the CPU:
    the worker's scoring moves the input to the device, as the serial path does.
    """

    data: bytes
    dtype: torch.dtype
    shape: tuple[int, ...]

    @classmethod
    def of(cls, x: torch.Tensor) -> _RawInput:
        x = x.detach().cpu().resolve_conj().resolve_neg().contiguous()
        return cls(x.reshape(-1).view(torch.uint8).numpy().tobytes(), x.dtype, tuple(x.shape))

    def tensor(self) -> torch.Tensor:
        if not self.data:  # frombuffer refuses an empty buffer
            return torch.empty(self.shape, dtype=self.dtype)
        return torch.frombuffer(bytearray(self.data), dtype=torch.uint8).view(self.dtype).reshape(self.shape)


def _score_task(
    key: str,
    path: str | None,
    data: bytes | None,
    device: torch.device,
    score: Callable,
    raw: _RawInput,
    label: int | None,
    seed: int,
) -> Any:
    """One input, in a worker: what the serial loop does for it."""
    x = raw.tensor()
    model = _cached_model(key, path, data, device)
    with borrowed_model(model, device) as prepared, exact_float32():
        return score(prepared, x, label=label, seed=seed)


# -- in the caller ----------------------------------------------------------------------


def serialise_model(model: Model) -> bytes:
    """The model as bytes (``torch.save``), or :class:`ExecutorError` saying how to make it shippable."""
    buffer = io.BytesIO()
    try:
        torch.save(model, buffer)
    except Exception as exc:  # PicklingError, AttributeError (local objects), TypeError (modules, locks)
        raise ExecutorError(
            f"cannot send the model to the executor's workers ({type(exc).__name__}: {exc}): {PICKLE_FIX}"
        ) from exc
    return buffer.getvalue()


def _dask_client(executor: Executor) -> Any | None:
    """The ``distributed.Client`` behind ``client.get_executor()``, without importing dask."""
    if type(executor).__module__.startswith("distributed.") and hasattr(executor, "_client"):
        return executor._client
    return None


#: Dask clients whose workers' malloc settings were checked (once per client).
_malloc_checked: weakref.WeakSet[Any] = weakref.WeakSet()


def _malloc_environment() -> tuple[str | None, str | None]:
    """In a worker: glibc's trim and mmap thresholds as its environment set them at start."""
    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("MALLOC_MMAP_THRESHOLD_")


def slow_malloc_workers(environments: dict[str, tuple[str | None, str | None]]) -> list[str]:
    """Workers whose fixed trim threshold turned off glibc's dynamic mmap threshold (no mmap threshold set)."""
    return sorted(w for w, (trim, mmap) in environments.items() if trim is not None and mmap is None)


def _check_dask_malloc(client: Any, device: torch.device) -> None:
    """Warn once per client when CPU scoring would run slower for dask's malloc setting (docs/cluster.md)."""
    if device.type != "cpu" or client in _malloc_checked:
        return
    _malloc_checked.add(client)
    try:
        environments = client.run(_malloc_environment)
    except Exception:  # noqa: BLE001 - only a performance hint: a cluster that refuses client.run scores all the same
        return
    slow = slow_malloc_workers(environments)
    if slow:
        warnings.warn(
            f"{len(slow)} dask worker(s) run with MALLOC_TRIM_THRESHOLD_ and no MALLOC_MMAP_THRESHOLD_ "
            "(dask's default): glibc then maps and unmaps every large temporary, and CPU scoring ran "
            "about 1.5x slower in measurements. Add MALLOC_MMAP_THRESHOLD_ (e.g. 33554432) to "
            "distributed.nanny.pre-spawn-environ before the workers start; see docs/cluster.md",
            CleverWarning,
            stacklevel=4,
        )


def _ship(executor: Executor, data: bytes, stack: ExitStack, device: torch.device) -> tuple[str | None, Any]:
    """Make the model bytes reachable from every worker once; return the task's ``(path, data)``."""
    client = _dask_client(executor)
    if client is not None:
        _check_dask_malloc(client, device)
        scattered = client.scatter(data, broadcast=True, hash=False)
        stack.callback(scattered.release)
        return None, scattered  # dask resolves the reference to the bytes already on the worker
    if isinstance(executor, (ProcessPoolExecutor, ThreadPoolExecutor)):
        fd, path = tempfile.mkstemp(prefix="pytest-clever-model-", suffix=".pt")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        stack.callback(os.unlink, path)
        return path, None
    return None, data


def _is_lost(exc: BaseException) -> bool:
    return isinstance(exc, (BrokenExecutor, CancelledError)) or type(exc).__name__ in LOST_WORKER_ERRORS


def _failure(index: int, exc: BaseException) -> CleverError:
    """The error for input ``index``: the engine's own error type, or :class:`ExecutorError`."""
    if isinstance(exc, CleverError) and type(exc).__module__ == CleverError.__module__:  # not a cluster's wrapper of it
        error = type(exc)(f"input {index}: {exc}")
    else:
        error = ExecutorError(f"input {index}: scoring failed in a worker: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _run_round(
    submit: Callable[[int], Future],
    indices: Sequence[int],
    results: dict[int, Any],
    on_result: Callable[[int], None] | None = None,
) -> list[int]:
    """Submit ``indices`` and fill ``results``, calling ``on_result(i)`` as each arrives.

    Returns the inputs lost with their worker; the first input that fails for another reason cancels the rest
    and raises.
    """
    futures: dict[Future, int] = {}
    lost: list[int] = []
    for n, i in enumerate(indices):
        try:
            futures[submit(i)] = i
        except BrokenExecutor:  # the pool died under an earlier task: nothing more goes in
            lost.extend(indices[n:])
            break
    try:
        for future in as_completed(futures):
            i = futures[future]
            exc = CancelledError() if future.cancelled() else future.exception()  # cancelled by the cluster
            if exc is None:
                results[i] = future.result()
                if on_result is not None:
                    on_result(i)
            elif _is_lost(exc):
                lost.append(i)
            else:
                raise _failure(i, exc)
    except BaseException:  # a failed input, a failing progress callable, Ctrl-C: nothing more runs
        for other in futures:
            other.cancel()
        raise
    return sorted(lost)


def score_on_executor(
    executor: Executor,
    model: Model,
    inputs: Sequence[torch.Tensor],
    labels: Sequence[int | None],
    seeds: Sequence[int],
    device: torch.device,
    score: Callable,
    on_result: Callable[[int], None] | None = None,
) -> list[Any]:
    """Score ``inputs[i]`` with ``seeds[i]`` as one task each; results in input order.

    ``score(prepared_model, x, label=..., seed=...)`` scores one input; it
    travels to the workers, so it must be picklable (a ``functools.partial``
    of a module-level function). The model is checked for picklability before
    any task is submitted, and handed back unchanged. ``on_result(i)`` is
    called in the caller as input ``i``'s result arrives (completion order).
    """
    if not callable(getattr(executor, "submit", None)):
        raise InvalidInputError(f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
    with borrowed_model(model, None) as prepared:  # ship it in eval mode; warn like the serial path
        data = serialise_model(prepared)
    key = hashlib.sha256(data).hexdigest()
    results: dict[int, Any] = {}
    with ExitStack() as stack:
        path, shipped = _ship(executor, data, stack, device)

        raw = [_RawInput.of(x) for x in inputs]

        def submit(i: int) -> Future:
            return executor.submit(_score_task, key, path, shipped, device, score, raw[i], labels[i], seeds[i])

        lost = _run_round(submit, list(range(len(inputs))), results, on_result)
        if lost:  # once more, on whatever workers are left
            lost = _run_round(submit, lost, results, on_result)
    if lost:
        raise ExecutorError(
            f"input(s) {', '.join(map(str, lost))}: the worker scoring them was lost (killed, out of "
            "memory, or the executor broke), and so was the retry; no score was computed for them. A "
            "worker that dies on the same inputs every time points to the model (e.g. its memory per "
            "input); otherwise rerun"
        )
    return [results[i] for i in range(len(inputs))]


# -- executors from a setting (the pytest route) ----------------------------------------

_open: dict[str, tuple[Executor, Callable[[], None]]] = {}


def executor_from_spec(spec: str) -> Executor:
    """The executor named by ``module:factory`` or ``dask://HOST:PORT``; one per spec and process.

    ``module:factory`` is called without arguments and must return a
    ``concurrent.futures.Executor``; ``dask://HOST:PORT`` connects a
    ``distributed.Client`` to that scheduler and uses its executor.
    """
    if spec in _open:
        return _open[spec][0]
    if spec.startswith("dask://"):
        from distributed import Client  # only when asked for: the plugin never imports dask otherwise

        address = spec[len("dask://") :]
        client = Client(address if "://" in address else "tcp://" + address)
        executor, close = client.get_executor(), client.close
    else:
        module, _, name = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise ExecutorError(f"executor {spec!r}: cannot import {name} from {module}: {exc}") from exc
        executor = factory()
        if not isinstance(executor, Executor):
            raise ExecutorError(
                f"executor {spec!r}: {name}() returned {type(executor).__name__}, not a concurrent.futures.Executor"
            )
        close = executor.shutdown
    _open[spec] = (executor, close)
    return executor


def close_executors() -> None:
    """Shut down every executor made by :func:`executor_from_spec` in this process."""
    while _open:
        _, (_, close) = _open.popitem()
        close()


__all__ = ["score_on_executor", "serialise_model", "executor_from_spec", "close_executors", "PICKLE_FIX"]
