"""Margin gradients at a chunk of sampled points, for all targets at once (first order's per-chunk derivative).

For a chunk of sampled points the model runs one forward pass; the gradient
of each margin ``g_j = f_c - f_j`` is one vector-Jacobian product of the
logits with ``e_c - e_j`` (the rows of the logits' Jacobian combined), so
every target shares the same samples. Because the samples of a chunk do not
interact (the model is in eval mode), the gradient of the margin summed over
the chunk is the per-sample gradient. Measured on CPU, a loop of backward
passes over a retained graph beats ``is_grads_batched`` (vmap) and
``torch.func.jacrev`` for small convolutional nets; see benchmarks/.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

Model = Callable[[torch.Tensor], torch.Tensor]


def margin_gradients(
    model: Model, points: torch.Tensor, predicted: int, targets: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at ``points`` and the gradient of every margin ``f_c - f_j``, j in ``targets``.

    Returns ``(logits, grads)`` with ``logits`` of shape ``(n, K)`` (detached)
    and ``grads`` of shape ``(n, len(targets), *points.shape[1:])``.
    """
    points = points.detach().requires_grad_(True)
    logits = model(points)
    if not logits.requires_grad:
        # The graph is cut between input and output (numpy, .detach(), no_grad inside
        # the model): the gradient autograd can see is zero; the masking check reports it.
        zeros = points.detach().new_zeros((points.shape[0], len(targets), *points.shape[1:]))
        return logits.detach(), zeros
    grads = []
    last = len(targets) - 1
    for i, j in enumerate(targets):
        margin = (logits[:, predicted] - logits[:, j]).sum()
        (g,) = torch.autograd.grad(margin, points, retain_graph=i < last, allow_unused=True)
        grads.append(torch.zeros_like(points) if g is None else g)
    return logits.detach(), torch.stack(grads, dim=1)


def input_reaches_output(model: Model, x0: torch.Tensor) -> bool:
    """Whether autograd connects the model's output at ``x0`` to its input at all.

    False when the forward pass leaves autograd's graph (a transform computed
    in numpy or PIL, ``.detach()``, ``.item()``, ``torch.no_grad()`` inside
    ``forward``): gradients are then zero because autograd cannot see them,
    not because the model is flat.
    """
    point = x0.detach().unsqueeze(0).requires_grad_(True)
    out = model(point)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return False
    (grad,) = torch.autograd.grad(out.sum(), point, allow_unused=True)
    return grad is not None


__all__ = ["input_reaches_output", "margin_gradients"]
