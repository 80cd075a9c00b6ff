"""clever_scores(..., executor=...): same results as serial, one model ship per worker, clear errors."""

from __future__ import annotations

import functools
import multiprocessing
import threading
from collections import Counter
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import torch

from pytest_clever import clever_scores
from pytest_clever.errors import CleverWarning, ExecutorError, InvalidInputError, MisclassifiedInputError, ModelError

from ..helpers import Linear
from .executor_models import (
    POISON,
    CountingLinear,
    DropoutLinear,
    ExitingLinear,
    FailingLinear,
    UnloadableLinear,
    call_model,
    linear,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Every call here, serial or through an executor, scores with these: the results must be the same bits.
SCORE_SETTINGS = dict(radius=1.0, n_batches=20, batch_size=32, seed=7)
N = 6


def inputs(n: int = N, poison: int | None = None) -> torch.Tensor:
    xs = torch.randn(n, 6, generator=torch.Generator().manual_seed(1))
    if poison is not None:
        xs[poison, 0] = POISON
    return xs


def same_results(a, b) -> None:
    """Bit-identical results (every field but the wall-clock time)."""
    assert len(a.results) == len(b.results)
    for ra, rb in zip(a.results, b.results, strict=True):
        da, db = ra.to_dict(), rb.to_dict()
        da.pop("elapsed"), db.pop("elapsed")
        assert da == db
    assert a.seed == b.seed


def loads_per_process(log) -> Counter:
    return Counter(log.read_text().split()) if log.exists() else Counter()


@pytest.fixture(scope="module")
def pool():
    # fork: workers start in milliseconds and see the test modules already imported.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as executor:
        yield executor


class Recording(Executor):
    """A thread pool that counts submissions, and can lose chosen submissions as if their worker died."""

    def __init__(self, lose: set[int] = frozenset()) -> None:
        self.inner = ThreadPoolExecutor(2)
        self.lose = set(lose)
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs) -> Future:
        n, self.submitted = self.submitted, self.submitted + 1
        if n in self.lose or "all" in self.lose:
            future: Future = Future()
            future.set_exception(BrokenExecutor("worker lost (injected)"))
            return future
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, **kw) -> None:
        self.inner.shutdown(wait)


# -- same results, one ship per worker -----------------------------------------------------


def test_process_pool_matches_serial_bit_for_bit_and_ships_the_model_once_per_worker(pool, tmp_path):
    log = tmp_path / "loads"
    model = CountingLinear(*linear(), log=str(log))
    serial = clever_scores(model, inputs(), **SCORE_SETTINGS)
    log.unlink(missing_ok=True)
    parallel = clever_scores(model, inputs(), executor=pool, **SCORE_SETTINGS)
    same_results(serial, parallel)
    loads = loads_per_process(log)
    assert 1 <= len(loads) <= 2 and set(loads.values()) == {1}, loads  # once per worker, not per input
    assert str(multiprocessing.current_process().pid) not in loads  # the caller did not unpickle it


def test_workers_score_in_eval_mode_and_the_model_comes_back_in_train_mode(pool):
    model = DropoutLinear(*linear())
    model.train()
    with pytest.warns(CleverWarning, match="training mode"):
        serial = clever_scores(model, inputs(), **SCORE_SETTINGS)
    with pytest.warns(CleverWarning, match="training mode"):
        parallel = clever_scores(model, inputs(), executor=pool, **SCORE_SETTINGS)
    same_results(serial, parallel)  # dropout active in a worker would change every score
    assert model.training and model.drop.training
    assert all(p.requires_grad for p in model.parameters())


def test_thread_pool_matches_serial():
    model = Linear(*linear(3))
    with ThreadPoolExecutor(2) as executor:
        parallel = clever_scores(model, inputs(), executor=executor, **SCORE_SETTINGS)
    same_results(clever_scores(model, inputs(), **SCORE_SETTINGS), parallel)


def test_confidence_and_progress_reach_the_executor_path():
    # Both must reach the workers: without them every interval would be at the default confidence, silently.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))  # real intervals
    settings = dict(SCORE_SETTINGS, radius=2.0, confidence=0.5)
    events = []
    with ThreadPoolExecutor(2) as executor:
        parallel = clever_scores(model, inputs(), executor=executor, progress=events.append, **settings)
    serial = clever_scores(model, inputs(), **settings)
    same_results(serial, parallel)
    assert [r.confidence for r in parallel.results] == [0.5] * N
    assert [r.interval for r in parallel.results] == [r.interval for r in serial.results]
    assert (
        parallel.results[0].interval
        != clever_scores(model, inputs()[:1], **dict(settings, confidence=0.99)).results[0].interval
    )
    assert [e.stage for e in events] == ["start"] + ["scored"] * N + ["done"]
    assert [e.inputs_done for e in events if e.stage == "scored"] == list(range(1, N + 1))
    assert events[-1].inputs_done == N and events[1].first_input_s is not None


