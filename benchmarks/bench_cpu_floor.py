"""A cheaper floor where it is free? channels-last, torch.compile and oneDNN for the sampled forward+backward on CPU.

Run on purpose: ``python benchmarks/bench_cpu_floor.py [--repeats 5] [--threads 2]``; prints ONE JSON document.

For the two models of the budget benchmark (the digits CNN, 1x8x8, and the small 3x32x32 ResNet,
trained, shifted softplus and ReLU) and one chunk of 1024 sampled points, it times what a first-order
score spends its time on: the forward pass and one backward pass per target
(``gradients.margin_gradient_norms``, top-1 here), under each variant:

- ``eager``: what the engine does;
- ``channels_last``: model and points in ``torch.channels_last`` memory format;
- ``compile``: ``torch.compile(model)`` (inductor, default mode; compile time reported separately);
- ``no_mkldnn``: ``torch.backends.mkldnn`` off (oneDNN is on by default, so this shows what it buys).

Per variant: the median seconds per chunk over ``--repeats`` (after one warm-up), the ratio to eager
measured in the same run, and the largest relative difference of the gradient norms from eager (the
scores move by at most that much: a score is ``margin / L`` with ``L`` fitted to these norms).

Measured (torch 2.13.0 CPU, 1 thread, 1024 points, 5 repeats, the other core busy with a benchmark):

| model | eager s/chunk | channels_last | compile (compile time) | oneDNN off |
| --- | --- | --- | --- | --- |
| digits CNN (ReLU) | 0.023 | 1.31x | 1.34x (32 s) | 1.14x |
| ResNet, shifted softplus | 3.01 | 0.72x | 0.50x (19 s) | 1.28x |
| ResNet, ReLU | 1.88 | 0.72x | 0.68x (14 s) | 1.87x |

Norms moved by at most 1.0e-6 (relative) compiled, 9.1e-7 channels-last, 3.3e-4 with oneDNN off (its
other kernels round differently). Adopted: ``torch_compile=True`` (``_engine/compiled.py``), off by
default since it is slower on small models and compiling takes seconds; it needs no change to the
user's model, where channels-last would need the model converted (a copy or a change the user sees).
oneDNN stays on (torch's default).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from resnet_model import cifar_size_digits, trained_resnet

from pytest_clever._engine.gradients import margin_gradient_norms
from pytest_clever._engine.sampling import sample_ball
from pytest_clever.extras.digits import cached_digits_cnn, load_digits_data


def models():
    data = load_digits_data()
    yield "digits CNN (relu)", cached_digits_cnn(), data.x_test[0], 2.0
    _, _, x_test, _ = cifar_size_digits()
    for act in ("shifted-softplus", "relu"):
        yield f"3x32x32 ResNet ({act})", trained_resnet(act), x_test[0], 4.0


@contextlib.contextmanager
def mkldnn(enabled: bool):
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def run(model, points, predicted, target):
    _, norms = margin_gradient_norms(model, points, predicted, [target], 2.0)
    return norms


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--points", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "points": args.points, "models": {}}
    for name, model, x0, radius in models():
        with torch.no_grad():
            logits = model(x0[None])[0]
        predicted, target = int(logits.argmax()), int(logits.argsort(descending=True)[1])
        generator = torch.Generator().manual_seed(0)
        points = sample_ball(x0, args.points, 2.0, radius, generator, (0.0, 1.0))
        rows = variants(model, points, predicted, target, args.repeats)
        report["models"][name] = rows
        print(name, json.dumps(rows), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


def _no_mkldnn(model, points, predicted, target):
    with mkldnn(False):
        return run(model, points, predicted, target)


def variants(model, points, predicted, target, repeats: int) -> dict:
    """Each variant's median seconds per chunk, ratio to eager and largest relative change of the norms."""
    rows: dict = {}
    eager_s, eager = timed(functools.partial(run, model, points, predicted, target), repeats)
    rows["eager"] = {"seconds": eager_s}
    ways = {}
    if points.dim() == 4:
        cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        cl_points = points.contiguous(memory_format=torch.channels_last)
        ways["channels_last"] = functools.partial(run, cl_model, cl_points, predicted, target)
    ways["no_mkldnn"] = functools.partial(_no_mkldnn, model, points, predicted, target)
    t0 = time.perf_counter()
    compile_s = None
    try:
        compiled = torch.compile(model)
        run(compiled, points, predicted, target)
        compile_s = time.perf_counter() - t0
        ways["compile"] = functools.partial(run, compiled, points, predicted, target)
    except Exception as exc:  # noqa: BLE001 - a variant that cannot run is reported, not fatal
        rows["compile"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    for label, fn in ways.items():
        seconds, norms = timed(fn, repeats)
        diff = float(((norms - eager).abs() / eager.abs().clamp_min(1e-30)).max())
        rows[label] = {"seconds": seconds, "ratio_to_eager": round(seconds / eager_s, 3), "max_rel_diff": diff}
    if compile_s is not None:
        rows["compile"]["compile_seconds"] = round(compile_s, 1)
    return rows


if __name__ == "__main__":
    main()
