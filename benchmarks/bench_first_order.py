"""Untargeted first-order CLEVER vs the raw cost of the logits Jacobian at the same points.

Run on purpose (not part of the test suite):

    python benchmarks/bench_first_order.py [--inputs 5] [--repeats 3] [--device cpu]

The floor is one forward pass plus the full K-row Jacobian of the logits
(K backward passes, the fastest method measured on CPU) over the same number
of points and the same chunk size, with the points sampled beforehand, so it
excludes sampling, norms and the EVT fits. The ratio CLEVER / floor is what
the engine adds on top of the unavoidable autograd work (target <= 1.15).
Timings alternate between the two so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import time

import torch

from pytest_clever import clever_score
from pytest_clever.api import DEFAULT_BATCH_SIZE, DEFAULT_N_BATCHES
from pytest_clever.gradients import default_chunk_size
from pytest_clever.toy import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data


def jacobian_floor(model: torch.nn.Module, points: torch.Tensor, chunk: int) -> float:
    """Seconds for forward + full logits Jacobian over ``points``, in chunks."""
    for p in model.parameters():
        p.requires_grad_(False)
    start = time.perf_counter()
    for s in range(0, len(points), chunk):
        x = points[s : s + chunk].clone().requires_grad_(True)
        logits = model(x)
        k = logits.shape[1]
        rows = [torch.autograd.grad(logits[:, j].sum(), x, retain_graph=j < k - 1)[0] for j in range(k)]
        torch.stack(rows, 1)
    if points.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    for p in model.parameters():
        p.requires_grad_(True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-batches", type=int, default=DEFAULT_N_BATCHES)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    model = cached_digits_cnn().to(device).eval()
    data = load_digits_data()
    xs = data.x_test[: args.inputs].to(device)
    n_points = args.n_batches * args.batch_size
    chunk = default_chunk_size(9, 64, 4, device)
    kw = dict(radius=2.0, bounds=DIGITS_BOUNDS, n_batches=args.n_batches, batch_size=args.batch_size, device=device)

    clever_score(model, xs[0], seed=0, **kw)  # warm-up
    clever_time = floor_time = 0.0
    for r in range(args.repeats):
        for i, x in enumerate(xs):
            start = time.perf_counter()
            clever_score(model, x, seed=r * 1000 + i, **kw)
            clever_time += time.perf_counter() - start
            points = (x + 0.1 * torch.randn(n_points, *x.shape, device=device)).clamp(0, 1)
            floor_time += jacobian_floor(model, points, chunk)

    runs = args.repeats * len(xs)
    print(f"device={device} points/input={n_points} chunk={chunk} runs={runs} threads={torch.get_num_threads()}")
    print(f"{'':28s}{'s/input':>10s}{'points/s':>12s}")
    print(f"{'CLEVER untargeted (K-1=9)':28s}{clever_time / runs:10.3f}{n_points * runs / clever_time:12.0f}")
    print(f"{'raw Jacobian floor (K=10)':28s}{floor_time / runs:10.3f}{n_points * runs / floor_time:12.0f}")
    print(f"ratio CLEVER / floor: {clever_time / floor_time:.3f}  (target <= 1.15)")


if __name__ == "__main__":
    main()
