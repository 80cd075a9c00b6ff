"""Wall and CPU time of a run on a CI-sized machine, idle and with one other busy process: does torch hold up?

Run: ``python benchmarks/bench_busy_runner.py [--cores 0,1] [--what examples|inputs] [-- extra pytest args]``.
Prints one JSON object. The run is pinned to ``--cores`` (``taskset``-style, through
``os.sched_setaffinity``), first alone ("idle"), then with one busy-looping process
pinned to the last of those cores ("busy"): a 2-core CI runner shared with one other job.
``--what examples`` runs the README's first command, ``pytest examples``, in a
subprocess; ``--what inputs`` scores ``--inputs`` digits with the digits CNN at the
default settings (first order, 100 x 128 points): the same kernels, in seconds.
Reports the wall time and the user CPU time of the run in each condition, the busy/idle
ratios, and the torch thread count and OpenMP wait policy the run used (read in a
subprocess under the same environment). ``--env NAME=VALUE`` (repeatable) sets
variables for the runs: ``--env GOMP_SPINCOUNT=300000`` measures libgomp's own default
(threads spin before they sleep) instead of the plugin's passive wait, ``--env OMP_NUM_THREADS=1``
one thread. Other load on the machine adds to both conditions:
run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

INPUTS_RUN = """
import sys
import pytest_clever.plugin  # loaded first, as pytest loads it: its thread defaults apply
import torch
from pytest_clever import clever_scores
from pytest_clever.extras.digits import cached_digits_cnn, load_digits_data
model = cached_digits_cnn()
data = load_digits_data()
n = int(sys.argv[1])
clever_scores(model, data.x_test[:n], radius=2.0, bounds=(0, 1), seed=0)
"""

PROBE = """
import os
import pytest_clever.plugin  # what pytest loads first: the plugin's entry point
import torch
print(torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY", "unset"))
"""


def _command(args: argparse.Namespace) -> tuple[list[str], Path]:
    if args.what == "examples":
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest_args], ROOT / "examples"
    return [sys.executable, "-c", INPUTS_RUN, str(args.inputs)], ROOT


def _timed(command: list[str], cwd: Path, env: dict[str, str], cores: set[int]) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=cwd, env=env, preexec_fn=lambda: os.sched_setaffinity(0, cores), capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"the run failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {"wall_s": round(wall, 2), "user_cpu_s": round(after.ru_utime - before.ru_utime, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="0,1", help="the cores of the simulated runner (default 0,1)")
    parser.add_argument("--what", choices=["examples", "inputs"], default="examples")
    parser.add_argument("--inputs", type=int, default=3, help="with --what inputs: how many digits to score")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments (--what examples)")
    args = parser.parse_args()
    cores = {int(c) for c in args.cores.split(",")}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.update(item.split("=", 1) for item in args.env)
    command, cwd = _command(args)

    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
        capture_output=True,
        text=True,
        check=True,
    )
    threads, wait_policy = probe.stdout.split()
    _timed(command[:1] + ["-c", "import torch"], cwd, env, cores)  # warm the file cache
    idle = _timed(command, cwd, env, cores)
    busy_core = max(cores)
    hog = subprocess.Popen(
        [sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.sched_setaffinity(0, {busy_core})
    )
    try:
        busy = _timed(command, cwd, env, cores)
    finally:
        hog.kill()
        hog.wait()
    print(
        json.dumps(
            {
                "what": " ".join(["pytest examples", *args.pytest_args])
                if args.what == "examples"
                else f"{args.inputs} digits, default settings",
                "cores": sorted(cores),
                "busy_process_on_core": busy_core,
                "env": dict(item.split("=", 1) for item in args.env),
                "torch_threads": int(threads),
                "omp_wait_policy": wait_policy,
                "idle": idle,
                "busy": busy,
                "wall_ratio_busy_over_idle": round(busy["wall_s"] / idle["wall_s"], 2),
                "user_cpu_ratio_busy_over_idle": round(busy["user_cpu_s"] / idle["user_cpu_s"], 2),
                "load_average_after": os.getloadavg(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
