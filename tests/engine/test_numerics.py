"""Scoring runs in IEEE float32 whatever the session set (no TF32/bf16), and hands the settings back."""

import pytest
import torch
from torch import nn

from pytest_clever import clever_score
from pytest_clever._engine.numerics import float32_settings


class Spy(nn.Module):
    """Records the float32 settings in force while the model runs."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.seen = nn.Linear(4, 3), []

    def forward(self, x):
        self.seen.append(float32_settings())
        return self.linear(x.flatten(1))


def score(model: nn.Module) -> None:
    clever_score(model, torch.rand(1, 2, 2), radius=1.0, n_batches=10, batch_size=2, seed=0)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_float32_is_off_while_scoring_and_restored(precision):
    backend = torch.backends.mkldnn.matmul if precision == "bf16" else torch.backends.cuda.matmul
    saved = backend.fp32_precision
    backend.fp32_precision = precision
    try:
        before = float32_settings()
        model = Spy()
        score(model)
        assert model.seen and all(set(seen.values()) == {"ieee"} for seen in model.seen)
        assert float32_settings() == before
    finally:
        backend.fp32_precision = saved


@pytest.mark.parametrize("flags", [(True, True), (False, True), (True, False)])
def test_legacy_tf32_flags_are_restored(flags):
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32, cudnn.allow_tf32 = flags
    try:
        model = Spy()
        score(model)
        assert all(seen["cuda.matmul"] in ("ieee", "") for seen in model.seen)
        assert (matmul.allow_tf32, cudnn.allow_tf32) == flags
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


@pytest.mark.parametrize("flags", [(False, True), (True, False)])
def test_cudnn_is_deterministic_while_scoring_and_restored(flags):
    """cuDNN's benchmarked, atomics-based kernels would make the same seed give other scores on a GPU."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = flags
    seen = []

    class Watch(nn.Module):
        def forward(self, x):
            seen.append((cudnn.deterministic, cudnn.benchmark))
            return torch.stack([x.flatten(1).sum(1), -x.flatten(1).sum(1)], 1)

    try:
        score(Watch())
        assert seen and set(seen) == {(True, False)}
        assert (cudnn.deterministic, cudnn.benchmark) == flags
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def test_concurrent_scoring_threads_restore_the_settings_once():
    """Interleaved save/restore pairs of threads must not leave cuDNN conv and RNN precisions differing."""
    import threading

    from pytest_clever._engine.numerics import exact_float32

    before, cudnn_before = float32_settings(), (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    entered, release = threading.Barrier(3), threading.Event()

    def score_in_thread():
        with exact_float32():
            entered.wait()
            release.wait()

    threads = [threading.Thread(target=score_in_thread) for _ in range(2)]
    for t in threads:
        t.start()
    entered.wait()
    assert set(float32_settings().values()) <= {"ieee", ""} and torch.backends.cudnn.deterministic
    release.set()
    for t in threads:
        t.join()
    assert float32_settings() == before
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == cudnn_before