def test_workers_are_slow_for_malloc_only_with_a_trim_and_no_mmap_threshold():
    from pytest_clever._engine.executor import slow_malloc_workers

    envs = {"w1": ("65536", None), "w2": ("65536", "33554432"), "w3": (None, None), "w0": ("1", None)}
    assert slow_malloc_workers(envs) == ["w0", "w1"]


@pytest.mark.parametrize(
    "x",
    [
        torch.randn(3, 4),
        torch.randn(4, 3).t(),
        torch.randn(5).bfloat16(),
        torch.tensor(2.5),
        torch.randn(1, 8, 8).double(),
        torch.empty(0, 3),
        torch.randn(3, dtype=torch.complex64).conj(),
    ],
    ids=["float32", "transposed", "bfloat16", "0-d", "float64", "empty", "conjugate view"],
)
def test_inputs_travel_as_raw_bytes_that_give_back_the_same_tensor(x):
    import pickle

    from pytest_clever._engine.executor_worker import RawInput as _RawInput

    back = pickle.loads(pickle.dumps(_RawInput.of(x))).tensor()
    assert back.dtype == x.dtype and back.shape == x.shape and torch.equal(back, x)


def test_a_worker_prepares_the_modules_inside_a_wrapped_model_for_good():
    """Threads of one worker share the loaded model: a partial over a train-mode module must come out of
    the worker's cache already in eval mode, so no thread's restore can switch another's module back."""
    from pytest_clever._engine.executor import serialise_model
    from pytest_clever._engine.executor_worker import cached_model as _cached_model

    model = DropoutLinear(*linear())
    model.train()
    data = serialise_model(functools.partial(call_model, model))
    loaded = _cached_model("test-wrapped-" + str(id(data)), None, data, torch.device("cpu"))
    inner = loaded.args[0]
    assert inner is not model and not inner.training and not inner.drop.training
    assert not any(p.requires_grad for p in inner.parameters())
    assert model.training  # the caller's model is untouched


# -- errors --------------------------------------------------------------------------------


def test_an_error_in_a_worker_names_the_input(pool):
    xs = inputs(poison=4)
    with pytest.raises(ModelError, match=r"^input 4: the model raised RuntimeError .*: boom in forward"):
        clever_scores(FailingLinear(*linear()), xs, executor=pool, **SCORE_SETTINGS)


def test_a_failure_outside_the_engine_is_a_clever_error_naming_the_input(pool):
    with pytest.raises(ExecutorError, match=r"^input \d: scoring failed in a worker: RuntimeError: not loadable here"):
        clever_scores(UnloadableLinear(*linear()), inputs(), executor=pool, **SCORE_SETTINGS)


def test_a_clever_error_in_a_worker_keeps_its_type_and_names_the_input(pool):
    model = Linear(*linear())
    labels = [int(model(x[None]).argmax()) for x in inputs()]
    labels[2] = (labels[2] + 1) % 4
    with pytest.raises(MisclassifiedInputError, match=r"^input 2: "):
        clever_scores(model, inputs(), labels, executor=pool, **SCORE_SETTINGS)


def _local_class_model():
    class Local(torch.nn.Module):
        def forward(self, x):
            return x[:, :4]

    return Local()


@pytest.mark.parametrize(
    "model",
    [lambda x: x[:, :4] * torch.ones(4), _local_class_model()],
    ids=["lambda", "local class"],
)
def test_an_unpicklable_model_is_refused_before_any_task_is_submitted(model):
    executor = Recording()
    with pytest.raises(ExecutorError, match="module level.*functools.partial.*torch.jit"):
        clever_scores(model, inputs(), executor=executor, **SCORE_SETTINGS)
    assert executor.submitted == 0
    executor.shutdown()


# -- no silent loss --------------------------------------------------------------------------


def test_a_lost_task_is_retried_once_with_the_same_result():
    model = Linear(*linear())
    executor = Recording(lose={1, 4})
    events = []
    parallel = clever_scores(model, inputs(), executor=executor, progress=events.append, **SCORE_SETTINGS)
    executor.shutdown()
    assert executor.submitted == N + 2
    same_results(clever_scores(model, inputs(), **SCORE_SETTINGS), parallel)
    # Each input counts once, its retry included.
    assert [e.inputs_done for e in events if e.stage == "scored"] == list(range(1, N + 1))


