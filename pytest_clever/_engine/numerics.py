"""Exact float32 numerics while scoring: reduced-precision float32 math off for the call, restored afterwards.

On Ampere and newer GPUs PyTorch runs float32 convolutions in TF32 by default
(``torch.backends.cudnn.conv.fp32_precision == "tf32"``), matmuls too when the
user asks for it, and oneDNN on CPU can be told to use bf16 or TF32 for
float32: ~10 bits of mantissa or fewer, which moves scores by far more than
rounding and would make them depend on a global flag that any other test may
flip. Scoring therefore sets every float32 precision it knows to IEEE and
restores the caller's settings on exit, so a seed reproduces the same score
whatever the session set. Autocast and channels_last are never applied either.

Only the ``fp32_precision`` settings are touched: PyTorch refuses to mix them
with the legacy ``allow_tf32`` flags.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch

#: Backends whose float32 math can be reduced, as paths under ``torch.backends``.
_PRECISION_SETTINGS = ("cuda.matmul", "cudnn.conv", "cudnn.rnn", "mkldnn.matmul", "mkldnn.conv", "mkldnn.rnn")


def _backend(path: str) -> Any:
    node: Any = torch.backends
    for part in path.split("."):
        node = getattr(node, part, None)
    return node


#: Scoring calls in flight in this process (threads of an executor worker score concurrently):
#: the first one in sets the global flags, the last one out restores them. Nested or
#: interleaved save/restore pairs would otherwise leave a mix of settings behind (e.g.
#: cuDNN conv and RNN precisions differing, which PyTorch then refuses to read).
_lock = threading.Lock()
_depth = 0
_restore: contextlib.ExitStack | None = None


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """IEEE float32 and deterministic cuDNN inside the block; the caller's settings restored on exit.

    cuDNN picks convolution algorithms by benchmarking and some of its backward
    kernels accumulate with atomics, so without ``deterministic`` the same seed
    could give scores that differ in their last digits on a GPU. Re-entrant and
    thread-safe: concurrent blocks share one save and one restore.
    """
    global _depth, _restore
    with _lock:
        if _depth == 0:
            stack = contextlib.ExitStack()
            stack.enter_context(_deterministic_cudnn())
            stack.enter_context(_ieee_float32())
            _restore = stack
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore is not None:
                stack, _restore = _restore, None
                stack.close()


@contextlib.contextmanager
def _deterministic_cudnn() -> Iterator[None]:
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


@contextlib.contextmanager
def _ieee_float32() -> Iterator[None]:
    # A backend this build lacks (e.g. a oneDNN path) has no setting to change.
    backends = [b for b in map(_backend, _PRECISION_SETTINGS) if hasattr(b, "fp32_precision")]
    saved: list[tuple[Any, str]] = [(b, b.fp32_precision) for b in backends]
    try:
        for backend in backends:
            backend.fp32_precision = "ieee"
        yield
    finally:
        for backend, value in saved:
            backend.fp32_precision = value


def float32_settings() -> dict[str, str]:
    """The float32 precision of each backend now ("ieee", "tf32", "bf16", "none" = inherited)."""
    return {path: str(getattr(_backend(path), "fp32_precision", "")) for path in _PRECISION_SETTINGS}


__all__ = ["exact_float32", "float32_settings"]
