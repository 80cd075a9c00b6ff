"""Cost and peak memory of second-order CLEVER relative to first order, per sampled point.

Run: ``python benchmarks/bench_second_order.py [--models digits resnet resnet-trained --repeats 2]``
(the issue's configuration; ``--reduced`` for a quick look: 1 repeat, fewer points). Prints one JSON object.
``--accuracy [...]`` runs ``second_order_accuracy.py`` instead (its flags follow), which checks
the stopping rules against fully converged cold-start Lanczos.

Each (model, order, solver) configuration runs in a fresh subprocess, so
that its peak resident memory (``resource.getrusage``) is its own; the
configurations alternate so that load from other processes hits all alike.
Every run scores the same input untargeted (all 9 other classes) with the
same sampled points and the automatically chosen chunk size; the cost is
the CPU time of the scoring call in that subprocess, divided by the number of
sampled points. Second order also reports what the result says about its
cost: Hessian-vector products per point (``hvp_per_point``, all targets
together) and mean Lanczos steps per (point, target) row. Solvers: ``cold``
(the library default: random start vectors, rows stop once steady and
resolved, ``lanczos.RESIDUAL_TOLERANCE``), ``share-half`` (the rule before
it: steady for 4 steps and for half of the steps) and ``warm`` (the random
start plus the extreme Ritz vectors at ``x0``, ``curvature.SolverOptions``).
Models: the softplus digits CNN (``pytest_clever.extras.digits``) and a small
ResNet on 3x32x32 inputs (``resnet_model.py``): softplus with random weights
(``resnet``: its Hessians' spectra have no gap at their ends, so Lanczos needs
many steps), and shifted-softplus trained on the upscaled digits
(``resnet-trained``: what a user's trained model looks like to Lanczos).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from pytest_clever import clever_score
from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data

sys.path.insert(0, str(Path(__file__).parent))
from resnet_model import SmallResNet, cifar_size_digits, trained_resnet
from second_order_accuracy import SHARE_HALF

#: Sampled points per batch: the library default for the digits CNN, fewer for the slow ResNets.
DEFAULT_BATCH_SIZE = {"digits": 128, "resnet": 8, "resnet-trained": 8}
#: The same for ``--reduced``.
REDUCED_BATCH_SIZE = {"digits": 32, "resnet": 4, "resnet-trained": 4}


def _setup(model_name: str):
    if model_name == "digits":
        return cached_digits_cnn("softplus"), load_digits_data().x_test[0], dict(radius=2.0, bounds=DIGITS_BOUNDS)
    if model_name == "resnet-trained":
        return trained_resnet("shifted-softplus"), cifar_size_digits()[2][0], dict(radius=0.5, bounds=(0.0, 1.0))
    torch.manual_seed(0)
    model = SmallResNet().eval().requires_grad_(False)
    return model, torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)), dict(radius=0.5, bounds=(0.0, 1.0))


def _use_solver(name: str) -> None:
    """Make the scoring call use the solver ``name`` (the API always uses the default, "cold")."""
    from pytest_clever._engine import second_order
    from pytest_clever._engine.curvature import SolverOptions

    solver = {"warm": SolverOptions(warm=True), "share-half": SHARE_HALF}.get(name)
    if solver is not None:
        second_order.sample_targets = functools.partial(second_order.sample_targets, solver=solver)


def worker(model_name: str, order: int, solver: str, n_batches: int, batch_size: int, curvature: str) -> dict:
    """Score one input in this process; CPU seconds, peak RSS above the set-up's, and what the result says."""
    model, x, kw = _setup(model_name)
    _use_solver(solver)
    clever_score(model, x, order=1, seed=1, n_batches=10, batch_size=1, **kw)  # warm-up: lazy init, allocator
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    result = clever_score(
        model, x, order=order, curvature=curvature, seed=0, n_batches=n_batches, batch_size=batch_size, **kw
    )
    seconds = time.process_time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    deciding = result.per_target[result.target]
    return {
        "cpu_s": seconds,
        "points": n_batches * batch_size,
        "peak_rss_increase_mib": (peak - base) / 1024,
        "peak_rss_mib": peak / 1024,
        "score": result.score,
        "solver_steps": deciding.solver_steps,
        "hvp_per_point": result.hvp_per_point,
        "steps_per_row": result.steps_per_row,
        "chunk_size": result.chunk_size,
    }


def main() -> None:
    if "--accuracy" in sys.argv:
        sys.argv.remove("--accuracy")
        import second_order_accuracy

        second_order_accuracy.main(sys.argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    models = ["digits", "resnet", "resnet-trained"]
    parser.add_argument("--models", nargs="+", default=models, choices=models)
    solvers = ["cold", "share-half", "warm"]
    parser.add_argument("--solvers", nargs="+", default=solvers[:2], choices=solvers)
    parser.add_argument("--n-batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, help="for every model (default: digits 128, resnet 8)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--reduced", action="store_true", help="1 repeat, batch size 32 (digits) and 4 (resnet)")
    parser.add_argument("--curvature", default="spectral", choices=["spectral", "negative"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "ORDER", "SOLVER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        name, order, solver = args.worker
        print(json.dumps(worker(name, int(order), solver, args.n_batches, args.batch_size, args.curvature)))
        return

    repeats = 1 if args.reduced else args.repeats
    report: dict = {
        "torch_threads": args.threads,
        "reduced": args.reduced,
        "load_average_start": os.getloadavg(),
        "models": {},
    }
    runs_of = [("1", "cold"), *(("2", solver) for solver in args.solvers)]
    for name in args.models:
        batch_size = args.batch_size or (REDUCED_BATCH_SIZE if args.reduced else DEFAULT_BATCH_SIZE)[name]
        runs: dict[tuple[str, str], list[dict]] = {key: [] for key in runs_of}
        for _ in range(repeats):
            for order, solver in runs_of:
                command = [sys.executable, __file__, "--worker", name, order, solver]
                command += ["--n-batches", str(args.n_batches), "--batch-size", str(batch_size)]
                command += ["--curvature", args.curvature, "--threads", str(args.threads)]
                out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                runs[order, solver].append(json.loads(out.strip().splitlines()[-1]))
        best = {key: min(r, key=lambda run: run["cpu_s"]) for key, r in runs.items()}
        first = best["1", "cold"]
        entry: dict = {
            "points": first["points"],
            "first_cpu_s_per_point": first["cpu_s"] / first["points"],
            "first_peak_rss_mib": max(r["peak_rss_mib"] for r in runs["1", "cold"]),
            "first_peak_rss_increase_mib": max(r["peak_rss_increase_mib"] for r in runs["1", "cold"]),
            "first_score": first["score"],
        }
        for solver in args.solvers:
            second, all_runs = best["2", solver], runs["2", solver]
            entry[solver] = {
                "second_cpu_s_per_point": second["cpu_s"] / second["points"],
                "cost_ratio": second["cpu_s"] / first["cpu_s"],
                "hvp_per_point": second["hvp_per_point"],
                "steps_per_row": second["steps_per_row"],
                "most_steps_per_row": second["solver_steps"],
                "chunk_size": second["chunk_size"],
                "peak_rss_mib": max(r["peak_rss_mib"] for r in all_runs),
                "peak_rss_increase_mib": max(r["peak_rss_increase_mib"] for r in all_runs),
                "memory_ratio": max(r["peak_rss_mib"] for r in all_runs) / entry["first_peak_rss_mib"],
                "score": second["score"],
            }
        report["models"][name] = entry
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
