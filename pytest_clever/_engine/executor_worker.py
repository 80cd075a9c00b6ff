"""What runs inside an executor's worker: one input per task, the model loaded once per process.

A task (:func:`score_task`) makes its worker safe before torch runs there
(one torch thread in a forked worker, a watchdog that ends the worker when
the caller dies), checks the device where it is used, scores the input with
the same function as the serial loop, and sends back the result together
with the warnings the scoring raised, which the caller re-emits once per call.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from pytest_clever._engine.device import check_device
from pytest_clever._engine.model_state import Model, borrowed_model, find_modules
from pytest_clever._engine.numerics import exact_float32

#: Models kept deserialised per worker process (one per distinct model scored recently).
CACHE_SIZE = 2
#: Seconds between two checks of the watchdog that ends a worker whose caller died.
WATCH_INTERVAL = 0.5

_cache: OrderedDict[tuple[str, str], Model] = OrderedDict()
_cache_lock = threading.Lock()


def cached_model(key: str, path: str | None, data: bytes | None, device: torch.device) -> Model:
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
class RawInput:
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
    def of(cls, x: torch.Tensor) -> RawInput:
        x = x.detach().cpu().resolve_conj().resolve_neg().contiguous()
        return cls(x.reshape(-1).view(torch.uint8).numpy().tobytes(), x.dtype, tuple(x.shape))

    def tensor(self) -> torch.Tensor:
        if not self.data:  # frombuffer refuses an empty buffer
            return torch.empty(self.shape, dtype=self.dtype)
        return torch.frombuffer(bytearray(self.data), dtype=torch.uint8).view(self.dtype).reshape(self.shape)


@dataclass(frozen=True)
class WorkerSetup:
    """How a task prepares its worker process, decided by the caller for its executor.

    ``caller_pid``: the watchdog ends this process when that process is gone
    (``None``: no watchdog, e.g. a thread pool, which runs in the caller).
    ``one_thread``: a worker forked from the caller runs torch on one thread;
    its copy of the caller's OpenMP thread pool has no threads behind it, and
    the first parallel torch operation would wait for them for ever.
    """

    caller_pid: int | None
    one_thread: bool


_prepared_pid: int | None = None
_prepare_lock = threading.Lock()


def _watch(caller_pid: int) -> None:
    # A worker orphaned by its caller is re-parented: its parent id changes (the caller's own
    # workers) or the caller's pid no longer exists (a forkserver's children).
    parent = os.getppid()
    while True:
        time.sleep(WATCH_INTERVAL)
        try:
            os.kill(caller_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # the pid was reused by another user's process: the caller is gone
            os._exit(1)
        if os.getppid() != parent:
            os._exit(1)


def prepare_worker(setup: WorkerSetup) -> None:
    """Once per worker process: one torch thread if forked, and the watchdog on the caller."""
    global _prepared_pid
    with _prepare_lock:
        if _prepared_pid == os.getpid():
            return
        _prepared_pid = os.getpid()
        if setup.one_thread:
            torch.set_num_threads(1)
        if setup.caller_pid is not None and setup.caller_pid != os.getpid():
            threading.Thread(target=_watch, args=(setup.caller_pid,), name="clever-caller-watch", daemon=True).start()


def worker_name() -> str:
    """This worker as an error message names it."""
    return f"the worker (pid {os.getpid()} on {socket.gethostname()})"


# -- warnings raised in the workers -----------------------------------------------------

#: What a task sends back of one warning: its category and its text.
ShippedWarning = tuple[type[Warning], str]

_local = threading.local()
_capture_lock = threading.Lock()
_capturing = 0
_ALWAYS = ("always", None, Warning, None, 0)
_forward: Any = None


def _show(
    message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    sink = getattr(_local, "sink", None)
    if sink is not None:
        sink.append((category, str(message)))
    elif _forward is not None and _forward is not warnings._showwarning_orig:  # type: ignore[attr-defined]
        _forward(message, category, filename, lineno, file, line)
    else:  # what warnings does with the original showwarning (it may be recording: catch_warnings(record=True))
        warnings._showwarnmsg_impl(  # type: ignore[attr-defined]
            warnings.WarningMessage(message, category, filename, lineno, file, line)
        )


@contextmanager
def captured_warnings() -> Iterator[list[ShippedWarning]]:
    """Record every warning this thread raises inside the block, whatever the filters say.

    Thread-safe, unlike ``warnings.catch_warnings``: tasks in threads of one
    process (a thread pool, a multi-threaded dask worker) each record their own.
    While any thread records, the other threads' warnings pass the filter
    ``always`` and go where they went before. The caller re-emits what was
    recorded under its own filters.
    """
    global _capturing, _forward
    sink: list[ShippedWarning] = []
    with _capture_lock:
        if _capturing == 0:
            _forward = warnings.showwarning
            warnings.filters.insert(0, _ALWAYS)  # type: ignore[attr-defined]
            warnings._filters_mutated()  # type: ignore[attr-defined]
            warnings.showwarning = _show
        _capturing += 1
    _local.sink = sink
    try:
        yield sink
    finally:
        _local.sink = None
        with _capture_lock:
            _capturing -= 1
            if _capturing == 0:
                # Only what this module put there comes out: the filters may have changed meanwhile.
                if _ALWAYS in warnings.filters:
                    warnings.filters.remove(_ALWAYS)  # type: ignore[attr-defined]
                    warnings._filters_mutated()  # type: ignore[attr-defined]
                if warnings.showwarning is _show:
                    warnings.showwarning = _forward


# -- the task ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    """What a task sends back: the result and the warnings raised while scoring."""

    result: Any
    warnings: tuple[ShippedWarning, ...]


def score_task(
    key: str,
    path: str | None,
    data: bytes | None,
    device: torch.device,
    score: Callable,
    raw: RawInput,
    label: int | None,
    seed: int,
    setup: WorkerSetup,
) -> TaskResult:
    """One input, in a worker: what the serial loop does for it."""
    prepare_worker(setup)
    with captured_warnings() as caught:
        check_device(device, where=f"in {worker_name()}")
        x = raw.tensor()
        model = cached_model(key, path, data, device)
        with borrowed_model(model, device) as prepared, exact_float32():
            result = score(prepared, x, label=label, seed=seed)
    return TaskResult(result, tuple(caught))


__all__ = [
    "RawInput",
    "ShippedWarning",
    "TaskResult",
    "WorkerSetup",
    "cached_model",
    "captured_warnings",
    "prepare_worker",
    "score_task",
    "worker_name",
]
