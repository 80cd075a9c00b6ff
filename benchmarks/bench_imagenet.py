"""The seed paper's ImageNet workload: CLEVER of DenseNet-121 (1000 classes, 3x224x224) behind BPDA.

Run on purpose (not part of the test suite); prints ONE JSON document:

    python benchmarks/bench_imagenet.py --device cuda            # defaults (100x128), top-2 and all
    python benchmarks/bench_imagenet.py --device cuda --paper    # plus the paper's 500x1024
    python benchmarks/bench_imagenet.py --device cuda --quick    # <= 4 min: DenseNet top-2 + small net K=1000 "all"
    python benchmarks/bench_imagenet.py --device cpu --inputs 1 --n-batches 10 --batch-size 4 --targets top-2

For each configuration (samples x targets) it reports the time per input of
``clever_score``, its peak memory (CUDA: ``torch.cuda.max_memory_allocated``;
CPU: the process's peak RSS so far, which only grows), and the *floor*: the
same number of points, in the same chunks, through one forward pass plus one
backward pass per target, with no sampling, norms, maxima or fits. ``ratio``
is ours / floor: what CLEVER's bookkeeping costs on top of the gradients it
cannot avoid. Before each configuration the time is estimated from a
one-chunk calibration; configurations that would overrun ``--max-seconds``
are reported as skipped.

Self-contained for a GPU machine with torch (+ torchvision) but without this
package installed: it puts the repository root on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from torch import nn

from pytest_clever import clever_score
from pytest_clever._engine.first_order import chunk_size_for
from pytest_clever._engine.maxima import Problem
from pytest_clever._engine.numerics import exact_float32, float32_settings
from pytest_clever.core.targets import resolve_targets
from pytest_clever.extras.densenet import IMAGE_SHAPE, _torchvision_densenet121, defended_densenet121, densenet121

DEFAULT_SIZE = (100, 128)
PAPER_SIZE = (500, 1024)
#: Assumed cost of ours relative to the floor when estimating whether a configuration fits.
ESTIMATED_RATIO = 1.3


class SmallNet(nn.Module):
    """A small random conv net on 3x224x224 with 1000 classes: cheap gradients, many classes."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=4),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_model(name: str, defence: str) -> tuple[nn.Module, str]:
    if name == "small":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = SmallNet().eval()
        label = "small conv net"
    else:
        net = densenet121(seed=0)
        label = "densenet121 (" + ("torchvision" if _torchvision_densenet121() else "in-repo") + ")"
    if defence != "none":
        label += f" behind BPDA({defence})"
    return defended_densenet121(defence, net=net), label


def images(n: int) -> torch.Tensor:
    """Smooth images in [0, 1] (upsampled 7x7 noise), one per seed."""
    coarse = torch.rand(n, IMAGE_SHAPE[0], 7, 7, generator=torch.Generator().manual_seed(0))
    return nn.functional.interpolate(coarse, size=IMAGE_SHAPE[1:], mode="bicubic").clamp(0, 1)


def chunk_size(model, x0: torch.Tensor, logits0: torch.Tensor, predicted: int, classes: list[int]) -> int:
    """The chunk size clever_score picks by default, from the model's measured activation memory
    (the floor uses the same chunks)."""
    problem = Problem(model, x0, logits0[predicted] - logits0[classes], predicted, classes, seed=0)
    return chunk_size_for(len(classes), x0, problem)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024


def floor_seconds(model, x0, predicted, targets, n_points, chunk, device) -> float:
    """Forward plus one backward per target for ``n_points`` points in chunks: the unavoidable work."""
    noise = torch.randn((min(chunk, n_points), *x0.shape), generator=torch.Generator().manual_seed(1)).to(device)
    points = (x0 + 0.01 * noise).clamp(0, 1)
    sync(device)
    started = time.perf_counter()
    for start in range(0, n_points, chunk):
        batch = points[: min(chunk, n_points - start)].detach().requires_grad_(True)
        logits = model(batch)
        for i, j in enumerate(targets):
            margin = (logits[:, predicted] - logits[:, j]).sum()
            torch.autograd.grad(margin, batch, retain_graph=i < len(targets) - 1)
    sync(device)
    return time.perf_counter() - started


def calibrate(model, x0, predicted, target, n_points, device) -> tuple[float, float]:
    """Seconds per point of the forward pass and of one backward pass (one small chunk, after a warm-up)."""
    batch = x0.expand(n_points, *x0.shape).clone().requires_grad_(True)
    times = []
    for _ in range(2):  # the first round warms up (allocator, cuDNN)
        sync(device)
        t0 = time.perf_counter()
        logits = model(batch)
        sync(device)
        t1 = time.perf_counter()
        torch.autograd.grad((logits[:, predicted] - logits[:, target]).sum(), batch)
        sync(device)
        times = [(t1 - t0) / n_points, (time.perf_counter() - t1) / n_points]
    return times[0], times[1]


class OutOfTime(Exception):
    """The time budget ran out in the middle of a configuration."""


def _out_of_time(signum, frame):
    raise OutOfTime


