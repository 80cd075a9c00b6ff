"""Screening of target classes (``screen=``): what it saves on an untargeted score at 1000 classes, and whether
it changes the answer.

Run on purpose (not part of the test suite); prints ONE JSON document (and with ``--out`` appends each part
to a JSON-lines file as it finishes, so a long run that is cut short keeps what it measured):

    python benchmarks/bench_screening.py                       # 1 timing input, 20 cases, 1 thread
    python benchmarks/bench_screening.py --timing-inputs 0 --cases 5 --out cases.jsonl

``bench_many_classes.small_net(1000)`` on 3x64x64 inputs (``torch.rand``), L2, radius 1, bounds (0, 1),
targets="all" (999 targets), ``n_batches=20, batch_size=128``, as in issue 21:

- ``timing``: ``clever_score`` with ``screen="off"`` and ``screen="on"`` on the same input and seed in this
  one run (after a warm-up), their ratio, the screening's own seconds (``stats.screening.screen_targets``,
  timed inside the run), how many targets survived, and whether the deciding target, score and interval
  are the same bits.
- ``cases``: over (input, seed) cases, whether the screened minimum (class and score) equals the
  unscreened one, and where it differs whether the unscreened score lies in the screened result's
  interval. Each case costs ONE unscreened run (~186 s at idle on the 2-core dev machine): the survivors'
  batch maxima are the unscreened run's bits (tests/engine/test_screening.py), so the screened answer is
  the unscreened one unless the screening rule, applied to the first 128 points' per-point values
  (captured from the unscreened run's first chunk), screens out the unscreened deciding class; only then
  is the real screened run made. ``simulation_checked`` runs the real screened run on the first case too
  and says whether it gave the same answer and the same screened count.

Measured (2-core dev machine, torch 2.13 CPU, torch threads 1, beside another benchmark using ~1.2 cores:
load 3-4, so under load; both runs of a pair under the same load):

- ``timing``, input 0, seed 0: unscreened 493.4 s, screened 17.6 s: 28.1x faster (at idle the unscreened run
  takes ~186 s, 10.6x the screened run's time under load). The screening rule itself took 0.002 s: 998 of
  999 targets screened out after 128 points, all by the lead or the bracket, no profile likelihood needed
  (``evt.endpoint_upper_bounds`` costs 2.4 s for 999 columns under load where every class needs one).
  Same deciding target (418), score and interval bits as unscreened.
- ``cases``: 10 (input, seed) cases (inputs 0-9, seed = input % 2; cut off at 10 of 20 by the time limit, ~5-8 min
  each under load): the screened minimum (class and score) equal to the unscreened one in 10 of 10, the
  unscreened deciding class (418 or 602) never screened out; 997-998 of 999 classes screened out in every case,
  with the 16 x 8 split and with 8 x 16 alike (same counts, deciding class kept by both). The real screened run
  on case 0 gave the same answer and count as the rule applied to the unscreened run's first 128 points.

Self-contained for a machine without this package installed: it puts the repository root on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
from bench_many_classes import small_net

from pytest_clever import clever_score
from pytest_clever._engine import first_order
from pytest_clever.core.validation import DEFAULT_CONFIDENCE, SCREEN_POINTS
from pytest_clever.stats.screening import screen_targets

KWARGS: dict[str, Any] = {"radius": 1.0, "bounds": (0.0, 1.0), "norm": 2, "targets": "all"}


def an_input(i: int, size: int) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(100 + i))


def score(model, x, seed: int, screen: str, samples: tuple[int, int]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clever_score(model, x, seed=seed, screen=screen, n_batches=samples[0], batch_size=samples[1], **KWARGS)


class Timed:
    """``first_order.screen_targets`` wrapped: the seconds the screening rule itself takes."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Timed:
        inner = self.inner = first_order.screen_targets

        def timed(*args, **kwargs):
            began = time.perf_counter()
            out = inner(*args, **kwargs)
            self.seconds += time.perf_counter() - began
            return out

        first_order.screen_targets = timed
        return self

    def __exit__(self, *exc) -> None:
        first_order.screen_targets = self.inner


class FirstChunk:
    """``first_order.margin_gradient_norms`` wrapped: the per-point values of the first ``SCREEN_POINTS`` points."""

    def __init__(self) -> None:
        self.values: torch.Tensor | None = None

    def __enter__(self) -> FirstChunk:
        inner = self.inner = first_order.margin_gradient_norms

        def capture(model, points, *args, **kwargs):
            logits, norms = inner(model, points, *args, **kwargs)
            if self.values is None and len(points) >= SCREEN_POINTS:
                self.values = norms[:SCREEN_POINTS].detach().clone()
            return logits, norms

        first_order.margin_gradient_norms = capture
        return self

    def __exit__(self, *exc) -> None:
        first_order.margin_gradient_norms = self.inner


