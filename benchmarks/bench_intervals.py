"""Do the score intervals and the noise-aware gate keep their promises? Coverage, false alarms, detection, cost.

Run on purpose: ``python benchmarks/bench_intervals.py [--quick] [--warnings]``
(about 4 minutes on 2 CPU cores, ``--quick`` about 1; ``--warnings`` adds the
WeakFitWarning rate of ReLU and smooth MLPs, about 2 more minutes).

- **Coverage**: one digits-CNN input scored with ``--seeds`` seeds; how often
  does the 95% interval of one seed's score contain the median score of the
  other seeds' runs (goal >= ~90%)?
- **False alarms**: the same model and inputs scored with different seeds,
  paired two runs at a time (up to 40 pairs): how often does
  ``mean:10%:significant`` fail (goal <= 5%)?
- **Detection**: the plain digits CNN against the noise-augmented one
  (``noise_std=0.3``, the more robust baseline): how often does the same rule
  fail (goal >= 95%)?
- **Cost**: time spent in ``score_endpoint_interval`` (the only extra work of a
  score's interval) against the scoring time, at the default settings
  (goal <= 10%); and the cost of ``CleverReport.interval`` per statistic.
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np
import torch

from pytest_clever import clever_score, clever_scores
from pytest_clever._engine import scoring as pipeline  # where each score's interval is computed
from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data
from pytest_clever.runs.gates import ChangeRule, compare_paired

KW = dict(radius=2.0, bounds=DIGITS_BOUNDS)


class IntervalTimer:
    """Wraps ``pipeline.score_endpoint_interval`` to add up the time it takes."""

    def __init__(self) -> None:
        self.seconds, self.calls, self.inner = 0.0, 0, pipeline.score_endpoint_interval

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def correct_inputs(model, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits_data()
    with torch.no_grad():
        ok = model(data.x_test).argmax(1) == data.y_test
    idx = torch.nonzero(ok).flatten()[:n]
    return data.x_test[idx], data.y_test[idx]


def coverage(model, x, y, seeds: int) -> None:
    results = [clever_score(model, x, label=int(y), seed=s, **KW) for s in range(seeds)]
    scores = np.array([r.score for r in results])
    hits = 0
    for i, r in enumerate(results):
        median_of_others = np.median(np.delete(scores, i))
        hits += r.interval[0] <= median_of_others <= r.interval[1]
    widths = np.array([(r.interval[1] - r.interval[0]) / r.score for r in results])
    print(
        f"coverage: {hits}/{seeds} = {hits / seeds:.0%} of 95% intervals contain the median of the other "
        f"seeds' scores (score median {np.median(scores):.4g}, sd {scores.std() / np.median(scores):.1%}; "
        f"interval width median {np.median(widths):.1%} of the score; fits: "
        f"{sorted(set(r.fit_method for r in results))})"
    )


def runs(model, xs, ys, seeds: range) -> list:
    return [clever_scores(model, xs, ys, seed=1000 * s, **KW) for s in seeds]


def gate_rate(rule: ChangeRule, pairs) -> tuple[int, int, list[float]]:
    failed, changes = 0, []
    for now, before in pairs:
        verdict = compare_paired(
            rule, now.scores, [r.interval for r in now], before.scores, [r.interval for r in before], 0.95
        )
        failed += verdict.failed
        changes.append(verdict.change)
    return failed, len(pairs), changes


def warning_rates(n: int) -> None:
    from torch import nn

    data = load_digits_data()
    for act in ("relu", "softplus", "tanh"):
        torch.manual_seed(0)
        layer = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh}[act]
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), layer(), nn.Linear(32, 32), layer(), nn.Linear(32, 10))
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(30):
            order = torch.randperm(len(data.y_train))
            for start in range(0, len(order), 64):
                i = order[start : start + 64]
                loss = nn.functional.cross_entropy(model(data.x_train[i]), data.y_train[i])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        model.eval()
        xs, ys = correct_inputs(model, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = clever_scores(model, xs, ys, seed=0, **KW)
        warned = sum(bool(r.notes) for r in report)
        methods = {}
        for r in report:
            key = r.fit_method if r.fit_method == "weibull" else f"max ({r.per_target[r.target].fit_reason[:28]}...)"
            methods[key] = methods.get(key, 0) + 1
        print(f"warnings, {act} MLP 64-32-32-10: {warned}/{len(report)} scores warned; fits {methods}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds, inputs and runs (about 1 minute)")
    parser.add_argument("--warnings", action="store_true", help="also measure the WeakFitWarning rate of MLPs")
    args = parser.parse_args()
    seeds, n_inputs, n_runs = (12, 8, 5) if args.quick else (40, 20, 9)
    torch.set_num_threads(1)

    plain, robust = cached_digits_cnn(noise_std=0.0), cached_digits_cnn(noise_std=0.3)
    xs, ys = correct_inputs(plain, n_inputs)
    with torch.no_grad():
        both = robust(xs).argmax(1) == ys
    xs, ys = xs[both], ys[both]

    timer = IntervalTimer()
    pipeline.score_endpoint_interval = timer
    try:
        started = time.perf_counter()
        coverage(plain, xs[0], ys[0], seeds)
        plain_runs = runs(plain, xs, ys, range(n_runs))
        robust_runs = runs(robust, xs, ys, range(n_runs))
        scoring = time.perf_counter() - started
    finally:
        pipeline.score_endpoint_interval = timer.inner
    print(
        f"cost: intervals took {timer.seconds:.2f}s of {scoring:.1f}s scoring "
        f"({timer.seconds / scoring:.1%}; {1000 * timer.seconds / timer.calls:.1f} ms per score)"
    )
    started = time.perf_counter()
    for statistic in ("mean", "median", "min", "q10"):
        plain_runs[0].interval(statistic)
    per_statistic_ms = 1000 * (time.perf_counter() - started) / 4
    print(f"cost: CleverReport.interval over {len(xs)} inputs: {per_statistic_ms:.1f} ms per statistic")

    rule = ChangeRule.parse("mean:10%:significant")
    same = list(itertools.permutations(plain_runs, 2))[:40]
    failed, total, changes = gate_rate(rule, same)
    print(
        f"false alarms ({rule}, same model, other seeds): {failed}/{total} = {failed / total:.0%} "
        f"(point changes of the mean: sd {np.std(changes):.1%}, largest drop {min(changes):.1%})"
    )
    lost = list(itertools.product(plain_runs, robust_runs))[:40]
    failed, total, changes = gate_rate(rule, lost)
    print(
        f"detection ({rule}, plain vs noise-augmented baseline): {failed}/{total} = {failed / total:.0%} "
        f"(mean change {np.mean(changes):+.1%})"
    )
    point = ChangeRule.parse("mean:10%")
    failed, total, _ = gate_rate(point, same)
    print(f"for reference, the point rule {point}: false alarms {failed}/{total}")
    if args.warnings:
        warning_rates(40)


if __name__ == "__main__":
    main()
