"""How often does each threshold gate mode give the wrong verdict? False-pass and false-fail rates on the digits CNN.

Run on purpose: ``python benchmarks/bench_gates.py [--quick]`` (``--quick``
about 3 minutes on 2 CPU cores, with cheaper scoring settings; the full run
about 25).

A pool of correctly classified digits-test inputs is scored with several
seeds (each score with its 95% interval). A trial builds one run from the
pool by taking, for each input, the score of a randomly chosen seed (the
inputs are scored independently, so this is a run as a fresh seed gives
one), and applies each gate mode to its mean with the bar at the long-run
mean times 1.1 (the model falls short: a pass is a **false pass**) and
times 0.9 (the model clears it: a fail is a **false fail**). Two questions:

- **fixed inputs**: the same ``n`` inputs in every trial, the long-run mean
  is that of these inputs over all seeds (what a test with a fixed input set asks);
- **population**: ``n`` inputs drawn with replacement from the pool in each
  trial, the long-run mean is the pool's (what a test whose inputs are a
  sample of a population asks).

Each ``significant-*`` mode is run with both interval kinds (``interval=``
``estimator``: the inputs fixed, each score's own interval; ``inputs``: a
bootstrap over inputs as well). The table is what README "Gate modes" quotes.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch

# The interval benchmark's input pool (benchmarks/ is on sys.path when a benchmark runs).
from bench_intervals import correct_inputs

from pytest_clever import clever_scores
from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn
from pytest_clever.runs.gates import threshold_gate
from pytest_clever.stats.intervals import statistic_interval

#: (mode, interval kind) of each column; the point gate has no interval.
MODES = (
    ("point", None),
    ("significant-fail", "estimator"),
    ("significant-fail", "inputs"),
    ("significant-pass", "estimator"),
    ("significant-pass", "inputs"),
)


def score_pool(model, xs, ys, seeds: int, settings: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, interval lows and highs, each of shape (seeds, inputs)."""
    scores, lows, highs = [], [], []
    for s in range(seeds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # weak-fit notes: the intervals carry them
            report = clever_scores(model, xs, ys, seed=1000 * s, radius=2.0, bounds=DIGITS_BOUNDS, **settings)
        scores.append(report.scores)
        lows.append([r.interval[0] for r in report])
        highs.append([r.interval[1] for r in report])
    return np.array(scores), np.array(lows), np.array(highs)


def rates(pool, n: int, population: bool, trials: int, rng: np.random.Generator) -> dict[tuple, tuple[float, float]]:
    """(false-pass rate, false-fail rate) of each mode over ``trials`` runs of ``n`` inputs."""
    scores, lows, highs = pool
    seeds, size = scores.shape
    truth = float(scores.mean()) if population else float(scores[:, :n].mean())
    passes = {mode: [0, 0] for mode in MODES}  # passes at the high bar, fails at the low bar
    for _ in range(trials):
        inputs = rng.integers(0, size, n) if population else np.arange(n)
        seed_of = rng.integers(0, seeds, n)
        points = scores[seed_of, inputs]
        intervals = list(zip(lows[seed_of, inputs], highs[seed_of, inputs], strict=True))
        value = float(points.mean())
        by_kind = {k: statistic_interval(points, intervals, "mean", 0.95, over=k) for k in ("estimator", "inputs")}
        for mode, kind in MODES:
            interval = None if kind is None else by_kind[kind]
            passes[(mode, kind)][0] += threshold_gate(value, interval, truth * 1.1, mode).passed
            passes[(mode, kind)][1] += not threshold_gate(value, interval, truth * 0.9, mode).passed
    return {mode: (p / trials, f / trials) for mode, (p, f) in passes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer inputs and seeds, cheaper scores (about 3 minutes)")
    parser.add_argument("--trials", type=int, default=400, help="runs drawn per row")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        pool_size, seeds, settings = 50, 3, {"n_batches": 50, "batch_size": 64}
    else:
        pool_size, seeds, settings = 120, 4, {}
    model = cached_digits_cnn()
    xs, ys = correct_inputs(model, pool_size)
    started = time.perf_counter()
    pool = score_pool(model, xs, ys, seeds, settings)
    elapsed = time.perf_counter() - started
    shown = settings or {"n_batches": "default", "batch_size": "default"}
    print(
        f"digits CNN (relu), radius 2, {shown}: {len(xs)} inputs x {seeds} seeds scored in {elapsed:.0f}s "
        f"with torch.get_num_threads()={torch.get_num_threads()} on {os.cpu_count()} CPU cores "
        f"(wall clock, time.perf_counter); {args.trials} trials per row; bars at the long-run mean x 1.1 and x 0.9"
    )
    rng = np.random.default_rng(0)
    header = ["question", "n"] + [mode if kind is None else f"{mode} ({kind})" for mode, kind in MODES]
    rows = [header]
    for population in (False, True):
        for n in (10, 50):
            result = rates(pool, n, population, args.trials, rng)
            cells = [f"{p:.0%} / {f:.0%}" for p, f in (result[mode] for mode in MODES)]
            rows.append(["population" if population else "fixed inputs", str(n), *cells])
    print("false pass / false fail (bar at +10% / -10% of the long-run mean):")
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")


if __name__ == "__main__":
    main()
