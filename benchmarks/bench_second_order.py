"""Cost and peak memory of second-order CLEVER relative to first order, per sampled point.

Run: ``python benchmarks/bench_second_order.py [--models digits resnet --repeats 2]``.
Prints one JSON object. Each (model, order) configuration runs in a fresh
subprocess, so that its peak resident memory (``resource.getrusage``) is its
own; the orders alternate so that load from other processes hits both alike.
Both orders score the same input untargeted (all 9 other classes) with the
same sampled points and the automatically chosen chunk size; the cost is
the CPU time of the scoring call in that subprocess, divided by the number of
sampled points. Models: the softplus digits CNN (``pytest_clever.extras.digits``) and a
small softplus ResNet on 3x32x32 inputs (random weights: cost does not
depend on training).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from pytest_clever import clever_score
from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data

sys.path.insert(0, str(Path(__file__).parent))
from resnet_model import SmallResNet

#: Sampled points per batch: the library default for the digits CNN, fewer for the slow ResNet.
DEFAULT_BATCH_SIZE = {"digits": 128, "resnet": 8}


def _setup(model_name: str):
    if model_name == "digits":
        return cached_digits_cnn("softplus"), load_digits_data().x_test[0], dict(radius=2.0, bounds=DIGITS_BOUNDS)
    torch.manual_seed(0)
    model = SmallResNet().eval().requires_grad_(False)
    return model, torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)), dict(radius=0.5, bounds=(0.0, 1.0))


def worker(model_name: str, order: int, n_batches: int, batch_size: int, curvature: str) -> dict:
    """Score one input in this process; CPU seconds, peak RSS above the set-up's, and what the result says."""
    model, x, kw = _setup(model_name)
    clever_score(model, x, order=1, seed=1, n_batches=10, batch_size=1, **kw)  # warm-up: lazy init, allocator
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    result = clever_score(
        model, x, order=order, curvature=curvature, seed=0, n_batches=n_batches, batch_size=batch_size, **kw
    )
    seconds = time.process_time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    deciding = result.per_target[result.target]
    return {
        "cpu_s": seconds,
        "points": n_batches * batch_size,
        "peak_rss_increase_mib": (peak - base) / 1024,
        "peak_rss_mib": peak / 1024,
        "score": result.score,
        "solver_steps": deciding.solver_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits", "resnet"], choices=["digits", "resnet"])
    parser.add_argument("--n-batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, help="for every model (default: digits 128, resnet 8)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--curvature", default="spectral", choices=["spectral", "negative"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "ORDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.n_batches, args.batch_size, args.curvature)))
        return

    report: dict = {"torch_threads": args.threads, "load_average_start": os.getloadavg(), "models": {}}
    for name in args.models:
        batch_size = args.batch_size or DEFAULT_BATCH_SIZE[name]
        runs: dict[int, list[dict]] = {1: [], 2: []}
        for _ in range(args.repeats):
            for order in (1, 2):
                command = [
                    sys.executable,
                    __file__,
                    "--worker",
                    name,
                    str(order),
                    "--n-batches",
                    str(args.n_batches),
                    "--batch-size",
                    str(batch_size),
                    "--curvature",
                    args.curvature,
                    "--threads",
                    str(args.threads),
                ]
                out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                runs[order].append(json.loads(out.strip().splitlines()[-1]))
        best = {order: min(r, key=lambda run: run["cpu_s"]) for order, r in runs.items()}
        report["models"][name] = {
            "points": best[1]["points"],
            "first_cpu_s_per_point": best[1]["cpu_s"] / best[1]["points"],
            "second_cpu_s_per_point": best[2]["cpu_s"] / best[2]["points"],
            "cost_ratio": best[2]["cpu_s"] / best[1]["cpu_s"],
            "first_peak_rss_increase_mib": max(r["peak_rss_increase_mib"] for r in runs[1]),
            "second_peak_rss_increase_mib": max(r["peak_rss_increase_mib"] for r in runs[2]),
            "peak_rss_mib": {order: max(r["peak_rss_mib"] for r in runs[order]) for order in (1, 2)},
            "memory_ratio": max(r["peak_rss_mib"] for r in runs[2]) / max(r["peak_rss_mib"] for r in runs[1]),
            "solver_steps": best[2]["solver_steps"],
            "scores": {order: best[order]["score"] for order in (1, 2)},
        }
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
