"""What the plugin adds to pytest's start-up, on an empty test file.

Run on purpose (not part of the test suite):

    python benchmarks/bench_startup.py [--runs 20]

Runs ``python -m pytest -q <empty test file>`` in a fresh temporary
directory ``--runs`` times with the plugin and ``--runs`` times without it,
alternating the two so machine load hits both alike, and reports the median
wall time of each and the median paired difference (target <= 20 ms). Two
set-ups:

* ``installed``: every installed plugin autoloads (hypothesis, xdist, ...);
  "without" passes ``-p no:clever``, which blocks the ``pytest11`` entry point
  before its module is imported. This is what a user's repo sees, but the
  other plugins' start-up adds noise.
* ``isolated``: ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`` for both; "with" loads
  only this plugin (``-p pytest_clever.plugin``). Less noise.

Also checks that importing the plugin does not import torch, numpy or scipy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pytest_clever.plugin; "
            "print(sorted(m for m in ('torch', 'numpy', 'scipy') if m in sys.modules))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "test_empty.py").write_text("def test_nothing():\n    pass\n")
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_empty.py"]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        isolated = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        setups = {
            "installed": ((base, env), (base + ["-p", "no:clever"], env)),
            "isolated": ((base + ["-p", "pytest_clever.plugin"], isolated), (base, isolated)),
        }
        print(f"modules imported by pytest_clever.plugin among torch/numpy/scipy: {heavy}")
        print(f"load(1 min) at start={os.getloadavg()[0]:.2f} runs={args.runs}")
        for name, pair in setups.items():
            times: list[list[float]] = [[], []]
            for i in range(args.runs + 1):
                for k, (cmd, e) in enumerate(pair):
                    start = time.perf_counter()
                    subprocess.run(cmd, cwd=tmp, env=e, check=True, capture_output=True)
                    if i:  # the first round only warms the file cache
                        times[k].append(time.perf_counter() - start)
            with_, without = (statistics.median(t) * 1000 for t in times)
            paired = statistics.median(a - b for a, b in zip(*times, strict=True)) * 1000
            print(
                f"{name:9s}: with plugin {with_:7.1f} ms, without {without:7.1f} ms (medians); "
                f"median paired difference {paired:+.1f} ms (target <= 20 ms)"
            )
        print(f"load(1 min) at end={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
