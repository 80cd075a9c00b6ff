"""Sample what the decision needs: does a stopped score keep its promise, and what does it save?

Run on purpose: ``python benchmarks/bench_budget.py [--inputs 20 --seeds 2 --models digits resnet]``.
The full run (20 digits inputs x 2 seeds = 40 cases per model, both models, the gate) needs about
1.5 hours on 2 idle CPU cores, most of it the ten-times references; ``--inputs 5 --seeds 3 --models digits
--gate-inputs 10`` is a reduced configuration (about 15 minutes on 2 busy cores).

- **Coverage of the 10x-points reference**: per (input, seed) case, the score stopped by
  ``precision=`` (capped at ``--cap`` batches) and the score at the fixed default (100 x 128); the
  reference is one score of the same input at ``--reference-batches`` batches (10x the default and the
  cap) with an independent seed. How often does each 95% interval contain the reference (goal >= 90%)?
  Also the median signed error of each against the reference (positive: optimistic).
- **Points and time**: the stopped runs' points and time against the fixed default, same run.
- **The gate**: ``--gate-inputs`` inputs, a ``min_score`` bar at 1/1.5 of their mean default score
  (inputs far above it) and at 0.95 of it (close to it), scored with ``precision`` and the bar (rounds
  stop once the decision is settled), against the fixed default: points, time, verdict, settled.

Every ratio comes from this one run; the torch thread count is printed.

Measured (reduced: ``--models digits --inputs 3 --seeds 2 --gate-inputs 10``, 2 torch threads on 2 cores
shared with about 8 other busy processes, so times are inflated and only their ratios mean anything):

- coverage of the 1000 x 128 reference: fixed default 5/6 (score vs reference median +4.5%, worst +15.4%),
  ``precision=0.1`` capped at 100 batches 6/6 (median +4.5%, worst +16.7%); the stopped runs used 1.00x the
  default's points (median; 0.68-1.00: most hit the cap, the widened interval of 100 x 128 is about +-10%)
  and 1.09x its time;
- gate, bar at mean / 1.5: settled after the first round (every input stopped by "decision"),
  0.20x the default's points and 0.27x its time (118.8 s vs 442.5 s);
- gate, bar at 0.95 mean: not settled (the report says settled=False), every input sampled until its own
  precision or the cap of 1000 batches: 5.01x the default's points, 2.34x its time (1036.5 s vs 442.5 s).

The interval rule behind the coverage (``stats.evt.BIAS_WIDENING``) was measured on 13 digits inputs x 2
seeds against prefixes of 200-batch runs: see the constant's comment.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pytest_clever import clever_score, clever_scores
from pytest_clever.core.validation import DEFAULT_BATCH_SIZE, DEFAULT_N_BATCHES
from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_second_order import SmallResNet


def setup(name: str, n: int):
    """The model, ``n`` correctly classified inputs and the scoring keywords."""
    if name == "digits":
        model = cached_digits_cnn()
        data = load_digits_data()
        with torch.no_grad():
            ok = torch.nonzero(model(data.x_test).argmax(1) == data.y_test).flatten()[:n]
        return model, list(data.x_test[ok]), dict(radius=2.0, bounds=DIGITS_BOUNDS, targets="top-1")
    torch.manual_seed(0)
    model = SmallResNet().eval().requires_grad_(False)
    xs = list(torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    return model, xs, dict(radius=0.5, bounds=(0.0, 1.0), targets="top-1")


def covers(result, reference: float) -> bool:
    lo, hi = result.interval
    return lo <= reference <= hi


def coverage(name: str, inputs: int, seeds: int, precision: float, cap: int, reference_batches: int) -> None:
    model, xs, kw = setup(name, inputs)
    rows = []
    for i, x in enumerate(xs):
        reference = clever_score(model, x, n_batches=reference_batches, seed=10_000 + i, **kw).score
        for s in range(seeds):
            seed = 100 * i + s
            t0 = time.perf_counter()
            fixed = clever_score(model, x, seed=seed, **kw)
            t1 = time.perf_counter()
            stopped = clever_score(model, x, seed=seed, precision=precision, max_batches=cap, **kw)
            t2 = time.perf_counter()
            rows.append((reference, fixed, stopped, t1 - t0, t2 - t1))
    n = len(rows)
    for label, k in (("fixed default", 1), (f"precision={precision:g}", 2)):
        hits = sum(covers(r[k], r[0]) for r in rows)
        error = np.median([r[k].score / r[0] - 1 for r in rows])
        worst = max(r[k].score / r[0] - 1 for r in rows)
        print(
            f"{name}: {label}: 95% interval covers the {reference_batches}x{DEFAULT_BATCH_SIZE} reference in "
            f"{hits}/{n} = {hits / n:.0%} of cases; score vs reference median {error:+.1%}, worst {worst:+.1%}"
        )
    points = np.array([r[2].points for r in rows]) / (DEFAULT_N_BATCHES * DEFAULT_BATCH_SIZE)
    reasons = {k: sum(r[2].stop_reason == k for r in rows) for k in ("precision", "cap", "budget")}
    seconds = sum(r[4] for r in rows) / sum(r[3] for r in rows)
    print(
        f"{name}: precision={precision:g} used {np.median(points):.2f}x the default's points (median; "
        f"{points.min():.2f}-{points.max():.2f}), {seconds:.2f}x its time over all cases; stops {reasons}"
    )


def gate(name: str, inputs: int, precision: float) -> None:
    model, xs, kw = setup(name, inputs)
    t0 = time.perf_counter()
    fixed = clever_scores(model, xs, seed=0, **kw)
    fixed_s = time.perf_counter() - t0
    for label, bar in (("far (bar = mean / 1.5)", fixed.mean / 1.5), ("close (bar = 0.95 mean)", 0.95 * fixed.mean)):
        t0 = time.perf_counter()
        report = clever_scores(model, xs, seed=0, precision=precision, min_score=bar, **kw)
        seconds = time.perf_counter() - t0
        points = sum(r.points for r in report) / sum(r.points for r in fixed)
        print(
            f"{name} gate, {inputs} inputs, {label}: settled={report.settled}, mean {report.mean:.4g} vs bar "
            f"{bar:.4g} (default: {fixed.mean:.4g}); {points:.2f}x the default's points, {seconds / fixed_s:.2f}x "
            f"its time ({seconds:.1f} s vs {fixed_s:.1f} s); stops "
            f"{sorted({r.stop_reason for r in report})}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits", "resnet"], choices=["digits", "resnet"])
    parser.add_argument("--inputs", type=int, default=20, help="inputs per model (cases = inputs x seeds)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--precision", type=float, default=0.1)
    parser.add_argument("--cap", type=int, default=DEFAULT_N_BATCHES, help="max_batches of the stopped runs")
    parser.add_argument("--reference-batches", type=int, default=10 * DEFAULT_N_BATCHES)
    parser.add_argument("--gate-inputs", type=int, default=20, help="0 skips the gate")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    for name in args.models:
        coverage(name, args.inputs, args.seeds, args.precision, args.cap, args.reference_batches)
        if args.gate_inputs:
            gate(name, args.gate_inputs, args.precision)


if __name__ == "__main__":
    main()
