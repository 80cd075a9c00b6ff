"""Executors named by a setting (the pytest route): ``module:factory``, ``dask://HOST:PORT``, ``ray://HOST:PORT``.

Each spec is opened once per process and shut down at the end of the run
(:func:`close_executors`). A connection that fails is remembered too: every
later test of the session gets the same one-line error at once, instead of
waiting for the connection timeout again.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from pytest_clever.errors import ExecutorError

#: Default seconds a ``dask://`` or ``ray://`` address is given to answer (dask's own default is 30 s).
DEFAULT_CONNECT_TIMEOUT = 10.0

_open: dict[str, tuple[Executor, Callable[[], None]]] = {}
_failed: dict[str, str] = {}


class RayExecutor(Executor):
    """Ray's tasks as a ``concurrent.futures.Executor`` (the adapter of docs/cluster.md, without resources)."""

    def __init__(self, ray: Any) -> None:
        self._ray = ray

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        return self._ray.remote(fn).remote(*args, **kwargs).future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._ray.shutdown()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _connect_dask(address: str, timeout: float) -> tuple[Executor, Callable[[], None]]:
    from distributed import Client  # only when asked for: the plugin never imports dask otherwise

    client = Client(address if "://" in address else "tcp://" + address, timeout=timeout)
    return client.get_executor(), client.close


def _connect_ray(address: str, timeout: float) -> tuple[Executor, Callable[[], None]]:
    import ray  # only when asked for

    # Ray Client retries for a long while on its own: the connection runs in a thread given ``timeout``.
    done: Future = Future()

    def connect() -> None:
        try:
            ray.init(address="ray://" + address, log_to_driver=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            done.set_exception(exc)
        else:
            done.set_result(None)

    threading.Thread(target=connect, name="clever-ray-connect", daemon=True).start()
    done.result(timeout=timeout)
    executor = RayExecutor(ray)
    return executor, executor.shutdown


def _connect(spec: str, timeout: float) -> tuple[Executor, Callable[[], None]]:
    scheme, _, address = spec.partition("://")
    connect = _connect_dask if scheme == "dask" else _connect_ray
    try:
        return connect(address, timeout)
    except ImportError as exc:
        raise ExecutorError(
            f"executor {spec!r}: {scheme} is not installed here ({exc}); pip install 'pytest-clever[{scheme}]'"
        ) from None
    except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, a cluster library's own: said in one line
        reason = f"no answer within {timeout:g} s" if isinstance(exc, FutureTimeoutError) else _first_line(exc)
        raise ExecutorError(
            f"executor {spec!r}: cannot connect to {address} (connect timeout {timeout:g} s; {reason}); "
            "this pytest process does not try again. Check the address and that the scheduler runs, "
            "or raise --clever-executor-connect-timeout"
        ) from None


def _from_factory(spec: str) -> tuple[Executor, Callable[[], None]]:
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
    if isinstance(executor, ProcessPoolExecutor):
        from pytest_clever._engine.executor_pools import close_pool

        # At the end of the run a worker still busy scores an input of a call that already failed (e.g. on
        # executor_timeout): shutdown() would wait for it, possibly for ever, so the pool's workers are ended.
        return executor, functools.partial(close_pool, executor)
    return executor, executor.shutdown


def executor_from_spec(spec: str, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Executor:
    """The executor named by ``module:factory``, ``dask://HOST:PORT`` or ``ray://HOST:PORT``; one per spec and process.

    ``module:factory`` is called without arguments and must return a
    ``concurrent.futures.Executor``; ``dask://HOST:PORT`` connects a
    ``distributed.Client`` to that scheduler and uses its executor;
    ``ray://HOST:PORT`` connects Ray Client and submits Ray tasks. A
    connection not made within ``connect_timeout`` seconds raises
    :class:`ExecutorError`, and so does every later call for the same spec.
    """
    if spec in _open:
        return _open[spec][0]
    if spec in _failed:
        raise ExecutorError(_failed[spec]) from None
    try:
        opened = _connect(spec, connect_timeout) if "://" in spec else _from_factory(spec)
    except ExecutorError as exc:
        _failed[spec] = str(exc)
        raise
    _open[spec] = opened
    return opened[0]


def close_executors() -> None:
    """Shut down every executor made by :func:`executor_from_spec` in this process; forget failed connections."""
    _failed.clear()
    while _open:
        _, (_, close) = _open.popitem()
        close()


__all__ = ["DEFAULT_CONNECT_TIMEOUT", "RayExecutor", "close_executors", "executor_from_spec"]
