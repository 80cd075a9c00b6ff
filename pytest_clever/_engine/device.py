"""Where a scoring call computes, and in which dtype: checked before anything moves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pytest_clever._engine.model_state import check_model_tensors, model_device_and_dtype
from pytest_clever.errors import InvalidInputError

#: Dtypes second order refuses: the Hessian solver has no half-precision kernels.
HALF_DTYPES = (torch.float16, torch.bfloat16)
#: Where :func:`check_device` checks by default: the calling process.
HERE = "in this torch"


def check_device_name(device: Any) -> torch.device:
    """``device`` as a ``torch.device``: a name torch knows (its syntax only, not whether it is here)."""
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"unknown device {device!r}") from exc
    if target.type == "meta":
        raise InvalidInputError(
            "device='meta' holds no data, so nothing can be computed there (and moving the model "
            "there would drop its weights): pass device='cpu', a GPU, or None for the model's device"
        )
    return target


def check_device(device: torch.device, where: str = HERE) -> None:
    """Reject a device that holds no data (``meta``) or that this torch cannot use, before anything moves.

    ``where`` names the process in the message: an executor's worker checks
    the device it scores on, the caller only its name (:func:`resolve_device`).
    """
    check_device_name(device)
    if device.type == "cpu":
        return
    try:
        torch.empty(1, device=device)
    except Exception as exc:  # noqa: BLE001 - AssertionError ("not compiled with CUDA"), RuntimeError, ...
        cuda = torch.cuda.is_available()
        fix = (
            "pass device='cpu', or None for the model's device"
            if where == HERE
            else "the executor's workers score on this device, so start them where it exists "
            "(docs/cluster.md), or pass device='cpu'"
        )
        raise InvalidInputError(
            f"device {str(device)!r} is not available {where} ({type(exc).__name__}: {exc}; "
            f"torch.cuda.is_available() is {cuda}, {torch.cuda.device_count()} CUDA device(s)): {fix}"
        ) from None


def resolve_device(
    model: Callable, x: torch.Tensor, device: Any, *, here: bool = True
) -> tuple[torch.device, torch.dtype]:
    """The device to compute on (``device``, else the model's, else the input's) and the model's dtype.

    With ``here`` the device must be usable in this process. Without it (an
    executor: the workers compute, and a CPU-only caller may drive GPU
    workers) only its name is checked; each worker checks it where it scores.
    """
    check_model_tensors(model)
    model_device, model_dtype = model_device_and_dtype(model)
    target = check_device_name(device if device is not None else model_device or x.device)
    if here:
        check_device(target)
    return target, model_dtype or x.dtype


def check_dtype(order: int, dtype: torch.dtype) -> None:
    """Second order needs float32 or float64: half-precision rounding swamps the curvature."""
    if order == 2 and dtype in HALF_DTYPES:
        raise InvalidInputError(
            f"order=2 needs a float32 or float64 model, got {dtype}: the Hessian solver has no half-precision "
            "kernels and half-precision rounding swamps the curvature; score a float32 copy, e.g. "
            "clever_score(copy.deepcopy(model).float(), x.float(), order=2, ...)"
        )


__all__ = ["HALF_DTYPES", "check_device", "check_device_name", "check_dtype", "resolve_device"]
