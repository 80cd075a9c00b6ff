"""Many classes: what first-order CLEVER costs over the backward passes it cannot avoid.

Run on purpose (not part of the test suite); prints ONE JSON document:

    python benchmarks/bench_many_classes.py                 # CPU, 1 thread
    python benchmarks/bench_many_classes.py --device cuda

Three parts, every ratio taken within this one run (timings are noisy on a shared machine):

- ``gradient_paths``: margin gradient norms of one chunk for K = 10/100/1000
  classes through the per-target backward loop and through batched
  vector-Jacobian products (``is_grads_batched``) in blocks of 8/32/128, and
  whether the batched norms are the same bits as the loop's. This is the
  measurement behind ``gradients.targets_per_pass``.
- ``untargeted``: ``clever_score`` with targets="all" at K=1000 on a small
  conv net vs its *floor*: the same points, in the same chunks, through one
  forward pass plus one backward pass per target, nothing else. Also how
  many of the 999 EVT fits ran (the rest are bracketed out, see
  ``first_order.score_targets``).
- ``top2``: targets="top-2" at 3x224x224, K=1000, vs its floor.

Measured on the 2-core dev machine (1 thread, load 6-12 from other jobs), small
conv net, 32 points of 3x32x32 in one chunk: the loop vs blocks of 8 / 32 took
K=10 0.032 vs 0.052 / 0.049 s, K=100 0.43 vs 0.53 / 0.55 s, K=300 1.55 vs 1.30 / 1.20 s,
K=1000 6.0-7.0 vs 5.2 / 5.0-6.1 s, bit-identical norms throughout; with chunks
sized by memory (the batched path's chunks are ``block`` times smaller) and
larger inputs the loop wins (see ``gradients.CPU_BATCHED_FROM`` for the numbers).
Hence on CPU blocks of 8 from 500 targets on inputs of at most 3x32x32, else
the loop; on CUDA the loop until this benchmark shows otherwise there.

Self-contained for a GPU machine without this package installed: it puts the
repository root on ``sys.path``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from bench_imagenet import floor_seconds  # one definition of the floor for both benchmarks
from torch import nn

from pytest_clever import clever_score
from pytest_clever._engine.first_order import UNFITTED, chunk_size_for
from pytest_clever._engine.gradients import margin_gradient_norms, targets_per_pass
from pytest_clever._engine.numerics import exact_float32
from pytest_clever._engine.sampling import sample_ball


def small_net(classes: int, seed: int = 0) -> nn.Module:
    """A small random conv net (any image size, ``classes`` outputs)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=4),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(256, classes),
        ).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    started = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - started, out


def gradient_paths(device: torch.device, size: int, n_points: int, classes: list[int], blocks: list[int]) -> list[dict]:
    rows = []
    for k in classes:
        model = small_net(k).to(device)
        for p in model.parameters():
            p.requires_grad_(False)
        points = torch.rand(n_points, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
        targets = list(range(1, k))
        row: dict = {"classes": k, "points": n_points, "input": [3, size, size]}
        ref = None
        for block in [1] + blocks:
            margin_gradient_norms(model, points[:2], 0, targets, 2.0, block)  # warm-up
            seconds, (_, norms) = timed(
                functools.partial(margin_gradient_norms, model, points, 0, targets, 2.0, block), device
            )
            name = "loop" if block == 1 else f"block{block}"
            row[name + "_s"] = round(seconds, 4)
            if ref is None:
                ref = norms
            else:
                row[name + "_same_bits"] = bool(torch.equal(norms, ref))
                row[name + "_max_rel_diff"] = float(((norms - ref).abs().max() / ref.abs().max()).item())
        row["chosen_block"] = targets_per_pass(len(targets), points[0])
        rows.append(row)
    return rows


def batch_invariance(device: torch.device, size: int) -> dict:
    """Whether a point's margin gradient norms keep their bits when its chunk grows (64 -> 512 points).

    Sharing one pass between several inputs would change every chunk's size;
    it is only admissible if this holds on the device.
    """
    results = {}
    for name, model in (
        ("small_conv", small_net(100)),
        ("mlp", nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 100))),
    ):
        model = model.eval().to(device)
        for p in model.parameters():
            p.requires_grad_(False)
        points = torch.rand(512, 3, size, size, generator=torch.Generator().manual_seed(3)).to(device)
        _, alone = margin_gradient_norms(model, points[:64], 0, [1, 2, 3], 2.0)
        _, shared = margin_gradient_norms(model, points, 0, [1, 2, 3], 2.0)
        results[name] = bool(torch.equal(alone, shared[:64]))
    return results


