"""Untargeted first-order CLEVER: this engine vs the raw Jacobian floor vs ART's ``clever_u``.

Run on purpose (not part of the test suite; needs ``pip install -e '.[bench]'``):

    python benchmarks/bench_vs_art.py [--device cpu] [--inputs 2] [--repeats 2] [--no-art]

For each model, on the same inputs, one run times:

1. ``ours``  -- ``clever_score(model, x, radius, n_batches, batch_size)``
   untargeted (all K-1 other classes), end to end: sampling, gradients,
   norms, batch maxima and the K-1 reverse Weibull fits.
2. ``floor`` -- the raw autograd work at the same points: one forward pass
   plus the full K-row logits Jacobian over ``n_batches * batch_size``
   points (pre-sampled, same chunk size), excluding sampling, norms and
   fits. Two methods are timed and the faster one is the floor: a loop of K
   backward passes over a retained graph, and ``torch.func.vmap(jacrev)``.
3. ``ART``   -- ``art.metrics.clever_u`` (adversarial-robustness-toolbox
   1.20.1) on ``art.estimators.classification.PyTorchClassifier``.

How ART's settings map to distinct sampled points. ``clever_t`` (called once
per target by ``clever_u``) draws a pool of ``pool_factor * batch_size``
distinct points, computes their gradients (``batch_size`` calls of
``class_gradient`` on ``pool_factor`` points, for the predicted and for the
target class), then forms ``nb_batches`` batch maxima by drawing
``batch_size`` gradient norms *with replacement* from that pool. So ART's
distinct points per target are ``pool_factor * batch_size``; ``nb_batches``
only costs a cheap resampling. Ours samples ``n_batches * batch_size``
distinct points shared by all targets. We run ART with the same
``batch_size`` and ``nb_batches``, and ``pool_factor = n_batches`` (default
10 in ART), so both see exactly ``n_batches * batch_size`` distinct points
per target. ART redraws a fresh pool for every target; that is how ART
works, not a handicap added here.

To keep ART's share of the run bounded, ART may run at fewer distinct points
than ours (``--art-fraction``: ART's batch size as a share of ours). By
default it runs at exactly our number of points on the digits CNN (1.0) and
at a tenth on the wide net (0.1), where it takes ~100x longer per point;
the ART/ours ratio is taken per distinct point and per input. ART's cost is
linear in its pool plus K-1 scipy fits of ``nb_batches`` maxima, the same
size as ours, which are a few percent of its run time on the wide net, so
the per-point ratio does not flatter ours by more than that. Timings interleave ours, floor and ART input by input, so
machine load hits all alike.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import numpy as np
import torch
from torch import nn

from pytest_clever import clever_score
from pytest_clever._engine.first_order import chunk_size_for
from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data


class WideCNN(nn.Module):
    """A wider conv net for 3x32x32 inputs and 10 classes (random init, CIFAR-like shape)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2),
            nn.ReLU(),  # 16x16
            nn.Conv2d(2 * width, 4 * width, 3, padding=1, stride=2),
            nn.ReLU(),  # 8x8
            nn.MaxPool2d(2),  # 4x4
            nn.Flatten(),
            nn.Linear(4 * width * 16, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def floor_loop(model: nn.Module, points: torch.Tensor, chunk: int) -> None:
    """Forward + K-row Jacobian by a loop of K backward passes over a retained graph."""
    for s in range(0, len(points), chunk):
        x = points[s : s + chunk].clone().requires_grad_(True)
        logits = model(x)
        k = logits.shape[1]
        rows = [torch.autograd.grad(logits[:, j].sum(), x, retain_graph=j < k - 1)[0] for j in range(k)]
        torch.stack(rows, 1)


def floor_vmap(model: nn.Module, points: torch.Tensor, chunk: int) -> None:
    """Forward + K-row Jacobian by ``vmap(jacrev)`` (one batched backward over K cotangents)."""

    def single(p: torch.Tensor) -> torch.Tensor:
        return model(p.unsqueeze(0)).squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(single))
    for s in range(0, len(points), chunk):
        jac(points[s : s + chunk])


def timed(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def art_classifier(model: nn.Module, shape: tuple[int, ...], bounds: tuple[float, float], device: torch.device):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=shape,
        nb_classes=10,
        clip_values=bounds,
        device_type="gpu" if device.type == "cuda" else "cpu",
    )


