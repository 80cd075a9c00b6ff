"""``torch_compile=True``: the sampled first-order passes through ``torch.compile(model)``.

Measured on CPU (``benchmarks/bench_cpu_floor.py``): half the time of eager on the trained 3x32x32
ResNet, slower on the tiny digits CNN, and gradient norms within 1e-6 (relative) of eager; channels-last
memory format gained less and oneDNN is already on. Compiling costs seconds to tens of seconds at
the first chunk and once more at the first chunk of another size (torch then compiles for dynamic
sizes); dynamo caches by the model's code and guards, so later inputs and calls of the same model
in the process reuse it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from pytest_clever.errors import InvalidInputError

#: How far compiled gradient norms (hence scores) may be from eager's, relative (measured: 1e-6).
COMPILED_TOLERANCE = 1e-5


def compile_model(model: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(model)``: nothing is compiled until the first call."""
    return torch.compile(model)


@contextlib.contextmanager
def compiled_passes() -> Iterator[None]:
    """Where compiled passes run: one forward pass is followed by one backward pass per target with
    ``retain_graph=True``, which compiled backward functions with donated buffers refuse."""
    from torch._functorch import config

    with config.patch(donated_buffer=False):
        yield


def compile_failed(exc: Exception) -> InvalidInputError:
    """The error for a model that runs eagerly but not compiled."""
    return InvalidInputError(
        f"torch_compile=True: torch.compile could not run this model ({type(exc).__name__}: "
        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no message'}); the model itself runs "
        "without it: score with torch_compile=False"
    )


def run_compiled(compiled: Callable[..., Any], eager: Callable[..., Any], *args: Any) -> Any:
    """``compiled(*args)`` under :func:`compiled_passes`; when it fails but ``eager(*args)`` works, a clear
    :class:`InvalidInputError` naming torch.compile (a failing model fails eagerly too, with its own error)."""
    try:
        with compiled_passes():
            return compiled(*args)
    except Exception as exc:
        eager(*args)  # raises the model's own error if the model is at fault
        raise compile_failed(exc) from exc


__all__ = ["COMPILED_TOLERANCE", "compile_failed", "compile_model", "compiled_passes", "run_compiled"]
