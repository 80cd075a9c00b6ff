"""How the test processes use torch's CPU threads: the OpenMP wait policy and the intra-op thread count.

Torch's CPU kernels run on OpenMP (its bundled GNU libgomp). By default an
OpenMP thread that finishes its share of a parallel region spins for a while
before it sleeps. On an idle machine that saves a wake-up; on a CI runner
shared with another job it is a collapse: a thread waiting for one that the
other job holds off its core burns that core, and every kernel waits for the
slowest thread (the README's first command took 6 times longer on 2 cores
with one other busy process). With ``OMP_WAIT_POLICY=PASSIVE`` waiting threads
sleep at once. libgomp reads the variable when it is loaded, i.e. at
``import torch``: :func:`prefer_passive_openmp` sets it when the plugin is
loaded, which pytest does before it imports any conftest or test module.
"""

from __future__ import annotations

import os
import sys

#: Environment variables through which a user already chose torch's thread count.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Environment variables through which a user already chose how OpenMP threads wait.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: The wait policy test processes get unless the user chose one.
WAIT_POLICY = "PASSIVE"

_threads: int | None = None  # this process's torch thread count, once the fixture set it up


def prefer_passive_openmp() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process and its children; return whether it was set.

    Left alone when the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` (``GOMP_SPINCOUNT=300000``
    restores libgomp's own default), and when torch is already imported: its OpenMP runtime has
    read its settings by then, and the variable would only mislead.
    """
    if "torch" in sys.modules or any(v in os.environ for v in WAIT_VARIABLES):
        return False
    os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY
    return True


def share_cores(threads: int | None) -> int:
    """Set torch's intra-op threads once per process and return the count in use.

    ``threads`` (``--clever-threads`` / ``clever_threads``) wins. Otherwise, on
    an xdist worker, the cores are shared among the workers (at least one
    each), since every worker running torch on all cores makes ``-n`` slower
    than serial; unless the user set ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``.
    """
    global _threads
    import torch

    if _threads is None:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
        if threads is not None:
            torch.set_num_threads(threads)
        elif workers > 1 and not any(os.environ.get(v) for v in THREAD_VARIABLES):
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            torch.set_num_threads(max(1, cores // workers))
        _threads = torch.get_num_threads()
    return _threads
