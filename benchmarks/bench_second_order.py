"""Cost of second-order CLEVER relative to first order on the smooth (softplus) digits CNN.

Run: ``python benchmarks/bench_second_order.py [--inputs 3 --n-batches 10 --batch-size 32]``.
Both orders score the same inputs untargeted (all 9 other classes) with the
same number of sampled points ``n_batches * batch_size``; the second order
spends its time on Hessian-vector products (one double backward per Lanczos
step for a whole chunk of points x targets). Timings alternate the two orders
so that load from other processes hits both alike; the CPU time of this
process is printed too, as it is less sensitive to such load than wall time.
"""

from __future__ import annotations

import argparse
import time

import torch

from pytest_clever import clever_scores
from pytest_clever.toy import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=3)
    parser.add_argument("--n-batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--curvature", default="spectral", choices=["spectral", "negative"])
    args = parser.parse_args()

    data = load_digits_data()
    model = cached_digits_cnn("softplus")
    with torch.no_grad():
        ok = model(data.x_test[:40]).argmax(1) == data.y_test[:40]
    xs, ys = data.x_test[:40][ok][: args.inputs], data.y_test[:40][ok][: args.inputs]
    kw = dict(radius=2.0, bounds=DIGITS_BOUNDS, seed=0, n_batches=args.n_batches, batch_size=args.batch_size)

    times: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for order in (1, 2):
            started, cpu_started = time.perf_counter(), time.process_time()
            report = clever_scores(model, xs, ys, order=order, curvature=args.curvature, **kw)
            times[order].append(time.perf_counter() - started)
            cpu[order].append(time.process_time() - cpu_started)
            if order == 2:
                iterations = [r.per_target[r.target].power_iterations for r in report]
    first, second = min(times[1]), min(times[2])
    print(f"{len(xs)} inputs, {args.n_batches}x{args.batch_size} points, 9 targets, torch threads {torch.get_num_threads()}")
    print(f"first order : {first:.2f} s ({first / len(xs):.2f} s/input)")
    print(f"second order: {second:.2f} s ({second / len(xs):.2f} s/input, curvature={args.curvature}, "
          f"Lanczos steps per chunk {iterations})")
    print(f"ratio second/first: {second / first:.1f}x wall, "
          f"{min(cpu[2]) / min(cpu[1]):.1f}x CPU ({min(cpu[1]):.2f} s vs {min(cpu[2]):.2f} s)")


if __name__ == "__main__":
    main()