def sampling_seconds(x0, n_points, chunk, device) -> float:
    """Drawing the same number of points of the L2 ball (clipped to [0, 1]), which the floor leaves out."""
    generator = torch.Generator(device=device).manual_seed(0)

    def run() -> None:
        for start in range(0, n_points, chunk):
            sample_ball(x0, min(chunk, n_points - start), 2.0, 1.0, generator, (0.0, 1.0))

    return timed(run, device)[0]


def versus_floor(model, x0, device, targets: str, n_batches: int, batch_size: int) -> dict:
    """``clever_score`` on ``x0`` vs the floor of its backward passes (both after a warm-up)."""
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        logits0 = model(x0[None])[0]
    predicted = int(logits0.argmax())
    classes = [j for j in range(len(logits0)) if j != predicted] if targets == "all" else None
    kwargs = dict(radius=1.0, bounds=(0.0, 1.0), targets=targets, device=device, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clever_score(model, x0, n_batches=10, batch_size=1, **kwargs)  # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ours, result = timed(
            lambda: clever_score(model, x0, n_batches=n_batches, batch_size=batch_size, **kwargs), device
        )
    classes = list(result.target_classes) if classes is None else classes
    chunk = chunk_size_for(len(classes), x0)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    with exact_float32():  # the numerics clever_score uses
        floor_seconds(model, x0, predicted, classes, min(chunk, 4), chunk, device)  # warm-up
        floor = floor_seconds(model, x0, predicted, classes, n_batches * batch_size, chunk, device)
    sampling = sampling_seconds(x0, n_batches * batch_size, chunk, device)
    fitted = sum(t.fit_method != UNFITTED for t in result.per_target.values())
    return {
        "targets": targets,
        "n_targets": len(classes),
        "input": list(x0.shape),
        "samples": [n_batches, batch_size],
        "chunk_size": chunk,
        "targets_per_pass": targets_per_pass(len(classes), x0),
        "ours_s": round(ours, 3),
        "floor_s": round(floor, 3),
        "ratio": round(ours / floor, 3),
        "sampling_s": round(sampling, 3),
        "ratio_without_sampling": round((ours - sampling) / floor, 3),
        "fits_run": fitted,
        "score": result.score,
        "deciding_target": result.target,
        "peak_memory_mib": None if peak is None else round(peak, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (default 1)")
    parser.add_argument(
        "--samples", type=int, nargs=2, help="n_batches batch_size (default: 10 16 on CPU, 100 128 on CUDA)"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["gradient_paths", "untargeted", "top2"])
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    n_batches, batch_size = args.samples or ((10, 16) if device.type == "cpu" else (100, 128))
    started = time.perf_counter()
    document: dict = {
        "benchmark": "bench_many_classes",
        "device": str(device),
        "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }
    x32 = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(2)).to(device)
    x224 = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(2)).to(device)
    if "gradient_paths" not in args.skip:
        n = 32 if device.type == "cpu" else 512
        with exact_float32():
            document["gradient_paths"] = gradient_paths(device, 32, n, [10, 100, 1000], [8, 32, 128])
    with exact_float32():
        document["same_bits_when_the_chunk_grows"] = batch_invariance(device, 32)
    if "untargeted" not in args.skip:
        document["untargeted"] = versus_floor(small_net(1000).to(device), x32, device, "all", n_batches, batch_size)
    if "top2" not in args.skip:
        document["top2"] = versus_floor(small_net(1000).to(device), x224, device, "top-2", n_batches, batch_size)
    document["total_s"] = round(time.perf_counter() - started, 1)
    document["load_average_end"] = os.getloadavg()
    print(json.dumps(document, indent=2))
    return document


if __name__ == "__main__":
    main()
