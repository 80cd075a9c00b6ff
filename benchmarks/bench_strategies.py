"""Speed and spread of ``strategies.points_in_ball`` on image-sized and small inputs.

Run on purpose (not part of the test suite):

    python benchmarks/bench_strategies.py [--examples 100]

For each input shape and norm, runs a hypothesis test that draws
``--examples`` points (health checks suppressed, so that a strategy too big
for hypothesis still shows its cost) and prints the wall time and the
distances ``||x - x0||_p / R``: median, share beyond R/2, share equal to x0.
Targets (issue 17): 100 examples of a 3x32x32 input in <= 5 s, median
distance >= R/2 for L2 and Linf.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from hypothesis import HealthCheck, given, settings

from pytest_clever.extras.strategies import points_in_ball

#: (label, shape, norm, radius): CIFAR-sized inputs with usual radii, and a 64-value input.
CASES = [
    ("3x32x32", (3, 32, 32), 2.0, 0.5),
    ("3x32x32", (3, 32, 32), math.inf, 8 / 255),
    ("3x32x32", (3, 32, 32), 1.0, 10.0),
    ("64", (64,), 2.0, 0.5),
    ("64", (64,), math.inf, 0.1),
]


def measure(shape: tuple[int, ...], norm: float, radius: float, examples: int) -> tuple[float, list[float]]:
    """Wall time of ``examples`` draws and the distances from x0 as fractions of ``radius``."""
    x0 = torch.rand(shape, generator=torch.Generator().manual_seed(0))  # values in [0, 1]
    fractions: list[float] = []

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(points_in_ball(x0, norm, radius, bounds=(0.0, 1.0)))
    def draw(x: torch.Tensor) -> None:
        delta = (x.double() - x0.double()).flatten()
        fractions.append(float(torch.linalg.vector_norm(delta, ord=norm)) / radius)

    start = time.perf_counter()
    draw()
    return time.perf_counter() - start, fractions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'input':>8} {'norm':>5} {'examples':>8} {'time s':>7} {'median d/R':>10} {'> R/2':>6} {'= x0':>6}")
    for label, shape, norm, radius in CASES:
        seconds, fractions = measure(shape, norm, radius, args.examples)
        n = len(fractions)
        median = statistics.median(fractions) if fractions else float("nan")
        beyond = sum(f > 0.5 for f in fractions) / max(n, 1)
        at_x0 = sum(f == 0.0 for f in fractions) / max(n, 1)
        name = "inf" if math.isinf(norm) else str(int(norm))
        print(f"{label:>8} {name:>5} {n:>8} {seconds:>7.2f} {median:>10.4f} {beyond:>6.0%} {at_x0:>6.0%}")


if __name__ == "__main__":
    main()
