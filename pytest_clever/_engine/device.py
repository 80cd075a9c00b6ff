"""Where a scoring call computes, and in which dtype: checked before anything moves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pytest_clever._engine.model_state import check_model_tensors, model_device_and_dtype
from pytest_clever.errors import InvalidInputError

#: Dtypes second order refuses: the Hessian solver has no half-precision kernels.
HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_device(device: torch.device) -> None:
    """Reject a device that holds no data (``meta``) or that this torch cannot use, before anything moves."""
    if device.type == "meta":
        raise InvalidInputError(
            "device='meta' holds no data, so nothing can be computed there (and moving the model "
            "there would drop its weights): pass device='cpu', a GPU, or None for the model's device"
        )
    if device.type == "cpu":
        return
    try:
        torch.empty(1, device=device)
    except Exception as exc:  # noqa: BLE001 - AssertionError ("not compiled with CUDA"), RuntimeError, ...
        cuda = torch.cuda.is_available()
        raise InvalidInputError(
            f"device {str(device)!r} is not available in this torch ({type(exc).__name__}: {exc}; "
            f"torch.cuda.is_available() is {cuda}, {torch.cuda.device_count()} CUDA device(s)): "
            "pass device='cpu', or None for the model's device"
        ) from None


def resolve_device(model: Callable, x: torch.Tensor, device: Any) -> tuple[torch.device, torch.dtype]:
    """The device to compute on (``device``, else the model's, else the input's) and the model's dtype."""
    check_model_tensors(model)
    model_device, model_dtype = model_device_and_dtype(model)
    if device is not None:
        try:
            target = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise InvalidInputError(f"unknown device {device!r}") from exc
    else:
        target = model_device or x.device
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


__all__ = ["HALF_DTYPES", "check_device", "check_dtype", "resolve_device"]
