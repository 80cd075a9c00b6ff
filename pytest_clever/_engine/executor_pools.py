"""Process pools on the caller's machine: fork safety, a fresh pool for a broken one, and SIGTERM.

A ``ProcessPoolExecutor`` is the one executor whose workers are children of
the caller: it is the one that can deadlock (a forked copy of torch's OpenMP
pool), break for good (one dead worker breaks the whole pool), and outlive
its caller. Everything that depends on that lives here.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

from pytest_clever._engine.executor_worker import WorkerSetup
from pytest_clever.errors import ExecutorError, InvalidInputError


def start_method(executor: Executor) -> str | None:
    """How a ``ProcessPoolExecutor`` starts its workers (``fork``, ``spawn``, ``forkserver``); None for others."""
    if not isinstance(executor, ProcessPoolExecutor):
        return None
    context = getattr(executor, "_mp_context", None) or multiprocessing.get_context()
    return str(context.get_start_method())


def worker_setup(executor: Executor) -> WorkerSetup:
    """What each task does first in its worker (see :class:`WorkerSetup`).

    Only a local process pool's workers watch the caller: a dask or Ray worker
    runs on another machine, where the caller's process id means nothing.
    """
    method = start_method(executor)
    return WorkerSetup(caller_pid=None if method is None else os.getpid(), one_thread=method == "fork")


def describe(executor: Executor) -> str:
    """The executor as messages name it: its class, and its workers where it has a count."""
    workers = getattr(executor, "_max_workers", None)
    return type(executor).__name__ + (f" ({workers} workers)" if isinstance(workers, int) else "")


def check_executor(executor: Any) -> None:
    """Refuse what cannot take tasks: not an executor, the class instead of an instance, a shut-down pool."""
    if isinstance(executor, type):
        raise InvalidInputError(
            f"executor must be an executor instance, got the class {executor.__name__}: "
            f"pass {executor.__name__}(...) (e.g. ProcessPoolExecutor(2)), not the class itself"
        )
    if not callable(getattr(executor, "submit", None)):
        raise InvalidInputError(f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
    # ThreadPoolExecutor and ProcessPoolExecutor keep this flag; other executors say so when submitting. A
    # broken process pool sets it too: that one is replaced by a fresh pool (score_on_executor), not refused.
    shut = getattr(executor, "_shutdown_thread", False) or getattr(executor, "_shutdown", False) is True
    if shut and not is_broken(executor):
        raise InvalidInputError(refused_shutdown(executor))


def refused_shutdown(executor: Executor) -> str:
    return (
        f"executor {describe(executor)} is shut down (its with block ended, or shutdown() was called): "
        "pass an executor that is still open, e.g. call clever_scores inside the with block"
    )


def is_broken(executor: Executor) -> bool:
    """A process pool that lost a worker refuses every task from then on."""
    return isinstance(executor, ProcessPoolExecutor) and bool(getattr(executor, "_broken", False))


def fresh_pool(broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
    """A new pool like ``broken``: as many workers, the same start method and initializer."""
    return ProcessPoolExecutor(
        max_workers=getattr(broken, "_max_workers", None),
        mp_context=getattr(broken, "_mp_context", None),
        initializer=getattr(broken, "_initializer", None),
        initargs=getattr(broken, "_initargs", ()),
    )


def close_pool(pool: ProcessPoolExecutor) -> None:
    """Shut down a pool this module made, killing workers still running a task (they score nothing wanted)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)


class Terminated(BaseException):
    """SIGTERM arrived while waiting for an executor: unwinds like Ctrl-C, so every cleanup runs."""


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM (how CI cancels a job) unwinds the stack as Ctrl-C does.

    On the way out the signal goes on to the handler that was there before
    (by default: the process ends with SIGTERM), after every ``finally`` below
    has run: temporary model files removed, pending tasks cancelled, pools of
    ours closed. Only in the main thread, where Python runs signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN or previous is None:  # ignored, or set outside Python: leave it alone
        yield
        return

    def unwind(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signal.SIGTERM, None)
        else:
            os.kill(os.getpid(), signal.SIGTERM)  # the default action: this process ends here
        raise ExecutorError("interrupted by SIGTERM while scoring on the executor; pending inputs cancelled") from None
    finally:
        if signal.getsignal(signal.SIGTERM) is unwind:
            signal.signal(signal.SIGTERM, previous)


__all__ = [
    "Terminated",
    "check_executor",
    "close_pool",
    "describe",
    "fresh_pool",
    "is_broken",
    "refused_shutdown",
    "sigterm_unwinds",
    "start_method",
    "worker_setup",
]
