"""Borrow the user's model for a computation and hand it back exactly as it was.

Inside :func:`borrowed_model` the model is in eval mode (so samples in a
batch do not interact through BatchNorm statistics or dropout), its
parameters do not require grad (we only differentiate with respect to the
input, which also saves the weight-gradient work), it sits on the requested
device, and autograd is enabled even if the caller is under ``torch.no_grad()``
or ``torch.inference_mode()``. On exit the train flags, ``requires_grad``
flags, ``.grad`` fields and device are restored.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator

import torch
from torch import nn

from .errors import CleverWarning


# Layers whose output depends on the train flag (and would couple the samples of a batch).
_MODE_DEPENDENT = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)


def _first_tensor(module: nn.Module) -> torch.Tensor | None:
    for tensor in module.parameters():
        return tensor
    for tensor in module.buffers():
        return tensor
    return None


def model_device_and_dtype(model: Callable) -> tuple[torch.device | None, torch.dtype | None]:
    """Device and floating dtype of the model's first parameter or buffer, if it has any."""
    if not isinstance(model, nn.Module):
        return None, None
    device, dtype = None, None
    for tensor in [*model.parameters(), *model.buffers()]:
        device = device or tensor.device
        if dtype is None and tensor.is_floating_point():
            dtype = tensor.dtype
    return device, dtype


@contextlib.contextmanager
def borrowed_model(model: Callable, device: torch.device | None = None) -> Iterator[Callable]:
    """Yield ``model`` prepared for input-gradient computations; restore it afterwards."""
    if not isinstance(model, nn.Module):
        with torch.inference_mode(False), torch.enable_grad():
            yield model
        return

    modules = list(model.modules())
    train_flags = [m.training for m in modules]
    params = list(model.parameters())
    requires_grad = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    # A forward pass that writes to buffers (counters, running statistics kept by hand)
    # would change the user's model and couple the samples: keep copies to restore and compare.
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    first = _first_tensor(model)
    original_device = first.device if first is not None else None
    moved = device is not None and original_device is not None and original_device != device

    mode_dependent = [type(m).__name__ for m in modules if m.training and isinstance(m, _MODE_DEPENDENT)]
    if mode_dependent:
        warnings.warn(
            f"the model was in training mode with {', '.join(sorted(set(mode_dependent)))} layers; "
            "pytest-clever scores it in eval mode (running statistics, no dropout) and restores "
            "the mode afterwards. Call model.eval() before scoring to silence this",
            CleverWarning,
            stacklevel=4,
        )
    try:
        if moved:
            model.to(device)
        model.eval()
        for p in params:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            yield model
    finally:
        mutated = _restore_buffers(buffers)
        if moved:
            model.to(original_device)
        for m, flag in zip(modules, train_flags):
            m.training = flag
        for p, flag, grad in zip(params, requires_grad, grads):
            p.requires_grad_(flag)
            p.grad = grad
    if mutated:
        warnings.warn(
            f"the model's forward pass changed {mutated} buffer(s) while it was scored in eval mode; "
            "pytest-clever restored them, but scores of a model whose output depends on hidden "
            "state are not reproducible. Make forward() free of side effects in eval mode",
            CleverWarning,
            stacklevel=4,
        )


def _restore_buffers(buffers: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """Put back every buffer that changed; return how many had."""
    changed = 0
    with torch.no_grad():
        for buffer, saved in buffers:
            if buffer.shape != saved.shape or not torch.equal(buffer, saved.to(buffer.device)):
                changed += 1
                if buffer.shape == saved.shape:
                    buffer.copy_(saved)
    return changed
