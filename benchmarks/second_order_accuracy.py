"""Accuracy and steps of second order's Lanczos stopping rules against fully converged cold-start Lanczos.

Run: ``python benchmarks/second_order_accuracy.py [--models digits tanh resnet --inputs 5 --seeds 4]``
(``bench_second_order.py --accuracy`` runs it too). Prints one JSON object.

For each (model, input, seed) configuration the same sampled points are
scored untargeted with every method below, and each method's batch maxima of
the curvature are compared with the reference's (``relative_deficit``: how far
below the reference, relative to it; positive = lower = an unsafe, higher score)
and its second-order score with the reference's (relative difference). Also
per method: mean Lanczos steps per (point, target) row and Hessian-vector
products per sampled point. Methods:

- ``reference``: cold start, tolerance 1e-7, no pruning, no patience limit to
  speak of (patience 3 at 1e-7): fully converged;
- ``cold``: the library default (per-row patience and residuals, pruning);
- ``share-half``: the previous default: steady for 4 steps and for half of
  its steps, residuals not checked (``--no-share-half`` skips it);
- ``warm``: the default plus the warm start from the Ritz vectors at ``x0``
  (no pruning);
- ``cold-p<k>`` / ``warm-p<k>``: other patience values (``--patience``);
- ``cold-t<tol>``: other steadiness tolerances (``--tolerances``);
- ``cold-s<share>``: rows steady for at least that share of their steps (``--shares``);
- ``cold-r<tol>``: other residual tolerances (``--residuals``; ``inf``: steadiness alone).

Models: the digits CNNs (``digits`` softplus, ``tanh``), the small softplus
ResNet on 3x32x32 inputs with random weights (``resnet``: its spectra have no
gap at their ends, so Ritz values creep) and the shifted-softplus one trained
on the upscaled digits (``resnet-trained``, ``resnet_model.trained_resnet``).
``--first-input``/``--first-seed`` select a slice of the configurations, so
that two processes can share the work.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from pytest_clever._engine import second_order
from pytest_clever._engine.curvature import SolverOptions
from pytest_clever._engine.maxima import Problem
from pytest_clever.core.validation import Settings
from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data

sys.path.insert(0, str(Path(__file__).parent))
from resnet_model import SmallResNet, cifar_size_digits, trained_resnet

REFERENCE = SolverOptions(tol=1e-7, patience=3, patience_share=0.5, prune=False)
#: The stopping rule before the residual rule (``lanczos.RESIDUAL_TOLERANCE``): steady for half the steps.
SHARE_HALF = SolverOptions(patience_share=0.5, residual_tol=math.inf)


def models(names: list[str]) -> dict:
    """name -> (model, inputs, settings)."""
    out = {}
    for name in names:
        if name in ("digits", "tanh"):
            model = cached_digits_cnn("softplus" if name == "digits" else "tanh")
            out[name] = (model, load_digits_data().x_test, dict(radius=2.0, bounds=DIGITS_BOUNDS))
        elif name == "resnet-trained":
            model = trained_resnet("shifted-softplus")
            out[name] = (model, cifar_size_digits()[2], dict(radius=0.5, bounds=(0.0, 1.0)))
        else:
            torch.manual_seed(0)
            model = SmallResNet().eval().requires_grad_(False)
            inputs = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
            out[name] = (model, inputs, dict(radius=0.5, bounds=(0.0, 1.0)))
    return out


def run(model, x0, settings: Settings, seed: int, curvature: str, solver: SolverOptions, chunk: int | None):
    logits = model(x0.unsqueeze(0))[0].detach()
    predicted = int(logits.argmax())
    targets = [j for j in range(len(logits)) if j != predicted]
    margins0 = logits[predicted] - logits[targets]
    problem = Problem(model, x0, margins0, predicted, targets, seed, chunk)
    samples = second_order.sample_targets(problem, settings, curvature=curvature, solver=solver)
    scores = second_order.score_targets(samples, targets, margins0.double().tolist(), settings)
    return samples, min(s.score for s in scores.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["digits", "tanh"], choices=["digits", "tanh", "resnet", "resnet-trained"]
    )
    parser.add_argument("--inputs", type=int, default=5, help="inputs per model")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per input")
    parser.add_argument("--first-input", type=int, default=0)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--n-batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--curvature", default="spectral", choices=["spectral", "negative"])
    parser.add_argument("--patience", type=int, nargs="*", default=[], help="extra patience values to try")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm-start methods")
    parser.add_argument("--tolerances", type=float, nargs="*", default=[], help="extra steadiness tolerances")
    parser.add_argument("--shares", type=float, nargs="*", default=[], help="patience shares of the steps")
    parser.add_argument("--residuals", type=float, nargs="*", default=[], help="residual tolerances")
    parser.add_argument("--no-share-half", action="store_true", help="skip the previous default (share-half)")
    parser.add_argument("--no-default", action="store_true", help="skip the default method (cold)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = {} if args.no_default else {"cold": SolverOptions()}
    if not args.no_share_half:
        methods["share-half"] = SHARE_HALF
    if not args.no_warm:
        methods["warm"] = SolverOptions(warm=True)
    for p in args.patience:
        methods[f"cold-p{p}"] = SolverOptions(patience=p)
        if not args.no_warm:
            methods[f"warm-p{p}"] = SolverOptions(patience=p, warm=True)
    for share in args.shares:
        methods[f"cold-s{share:g}"] = SolverOptions(patience_share=share)
    for tol in args.residuals:
        methods[f"cold-r{tol:g}"] = SolverOptions(residual_tol=tol)
    for tol in args.tolerances:
        methods[f"cold-t{tol:g}"] = SolverOptions(tol=tol)
    started = time.perf_counter()
    stats = {
        m: {"worst_deficit": -1.0, "over_1e-3": 0, "worst_score_diff": 0.0, "steps": [], "hvp": []} for m in methods
    }
    stats["reference"] = {"steps": [], "hvp": []}
    configs = 0
    for model, inputs, kw in models(args.models).values():
        settings = Settings(norm=2.0, n_batches=args.n_batches, batch_size=args.batch_size, order=2, **kw)
        for i in range(args.first_input, args.first_input + args.inputs):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                configs += 1
                ref, ref_score = run(model, inputs[i], settings, seed, args.curvature, REFERENCE, None)
                stats["reference"]["steps"].append(ref.steps_per_row)
                stats["reference"]["hvp"].append(ref.hvp_per_point)
                top = ref.sampled.maxima.double()
                for m, solver in methods.items():
                    got, score = run(model, inputs[i], settings, seed, args.curvature, solver, None)
                    maxima = got.sampled.maxima.double()
                    deficit = float(((top - maxima) / top.clamp_min(1e-30)).max())
                    s = stats[m]
                    s["worst_deficit"] = max(s["worst_deficit"], deficit)
                    s["over_1e-3"] += int(deficit > 1e-3)
                    diff = abs(score - ref_score) / max(abs(ref_score), 1e-30)
                    s["worst_score_diff"] = max(s["worst_score_diff"], diff)
                    s["steps"].append(got.steps_per_row)
                    s["hvp"].append(got.hvp_per_point)
                elapsed = time.perf_counter() - started
                print(f"config {configs}: {elapsed:.0f} s", file=sys.stderr, flush=True)
    report = {
        "configs": configs,
        "torch_threads": args.threads,
        "load_average": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
        "settings": {k: v for k, v in vars(args).items() if k != "threads"},
        "methods": {
            m: {
                **{k: v for k, v in s.items() if k not in ("steps", "hvp")},
                "mean_steps_per_row": sum(s["steps"]) / len(s["steps"]),
                "mean_hvp_per_point": sum(s["hvp"]) / len(s["hvp"]),
            }
            for m, s in stats.items()
        },
        "reference": dataclasses.asdict(REFERENCE),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
