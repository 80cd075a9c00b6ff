"""How second-order CLEVER scores compare with first-order ones: the ratio second/first over many inputs and seeds.

Run: ``python benchmarks/bench_order_ratio.py [--inputs 20 --seeds 2 --n-batches 100 --batch-size 128]``.
Prints one JSON object (and one line per pair to stderr as it goes). Model: the digits CNN
(``pytest_clever.extras.digits``) with a smooth activation, softplus by default (``--activation``);
inputs: the first ``--inputs`` test digits it classifies correctly; settings: L2 and radius 2
unless ``--norm``/``--radius``, bounds (0, 1), untargeted (all 9 other classes), the given
sample size. Each (input, seed) pair scores both orders with the same seed; the ratio is
``score(order=2) / score(order=1)`` (above 1: second order is the less pessimistic, larger
score). Pairs where either score is capped at the radius are counted but left out of the
ratios (a capped pair says nothing about which order is tighter). The full run at the
library's default sample size (100 x 128) costs about a minute of CPU per second-order
score on an idle core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from pytest_clever import clever_score
from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--n-batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--norm", default="2", choices=["1", "2", "inf"])
    parser.add_argument("--radius", type=float, default=2.0)
    parser.add_argument("--curvature", default="spectral", choices=["spectral", "negative"])
    parser.add_argument("--activation", default="softplus", choices=["softplus", "tanh", "gelu", "silu"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = cached_digits_cnn(args.activation)
    data = load_digits_data()
    with torch.no_grad():
        correct = torch.nonzero(model(data.x_test).argmax(1) == data.y_test).flatten()[: args.inputs]
    started = time.perf_counter()
    pairs = []
    for index in correct.tolist():
        for seed in range(args.seeds):
            kw = dict(
                norm=float(args.norm),
                radius=args.radius,
                bounds=DIGITS_BOUNDS,
                seed=seed,
                n_batches=args.n_batches,
                batch_size=args.batch_size,
                label=int(data.y_test[index]),
            )
            first = clever_score(model, data.x_test[index], order=1, **kw)
            second = clever_score(model, data.x_test[index], order=2, curvature=args.curvature, **kw)
            pairs.append(
                {
                    "input": index,
                    "seed": seed,
                    "first": first.score,
                    "second": second.score,
                    "capped": first.capped or second.capped,
                }
            )
            print(json.dumps(pairs[-1]), file=sys.stderr, flush=True)
    ratios = sorted(p["second"] / p["first"] for p in pairs if not p["capped"])
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [float("nan")] * 3
    print(
        json.dumps(
            {
                "model": f"digits {args.activation} CNN",
                "settings": {
                    "norm": args.norm,
                    "radius": args.radius,
                    "n_batches": args.n_batches,
                    "batch_size": args.batch_size,
                    "curvature": args.curvature,
                    "targets": "all",
                },
                "inputs": len(correct),
                "seeds": args.seeds,
                "pairs": len(pairs),
                "capped_pairs": sum(p["capped"] for p in pairs),
                "ratio_second_over_first": {
                    "median": statistics.median(ratios) if ratios else None,
                    "mean": statistics.fmean(ratios) if ratios else None,
                    "min": ratios[0] if ratios else None,
                    "q1": quartiles[0],
                    "q3": quartiles[2],
                    "max": ratios[-1] if ratios else None,
                    "share_above_1": sum(r > 1 for r in ratios) / len(ratios) if ratios else None,
                },
                "torch_threads": torch.get_num_threads(),
                "wall_s": time.perf_counter() - started,
                "per_pair": pairs,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