def timing(model, x, seed: int, samples: tuple[int, int]) -> dict:
    score(model, x, seed, "off", (10, 1))  # warm-up
    began = time.perf_counter()
    off = score(model, x, seed, "off", samples)
    off_s = time.perf_counter() - began
    with Timed() as screening:
        began = time.perf_counter()
        on = score(model, x, seed, "on", samples)
        on_s = time.perf_counter() - began
    return {
        "unscreened_s": round(off_s, 2),
        "screened_s": round(on_s, 2),
        "speedup": round(off_s / on_s, 2),
        "screening_rule_s": round(screening.seconds, 3),
        "screened": on.screened,
        "survivors": len(on.target_classes) - on.screened,
        "same_target_score_interval": (on.target, on.score, on.interval) == (off.target, off.score, off.interval),
        "target": off.target,
        "score": off.score,
    }


def case(model, x, seed: int, samples: tuple[int, int], check: bool) -> dict:
    with FirstChunk() as first:
        off = score(model, x, seed, "off", samples)
    assert first.values is not None
    margins = [off.per_target[j].margin for j in off.target_classes]
    rule = screen_targets(
        first.values.double().cpu().numpy(),
        torch.tensor(margins).numpy(),
        radius=off.radius,
        confidence=DEFAULT_CONFIDENCE,
    )
    screened_classes = {off.target_classes[t] for t in rule.screened}
    # The other split of the same 128 points: 8 sub-batches of 16 (the rule uses 16 of 8).
    other = screen_targets(
        first.values.double().cpu().numpy(),
        torch.tensor(margins).numpy(),
        radius=off.radius,
        confidence=DEFAULT_CONFIDENCE,
        sub_batches=8,
    )
    row: dict[str, Any] = {
        "seed": seed,
        "target": off.target,
        "score": off.score,
        "screened": len(screened_classes),
        "deciding_class_screened": off.target in screened_classes,
        "screened_8x16": len(other.screened),
        "deciding_class_screened_8x16": off.target in {off.target_classes[t] for t in other.screened},
    }
    if off.target in screened_classes or check:
        on = score(model, x, seed, "on", samples)
        row["real_screened_run"] = {
            "target": on.target,
            "score": on.score,
            "interval": on.interval,
            "screened": on.screened,
            "unscreened_score_in_interval": on.interval is not None and on.interval[0] <= off.score <= on.interval[1],
        }
        row["same"] = (on.target, on.score) == (off.target, off.score)
        if check:
            row["simulation_checked"] = row["same"] == (off.target not in screened_classes) and on.screened == len(
                screened_classes
            )
    else:
        row["same"] = True  # the survivors' maxima are the unscreened bits, and the deciding class survived
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="input side: 3 x size x size (default 64)")
    parser.add_argument("--samples", type=int, nargs=2, default=(20, 128), help="n_batches batch_size")
    parser.add_argument("--timing-inputs", type=int, default=1)
    parser.add_argument("--cases", type=int, default=20, help="(input, seed) cases: case k is input k, seed k % 2")
    parser.add_argument("--first-case", type=int, default=0, help="start at this case (to resume a cut-off run)")
    parser.add_argument("--out", help="append each part to this JSON-lines file as it finishes")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    samples = tuple(args.samples)
    model = small_net(args.classes)
    for p in model.parameters():
        p.requires_grad_(False)

    def emit(part: dict) -> None:
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(part) + "\n")

    started = time.perf_counter()
    document: dict = {
        "benchmark": "bench_screening",
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "classes": args.classes,
        "input": [3, args.size, args.size],
        "samples": list(samples),
        "load_average": os.getloadavg(),
        "timing": [],
        "cases": [],
    }
    for i in range(args.timing_inputs):
        part = {"input": i, **timing(model, an_input(i, args.size), 0, samples)}
        document["timing"].append(part)
        emit({"timing": part})
    for k in range(args.first_case, args.first_case + args.cases):
        part = {"input": k, **case(model, an_input(k, args.size), k % 2, samples, check=k == 0)}
        document["cases"].append(part)
        emit({"case": part})
    rows = document["cases"]
    differ = [r for r in rows if not r["same"]]
    document["summary"] = {
        "cases": len(rows),
        "same_min": sum(r["same"] for r in rows),
        "differ_with_unscreened_score_in_interval": sum(
            r["real_screened_run"]["unscreened_score_in_interval"] for r in differ
        ),
        "screened_median": sorted(r["screened"] for r in rows)[len(rows) // 2] if rows else None,
    }
    document["total_s"] = round(time.perf_counter() - started, 1)
    document["load_average_end"] = os.getloadavg()
    print(json.dumps(document, indent=2))
    return document


if __name__ == "__main__":
    main()
