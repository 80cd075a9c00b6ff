"""How the model reaches an executor's workers: serialised once in the caller, loaded once per worker.

- ``dask.distributed`` (``client.get_executor()``): the bytes are scattered
  to every worker with ``broadcast=True``; each task carries only a
  reference to them.
- ``ProcessPoolExecutor`` / ``ThreadPoolExecutor`` (one machine): the bytes
  go to a temporary file whose path travels with each task; a worker reads
  it on its first task. The file is removed when the call ends, on Ctrl-C
  and on SIGTERM too (:func:`~.executor_pools.sigterm_unwinds`).
- Any other executor (Ray through an adapter, ...): the bytes travel with
  each task, but are still deserialised only once per worker process.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
import weakref
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import torch

from pytest_clever._engine.model_state import Model
from pytest_clever.errors import CleverWarning, ExecutorError

#: What to do when the model cannot be pickled, shown in the error.
PICKLE_FIX = (
    "a model scored on an executor travels to the workers by pickle, so it must be importable there: "
    "define its class at module level (not inside a function or test), replace lambdas by a "
    "module-level function or functools.partial of one, or compile it with torch.jit.script / "
    "torch.jit.trace and score the scripted module"
)
#: Prefix of the temporary model files of process and thread pools.
MODEL_FILE_PREFIX = "pytest-clever-model-"


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


def dask_client(executor: Executor) -> Any | None:
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


def ship(executor: Executor, data: bytes, stack: ExitStack, device: torch.device) -> tuple[str | None, Any]:
    """Make the model bytes reachable from every worker once; return the task's ``(path, data)``."""
    client = dask_client(executor)
    if client is not None:
        _check_dask_malloc(client, device)
        scattered = client.scatter(data, broadcast=True, hash=False)
        stack.callback(scattered.release)
        return None, scattered  # dask resolves the reference to the bytes already on the worker
    if isinstance(executor, (ProcessPoolExecutor, ThreadPoolExecutor)):
        fd, path = tempfile.mkstemp(prefix=MODEL_FILE_PREFIX, suffix=".pt")
        stack.callback(os.unlink, path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path, None
    return None, data


__all__ = ["MODEL_FILE_PREFIX", "PICKLE_FIX", "dask_client", "serialise_model", "ship", "slow_malloc_workers"]