def run_configuration(model, xs, device, n_batches, batch_size, targets, radius, remaining) -> dict:
    n_points = n_batches * batch_size
    x0 = xs[0].to(device)
    with torch.no_grad():
        logits0 = model(x0[None])[0]
    predicted = int(logits0.argmax())
    classes = resolve_targets(targets, logits0, predicted, seed=0)
    with exact_float32():
        chunk = chunk_size(model, x0, logits0, predicted, classes)
    config = {
        "n_batches": n_batches,
        "batch_size": batch_size,
        "targets": targets,
        "n_targets": len(classes),
        "chunk_size": chunk,
    }
    # Calibrate on a few points (on a GPU a whole chunk: small batches are launch-bound) to decide whether it fits.
    few = min(chunk, n_points) if device.type == "cuda" else min(chunk, 4, n_points)
    with exact_float32():
        forward, backward = calibrate(model, x0, predicted, classes[0], few, device)
    per_point = forward + len(classes) * backward
    estimate = per_point * n_points * (1 + ESTIMATED_RATIO * len(xs))
    config["estimated_s"] = round(estimate, 2)
    if estimate > remaining:
        config.update(status="skipped", reason=f"estimated {estimate:.0f} s > {remaining:.0f} s left")
        return config

    # A hard stop too: the estimate assumes ours costs ESTIMATED_RATIO x the floor, which may not hold.
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.01))
    try:
        config.update(
            _measure(model, xs, device, n_batches, batch_size, targets, radius, x0, predicted, classes, chunk)
        )
    except OutOfTime:
        config.update(status="stopped", reason=f"ran past the {remaining:.0f} s left (estimated {estimate:.0f} s)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return config


def _measure(model, xs, device, n_batches, batch_size, targets, radius, x0, predicted, classes, chunk) -> dict:
    n_points = n_batches * batch_size
    reset_peak(device)
    with exact_float32():  # the numerics clever_score uses
        floor = floor_seconds(model, x0, predicted, classes, n_points, chunk, device)
    floor_peak = peak_mib(device)
    times, scores, notes = [], [], 0
    reset_peak(device)
    for i, x in enumerate(xs):
        sync(device)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = clever_score(
                model,
                x,
                radius=radius,
                bounds=(0.0, 1.0),
                targets=targets,
                device=device,
                n_batches=n_batches,
                batch_size=batch_size,
                seed=i,
            )
        sync(device)
        times.append(time.perf_counter() - started)
        scores.append(result.score)
        notes += len(result.notes)
    mean = sum(times) / len(times)
    return dict(
        status="ran",
        per_input_s=[round(t, 3) for t in times],
        mean_per_input_s=round(mean, 3),
        floor_per_input_s=round(floor, 3),
        ratio=round(mean / floor, 3),
        peak_memory_mib=round(peak_mib(device), 1),
        floor_peak_memory_mib=round(floor_peak, 1),
        scores=scores,
        notes=notes,
    )


#: ``--quick``: (model, defence, targets) at the default samples, one input each; <= 4 min on one H100.
QUICK = [("densenet", "jpeg", "top-2"), ("small", "none", "all")]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--model", choices=["densenet", "small"], default="densenet")
    parser.add_argument("--defence", choices=["jpeg", "bit-depth", "none"], default="jpeg")
    parser.add_argument("--targets", nargs="+", default=["top-2", "all"], help="target specs (default: top-2 all)")
    parser.add_argument("--inputs", type=int, help="images scored per configuration (default 2; 1 with --quick)")
    parser.add_argument("--n-batches", type=int, help="only this many batches (with --batch-size)")
    parser.add_argument("--batch-size", type=int, help="only this batch size (with --n-batches)")
    parser.add_argument("--paper", action="store_true", help="also the paper's 500 x 1024 samples")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="DenseNet-121 + BPDA(jpeg) top-2 and the small net at K=1000 'all', defaults, 1 input",
    )
    parser.add_argument("--radius", type=float, default=10.0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        help="time budget; later configurations are skipped (default 540; 220 with --quick)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    max_seconds = args.max_seconds or (220.0 if args.quick else 540.0)
    n_inputs = args.inputs or (1 if args.quick else 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if (args.n_batches is None) != (args.batch_size is None):
        parser.error("give --n-batches and --batch-size together")
    if args.n_batches is not None:
        sizes = [(args.n_batches, args.batch_size)]
    else:
        sizes = [DEFAULT_SIZE] + ([PAPER_SIZE] if args.paper and not args.quick else [])
    jobs = QUICK if args.quick else [(args.model, args.defence, t) for t in args.targets]

    xs = images(n_inputs)
    configurations, models = [], {}
    for n_batches, batch_size in sizes:
        for name, defence, targets in jobs:
            if (name, defence) not in models:
                net, label = build_model(name, defence)
                models[(name, defence)] = net.to(device), label
            model, label = models[(name, defence)]
            remaining = max_seconds - (time.perf_counter() - started)
            config = run_configuration(model, xs, device, n_batches, batch_size, targets, args.radius, remaining)
            configurations.append({"model": label, **config})
    document = {
        "benchmark": "bench_imagenet",
        "classes": 1000,
        "input_shape": list(IMAGE_SHAPE),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "inputs": n_inputs,
        "max_seconds": max_seconds,
        "numerics": "IEEE float32 for ours and the floor (pytest_clever._engine.numerics.exact_float32)",
        "session_float32_settings": float32_settings(),
        "memory": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS of the process so far",
        "configurations": configurations,
        "total_s": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(document, indent=2))
    return document


if __name__ == "__main__":
    main()
