"""Peak memory of CLEVER is bounded by the chunk size, not by the number of samples.

Run on purpose (not part of the test suite):

    python benchmarks/bench_memory.py [--device cpu]

Each configuration runs in a fresh subprocess, which scores one input and
reports its peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``)
after importing everything and building the model (``base``) and after
scoring (``peak``). Growing ``n_batches * batch_size`` 10x should leave the
peak flat: points are sampled, differentiated and reduced to batch maxima
chunk by chunk (see ``pytest_clever._engine.maxima.default_chunk_size``).

Each configuration runs twice: with glibc's default allocator, and with
``MALLOC_MMAP_THRESHOLD_=1048576``, which serves every large tensor by its own
``mmap`` and returns it on free. With the default, glibc raises its mmap
threshold after the first frees and then keeps freed chunk-sized blocks in a
fragmented heap, so RSS creeps up with the number of chunks on the wide net
although live memory does not; the fixed threshold shows the live peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, {bench_dir!r})
from pytest_clever import clever_score
from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data
from bench_vs_art import WideCNN
name, n_batches, batch_size, device = {name!r}, {n_batches}, {batch_size}, {device!r}
torch.manual_seed(0)
if name == "digits":
    model, x, bounds = cached_digits_cnn(), load_digits_data().x_test[0], DIGITS_BOUNDS
else:
    model, x, bounds = WideCNN(), torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)), (0.0, 1.0)
model(x[None])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = clever_score(model, x, radius=2.0, bounds=bounds, n_batches=n_batches, batch_size=batch_size, seed=0, device=device)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(base=base / 1024, peak=peak / 1024, score=r.score)))
"""


def run(name: str, n_batches: int, batch_size: int, device: str, env: dict | None = None) -> dict:
    import os

    env = {**os.environ, **(env or {})}
    code = CHILD.format(
        bench_dir=os.path.dirname(os.path.abspath(__file__)),
        name=name,
        n_batches=n_batches,
        batch_size=batch_size,
        device=device,
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    configs = [("digits", 10, 128), ("digits", 100, 128), ("wide", 20, 32), ("wide", 200, 32)]
    print(
        f"{'model':8s}{'n_batches x batch_size':>24s}{'points':>8s}{'base MiB':>10s}{'peak MiB':>10s}"
        f"{'peak-base':>10s}{'peak, fixed mmap threshold':>28s}"
    )
    for name, nb, bs in configs:
        r = run(name, nb, bs, args.device)
        fixed = run(name, nb, bs, args.device, {"MALLOC_MMAP_THRESHOLD_": "1048576"})
        print(
            f"{name:8s}{f'{nb} x {bs}':>24s}{nb * bs:8d}{r['base']:10.1f}{r['peak']:10.1f}"
            f"{r['peak'] - r['base']:10.1f}{fixed['peak']:28.1f}"
        )


if __name__ == "__main__":
    main()