def test_an_error_while_waiting_cancels_the_tasks_not_yet_started():
    class Keeping(Recording):
        """One worker; every task after the first waits for ``release``, so the interrupt finds them pending."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = ThreadPoolExecutor(1)
            self.futures: list[Future] = []
            self.release = threading.Event()

        def submit(self, fn, /, *args, **kwargs) -> Future:
            if self.submitted > 0:
                fn = functools.partial(self._after_release, fn)
            future = super().submit(fn, *args, **kwargs)
            self.futures.append(future)
            return future

        def _after_release(self, fn, *args, **kwargs):
            self.release.wait(timeout=60)
            return fn(*args, **kwargs)

    def sink(event):
        if event.stage == "scored":
            raise KeyboardInterrupt  # e.g. Ctrl-C, or a progress callable that fails

    executor = Keeping()
    try:
        with pytest.raises(KeyboardInterrupt):
            clever_scores(Linear(*linear()), inputs(), executor=executor, progress=sink, **SCORE_SETTINGS)
    finally:
        executor.release.set()
    executor.shutdown()
    assert sum(f.cancelled() for f in executor.futures) >= N - 2  # one scored, at most one more running


def test_a_task_cancelled_by_the_cluster_is_retried():
    class Cancelling(Recording):
        def submit(self, fn, /, *args, **kwargs) -> Future:
            n = self.submitted
            future = super().submit(fn, *args, **kwargs)
            if n == 0:
                future = Future()
                future.cancel()
                future.set_running_or_notify_cancel()  # what an executor does with a cancelled task
            return future

    model = Linear(*linear())
    executor = Cancelling()
    parallel = clever_scores(model, inputs(), executor=executor, **SCORE_SETTINGS)
    executor.shutdown()
    assert executor.submitted == N + 1
    same_results(clever_scores(model, inputs(), **SCORE_SETTINGS), parallel)


def test_something_else_than_an_executor_is_refused():
    with pytest.raises(InvalidInputError, match="concurrent.futures.Executor, got str"):
        clever_scores(Linear(*linear()), inputs(), executor="dask://localhost:8786", **SCORE_SETTINGS)


def test_a_task_lost_twice_is_reported_by_input_index():
    executor = Recording(lose={"all"})
    with pytest.raises(ExecutorError, match=r"^input\(s\) 0, 1, 2, 3, 4, 5: the worker scoring them was lost"):
        clever_scores(Linear(*linear()), inputs(), executor=executor, **SCORE_SETTINGS)
    executor.shutdown()


def test_a_worker_killed_in_a_process_pool_is_reported_not_dropped():
    model = ExitingLinear(*linear())
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as executor:
        with pytest.raises(ExecutorError, match=r"^input\(s\) [0-9, ]*\b3\b.*was lost"):
            clever_scores(model, inputs(poison=3), executor=executor, **SCORE_SETTINGS)


# -- dask ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(torch.set_num_threads, 1)
        yield client


@pytest.mark.slow  # a real dask LocalCluster of 2 worker processes: CI runs it
def test_dask_local_cluster_matches_serial_and_ships_the_model_once_per_worker(dask_client, tmp_path):
    log = tmp_path / "loads"
    model = CountingLinear(*linear(), log=str(log))
    serial = clever_scores(model, inputs(), **SCORE_SETTINGS)
    log.unlink(missing_ok=True)
    # The fixture's workers have dask's default malloc setting: said once per client (docs/cluster.md).
    with pytest.warns(CleverWarning, match=r"2 dask worker\(s\) run with MALLOC_TRIM_THRESHOLD_.*docs/cluster.md"):
        parallel = clever_scores(model, inputs(), executor=dask_client.get_executor(), **SCORE_SETTINGS)
    same_results(serial, parallel)
    loads = loads_per_process(log)
    assert 1 <= len(loads) <= 2 and set(loads.values()) == {1}, loads


@pytest.mark.slow  # a real dask LocalCluster of 2 worker processes: CI runs it
def test_dask_reschedules_the_input_of_a_killed_worker(dask_client, tmp_path):
    model = ExitingLinear(*linear(), once=str(tmp_path / "died"))
    serial = clever_scores(Linear(*linear()), inputs(poison=2), **SCORE_SETTINGS)
    parallel = clever_scores(model, inputs(poison=2), executor=dask_client.get_executor(), **SCORE_SETTINGS)
    assert (tmp_path / "died").exists()  # a worker did die on input 2
    same_results(serial, parallel)


# -- ray -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_executor():
    """The adapter of docs/cluster.md on a local Ray instance of 2 CPUs."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'pytest-clever[ray]'; docs/cluster.md)")

    class RayExecutor(Executor):  # the adapter of docs/cluster.md
        def submit(self, fn, /, *args, **kwargs):
            return ray.remote(fn).remote(*args, **kwargs).future()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield RayExecutor()
    finally:
        ray.shutdown()


@pytest.mark.slow  # a real local Ray instance with worker processes: CI runs it
def test_ray_through_the_documented_adapter(ray_executor):
    model = Linear(*linear())
    same_results(
        clever_scores(model, inputs(), **SCORE_SETTINGS),
        clever_scores(model, inputs(), executor=ray_executor, **SCORE_SETTINGS),
    )


@pytest.mark.slow  # a real local Ray instance with worker processes: CI runs it
def test_ray_reports_an_input_whose_worker_always_dies(ray_executor):
    # Ray retries the task on new workers by itself, then raises WorkerCrashedError; after one
    # more round the input is reported, never dropped.
    with pytest.raises(ExecutorError, match=r"^input\(s\) 3: the worker scoring them was lost"):
        clever_scores(ExitingLinear(*linear()), inputs(poison=3), executor=ray_executor, **SCORE_SETTINGS)
