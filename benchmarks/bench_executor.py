"""Executor path: speed-up with 2 local workers, and per-input overhead on tiny models.

Run on purpose (not part of the test suite)::

    python benchmarks/bench_executor.py [--inputs 8] [--repeats 3] [--dask]

1. Speed-up: a CPU-bound MLP, default settings (100 x 128 samples per input),
   scored serially at 1 and at 2 torch threads, and on a warm
   ``ProcessPoolExecutor`` of 2 workers at 1 thread each (and a dask
   ``LocalCluster`` of 2 single-threaded workers with ``--dask``).
2. Overhead: a tiny linear model scored serially at 1 thread against one
   1-thread worker, per input; the model is new to the worker in each call
   (so its one ship is included).

Every figure is the best of ``--repeats`` runs (the machine may be shared).
Results must agree bit for bit with the serial run; the script checks it.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor

import torch
from torch import nn

from pytest_clever import clever_scores


class MLP(nn.Module):
    def __init__(self, width: int = 256, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Linear(64, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Tiny(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def best(repeats: int, run) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - started)
    return min(times), out


def scores(report) -> list[tuple]:
    return [(r.score, r.batch_maxima) for r in report.results]


def pool(workers: int) -> Executor:
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"), initializer=torch.set_num_threads, initargs=(1,)
    )


def speedup(n_inputs: int, repeats: int, use_dask: bool) -> None:
    model = MLP()
    xs = torch.randn(n_inputs, 64, generator=torch.Generator().manual_seed(1))
    settings = dict(radius=0.5, seed=3)
    serial = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        serial[threads], reference = best(repeats, lambda: clever_scores(model, xs, **settings))
    torch.set_num_threads(1)
    executors = {"ProcessPoolExecutor(2)": pool(2)}
    if use_dask:
        import dask
        from distributed import Client, LocalCluster

        # dask's default MALLOC_TRIM_THRESHOLD_ turns off glibc's dynamic mmap threshold, so every
        # temporary of 128 KiB or more is mmap'ed and unmapped again: 1.5x slower scoring here.
        # A fixed mmap threshold (docs/cluster.md) gives the speed back.
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"), MALLOC_MMAP_THRESHOLD_=32 * 2**20)
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ})
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
        client = Client(cluster)
        client.run(torch.set_num_threads, 1)
        executors["dask LocalCluster(2 x 1)"] = client.get_executor()
    print(f"speed-up, MLP 64-256-256-10, {n_inputs} inputs x 100 x 128 samples, best of {repeats}:")
    print(f"  serial, 1 torch thread : {serial[1]:7.2f} s")
    print(f"  serial, 2 torch threads: {serial[2]:7.2f} s")
    for name, executor in executors.items():
        clever_scores(model, xs[:2], executor=executor, **settings)  # start the workers, ship the model
        elapsed, report = best(repeats, functools.partial(clever_scores, model, xs, executor=executor, **settings))
        assert scores(report) == scores(reference), f"{name}: not bit-identical to serial"
        print(
            f"  {name:<23}: {elapsed:7.2f} s   x{serial[1] / elapsed:.2f} vs 1 thread, "
            f"x{serial[2] / elapsed:.2f} vs 2 threads (bit-identical)"
        )
    executors["ProcessPoolExecutor(2)"].shutdown()
    if use_dask:
        client.close()
        cluster.close()


def overhead(n_inputs: int, repeats: int) -> None:
    xs = torch.randn(n_inputs, 6, generator=torch.Generator().manual_seed(1))
    settings = dict(radius=0.5, seed=3)
    torch.set_num_threads(1)
    executor = pool(1)
    clever_scores(Tiny(99), xs[:1], executor=executor, **settings)  # start the worker
    serial, reference = best(repeats, lambda: clever_scores(Tiny(), xs, **settings))
    calls = iter(range(10**6))

    def fresh() -> Tiny:  # same weights, different bytes: the worker loads it anew, as a new model would be
        model = Tiny()
        model.call = next(calls)
        return model

    parallel, report = best(repeats, lambda: clever_scores(fresh(), xs, executor=executor, **settings))
    assert scores(report) == scores(reference)
    executor.shutdown()
    per_input = (parallel - serial) / n_inputs
    print(f"overhead, tiny Linear(6, 4), {n_inputs} inputs, best of {repeats}, 1 thread each:")
    print(
        f"  serial: {serial / n_inputs * 1e3:6.2f} ms/input   one worker: {parallel / n_inputs * 1e3:6.2f} ms/input   "
        f"overhead {per_input * 1e3:+.2f} ms/input ({parallel / serial - 1:+.1%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dask", action="store_true", help="also a dask LocalCluster of 2 workers")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; torch {torch.__version__}")
    speedup(args.inputs, args.repeats, args.dask)
    overhead(max(args.inputs * 5, 20), args.repeats)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
