"""Executor runs that never hang, retry for real, check the device in the workers and keep the warnings."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from pytest_clever import clever_scores
from pytest_clever.errors import CleverWarning, ExecutorError, InvalidInputError

from ..helpers import Linear
from .executor_models import ExitingLinear, ProbabilityLinear, SleepyLinear, linear
from .test_executor import SCORE_SETTINGS, N, Recording, inputs, same_results

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]


def fork_pool(workers: int = 2) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


def run_script(code: str, tmp_path: Path, **popen) -> subprocess.Popen:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, **popen)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purpose: it runs nothing
        return f.read().split(")")[-1].split()[0] != "Z"


# -- no hang --------------------------------------------------------------------------------

FORK_AFTER_THREADS = """
    import multiprocessing, time, torch
    from concurrent.futures import ProcessPoolExecutor
    from pytest_clever import clever_scores
    from tests.helpers import Linear
    from tests.engine.executor_models import linear

    torch.set_num_threads(2)
    a = torch.randn(512, 512)
    for _ in range(5):
        a @ a  # the caller's OpenMP pool now has threads that a forked child does not
    xs = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    settings = dict(radius=1.0, n_batches=20, batch_size=32, seed=7)
    started = time.perf_counter()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        report = clever_scores(Linear(*linear()), xs, executor=pool, **settings)
    print("SCORED", len(report.results), round(time.perf_counter() - started, 2), flush=True)