def bench_model(name, model, xs, bounds, radius, n_batches, batch_size, args, device, art_fraction) -> dict:
    model = model.to(device).eval()
    n_points = n_batches * batch_size
    chunk = chunk_size_for(9, xs[0].to(device))
    art_batch = max(1, round(batch_size * (args.art_fraction or art_fraction)))
    art_points = n_batches * art_batch  # pool_factor * batch_size, with pool_factor = n_batches
    kw = dict(radius=radius, bounds=bounds, n_batches=n_batches, batch_size=batch_size, device=device)
    classifier = None if args.no_art else art_classifier(model, tuple(xs[0].shape), bounds, device)

    gen = torch.Generator(device="cpu").manual_seed(0)
    times: dict[str, list[float]] = {"ours": [], "loop": [], "vmap": [], "art": []}

    def run_floor(x, method):
        points = (x.cpu() + 0.1 * torch.randn(n_points, *x.shape, generator=gen)).clamp(*bounds).to(device)
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            return timed(lambda: method(model, points, chunk), device)
        finally:
            for p in model.parameters():
                p.requires_grad_(True)

    # Warm-up of every path (allocator, kernels, scipy import).
    clever_score(model, xs[0], seed=0, **{**kw, "n_batches": 10})
    run_floor(xs[0], floor_loop)
    run_floor(xs[0], floor_vmap)
    for r in range(args.repeats):
        for i, x in enumerate(xs):
            times["ours"].append(timed(functools.partial(clever_score, model, x, seed=1000 * r + i, **kw), device))
            times["loop"].append(run_floor(x, floor_loop))
            times["vmap"].append(run_floor(x, floor_vmap))
            if classifier is not None and r == 0:  # ART once per input: it is the slow one
                from art.metrics import clever_u  # only when ART is benchmarked (optional extra)

                np.random.seed(i)
                xn = x.cpu().numpy()
                times["art"].append(
                    timed(
                        functools.partial(
                            clever_u,
                            classifier,
                            xn,
                            nb_batches=n_batches,
                            batch_size=art_batch,
                            radius=radius,
                            norm=2,
                            pool_factor=n_batches,
                            verbose=False,
                        ),
                        device,
                    )
                )
    med = {k: statistics.median(v) if v else float("nan") for k, v in times.items()}
    med["floor"] = min(med["loop"], med["vmap"])
    return dict(
        name=name,
        points=n_points,
        art_points=art_points,
        chunk=chunk,
        **med,
        per_point={k: med[k] / n_points for k in ("ours", "floor", "loop", "vmap")} | {"art": med["art"] / art_points},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--inputs", type=int, default=2, help="inputs per model")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of ours and floor (ART runs once per input)")
    parser.add_argument(
        "--art-fraction",
        type=float,
        default=None,
        help="ART's batch size as a share of ours (default 1.0 digits, 0.1 wide; ratios are per point)",
    )
    parser.add_argument("--no-art", action="store_true", help="skip ART (ours vs floor only)")
    parser.add_argument("--models", default="digits,wide")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    rows = []
    models = args.models.split(",")
    if "digits" in models:
        data = load_digits_data()
        rows.append(
            bench_model(
                "digits CNN 1x8x8",
                cached_digits_cnn(),
                data.x_test[: args.inputs],
                DIGITS_BOUNDS,
                2.0,
                100,
                128,
                args,
                device,
                1.0,
            )
        )
    if "wide" in models:
        wide = WideCNN()
        xs = torch.rand(args.inputs, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        rows.append(bench_model("wide CNN 3x32x32", wide, xs, (0.0, 1.0), 2.0, 20, 64, args, device, 0.1))

    load = os.getloadavg()[0]
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"load(1 min)={load:.2f} inputs/model={args.inputs} repeats={args.repeats}"
    )
    head = (
        f"{'model':18s}{'points':>7s}{'chunk':>6s}{'ours s':>8s}{'loop s':>8s}{'vmap s':>8s}"
        f"{'ART pts':>8s}{'ART s':>8s}{'ours/floor':>11s}{'ART/ours':>9s}"
    )
    print(head)
    for r in rows:
        pp = r["per_point"]
        print(
            f"{r['name']:18s}{r['points']:7d}{r['chunk']:6d}{r['ours']:8.3f}{r['loop']:8.3f}{r['vmap']:8.3f}"
            f"{r['art_points']:8d}{r['art']:8.2f}{r['ours'] / r['floor']:11.3f}{pp['art'] / pp['ours']:9.1f}"
        )
    print(
        "times are medians per input; floor = faster of loop/vmap; ART/ours is per distinct point per target "
        "(targets: ours/floor <= 1.15, ART/ours >= 10)"
    )


if __name__ == "__main__":
    main()