"""


@pytest.mark.slow  # a real process pool forked from a subprocess that ran torch on two threads
def test_a_fork_pool_after_multi_threaded_torch_scores_instead_of_hanging(tmp_path):
    output = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    process = run_script(FORK_AFTER_THREADS, tmp_path, start_new_session=True, **output)
    try:
        out, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the caller and its stuck workers
        out, _ = process.communicate()
        pytest.fail(f"clever_scores on a fork pool hung for 60 s:\n{out}")
    assert process.returncode == 0, out
    assert "SCORED 4" in out, out


def test_a_wait_with_no_input_back_fails_naming_the_pending_inputs_and_the_executor():
    model = SleepyLinear(*linear(), seconds=3.0)
    xs = inputs()
    xs[3, 0] = 42.0  # POISON: input 3 sleeps 3 s in every forward
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as executor:
        with pytest.raises(
            ExecutorError,
            match=r"no input came back from the executor ThreadPoolExecutor \(2 workers\) for 0\.5 s; "
            r"input\(s\) 3 still pending",
        ):
            clever_scores(model, xs, executor=executor, executor_timeout=0.5, **SCORE_SETTINGS)
        waited = time.perf_counter() - started
    assert waited < 3.0  # it failed on the timeout, before input 3's first forward ended


def test_executor_timeout_is_validated():
    with pytest.raises(InvalidInputError, match="executor_timeout must be a finite number > 0, got 0"):
        clever_scores(Linear(*linear()), inputs(), executor=Recording(), executor_timeout=0, **SCORE_SETTINGS)


# -- retries that retry ---------------------------------------------------------------------


@pytest.mark.parametrize("kill", [False, True], ids=["os._exit", "SIGKILL"])
def test_a_process_pool_broken_by_one_worker_death_is_replaced_and_every_input_scored(tmp_path, kill):
    model = ExitingLinear(*linear(), once=str(tmp_path / "died"), kill=kill)
    serial = clever_scores(Linear(*linear()), inputs(poison=2), **SCORE_SETTINGS)
    with fork_pool() as pool:
        with pytest.warns(CleverWarning, match=r"ProcessPoolExecutor \(2 workers\) passed broke.*fresh pool"):
            parallel = clever_scores(model, inputs(poison=2), executor=pool, **SCORE_SETTINGS)
        assert (tmp_path / "died").exists()  # a worker did die on input 2
        same_results(serial, parallel)
        # The pool passed stays broken: a later call with it is scored on a fresh pool too, and says so.
        with pytest.warns(
            CleverWarning, match=r"passed was already broken \(input\(s\) 0, 1, 2, 3, 4, 5 lost.*stays broken"
        ):
            again = clever_scores(model, inputs(poison=2), executor=pool, **SCORE_SETTINGS)
    same_results(serial, again)


def test_an_input_that_always_kills_its_worker_is_reported_alone_with_what_was_tried():
    with fork_pool() as pool:
        with pytest.raises(ExecutorError) as caught:
            clever_scores(ExitingLinear(*linear()), inputs(poison=3), executor=pool, **SCORE_SETTINGS)
    message = str(caught.value)
    assert message.startswith("input(s) 3: the worker scoring them was lost each time they were tried (on the "), (
        message
    )
    assert "fresh ProcessPoolExecutor (2 workers) replacing the broken one: its worker was lost (BrokenProcessPool" in (
        message
    )
    assert "then alone on a fresh ProcessPoolExecutor (2 workers)" in message
    assert "input(s) 0" not in message and ", 3" not in message  # the others were scored


# -- the device is checked where it is used -------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_is_checked_in_the_workers_not_refused_by_a_cpu_only_caller():
    executor = Recording()
    with pytest.raises(InvalidInputError) as caught:
        clever_scores(Linear(*linear()), inputs(), executor=executor, device="cuda", **SCORE_SETTINGS)
    executor.shutdown()
    assert executor.submitted == N  # every input went to the workers
    assert "not available in this torch" not in str(caught.value)
    assert caught.match(r"^input \d: device 'cuda' is not available in the worker \(pid \d+ on .+\) \(")
    assert caught.match("start them where it exists")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_process_pool_worker_reports_the_missing_device_with_its_own_pid():
    with fork_pool() as pool, pytest.raises(InvalidInputError) as caught:
        clever_scores(Linear(*linear()), inputs(), executor=pool, device="cuda:0", **SCORE_SETTINGS)
    assert caught.match(r"^input \d: device 'cuda:0' is not available in the worker \(pid \d+ on ")
    assert f"(pid {os.getpid()} " not in str(caught.value)  # a worker said it, not the caller


def test_a_device_name_torch_does_not_know_is_refused_by_the_caller():
    executor = Recording()
    with pytest.raises(InvalidInputError, match="unknown device 'gpu7'"):
        clever_scores(Linear(*linear()), inputs(), executor=executor, device="gpu7", **SCORE_SETTINGS)
    assert executor.submitted == 0
    executor.shutdown()


# -- warnings and misuse --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fork process pool", "thread pool"])
def test_a_worker_warning_reaches_the_caller_once_per_call(kind):
    executor = fork_pool() if kind == "fork process pool" else ThreadPoolExecutor(2)
    with executor, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            clever_scores(ProbabilityLinear(*linear()), inputs(), executor=executor, **SCORE_SETTINGS)
    found = [w for w in caught if "look like probabilities" in str(w.message)]
    assert len(found) == 2, [str(w.message)[:60] for w in caught]  # once per call, for N inputs each
    assert all(w.category is CleverWarning and w.filename == __file__ for w in found)


def test_the_warning_capture_of_a_thread_pool_leaves_the_filters_as_they_were():
    before = list(warnings.filters)
    with ThreadPoolExecutor(3) as executor:
        with pytest.warns(CleverWarning, match="look like probabilities"):
            clever_scores(ProbabilityLinear(*linear()), inputs(), executor=executor, **SCORE_SETTINGS)
    assert warnings.filters == before


def test_the_executor_class_instead_of_an_instance_is_refused():
    with pytest.raises(InvalidInputError, match=r"the class ProcessPoolExecutor: pass ProcessPoolExecutor\(\.\.\.\)"):
        clever_scores(Linear(*linear()), inputs(), executor=ProcessPoolExecutor, **SCORE_SETTINGS)


def test_a_shut_down_executor_is_refused():
    executor = ThreadPoolExecutor(2)
    executor.shutdown()
    with pytest.raises(InvalidInputError, match=r"ThreadPoolExecutor \(2 workers\) is shut down"):
        clever_scores(Linear(*linear()), inputs(), executor=executor, **SCORE_SETTINGS)

    class Closed(Executor):  # an executor of another kind says so only when submitting
        def submit(self, fn, /, *args, **kwargs) -> Future:
            raise RuntimeError("cannot schedule new futures after shutdown")

    with pytest.raises(InvalidInputError, match="executor Closed is shut down"):
        clever_scores(Linear(*linear()), inputs(), executor=Closed(), **SCORE_SETTINGS)


# -- signals: cleanup, and no worker outlives the caller ------------------------------------

SLOW_RUN = """
    import multiprocessing, signal, sys, torch
    from concurrent.futures import ProcessPoolExecutor
    from pytest_clever import clever_scores
    from tests.engine.executor_models import SleepyLinear, linear

    # Python leaves SIGINT ignored when its parent did (a job started in the background with nohup or `&`):
    # this run must see Ctrl-C as a terminal would deliver it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    model = SleepyLinear(*linear(), seconds=0.2, always=True, log=sys.argv[1])
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    clever_scores(model, torch.randn(6, 6), radius=1.0, n_batches=20, batch_size=32, seed=7, executor=pool)
    print("FINISHED", flush=True)
"""


@pytest.mark.slow  # real signals sent to a subprocess running a real process pool
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_to_the_caller_removes_the_model_file_and_ends_its_workers(tmp_path, sig):
    log = tmp_path / "workers"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SLOW_RUN))
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    process = subprocess.Popen(
        [sys.executable, str(script), str(log)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while not (log.exists() and len(log.read_text().split()) == 2):  # both workers are scoring
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()[0]
        time.sleep(0.1)
    assert list((tmp_path / "tmp").glob("pytest-clever-model-*.pt"))  # the model file is there while it runs
    process.send_signal(sig)
    out = process.communicate(timeout=30)[0].decode()
    assert b"FINISHED" not in out.encode() and process.returncode != 0, out
    workers = [int(pid) for pid in log.read_text().split()]
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)], "workers outlived their caller"
    left = list((tmp_path / "tmp").glob("pytest-clever-model-*.pt"))
    if sig == signal.SIGKILL:  # nothing runs in a killed process: only its workers can act
        return
    assert left == [], out
    if sig == signal.SIGTERM:
        assert process.returncode == -signal.SIGTERM  # the signal still ends the process as it would have
