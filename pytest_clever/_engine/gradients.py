"""Margin gradients at a chunk of sampled points, for all targets at once (first order's per-chunk derivative).

For a chunk of sampled points the model runs one forward pass; the gradient
of each margin ``g_j = f_c - f_j`` is one vector-Jacobian product of the
logits with ``e_c - e_j`` (the rows of the logits' Jacobian combined), so
every target shares the same samples. Because the samples of a chunk do not
interact (the model is in eval mode), the gradient of the margin summed over
the chunk is the per-sample gradient.

First order only needs each gradient's norm: :func:`margin_gradient_norms`
reduces each gradient as soon as it exists, so memory does not grow with the
number of targets. It takes the targets one backward pass at a time (a loop
over a retained graph) or ``block`` at a time through one batched
vector-Jacobian product (``is_grads_batched=True``, vmap over the backward
pass); :func:`targets_per_pass` is the measured rule choosing between them
(measured in benchmarks/bench_many_classes.py). Both give the same
bits on CPU (checked in tests/engine/test_gradients.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


#: On CPU, batched products pay off only for many targets of a small input, where each backward
#: pass is dominated by per-call overhead; on larger inputs, or with fewer targets, the loop is
#: as fast or faster (measured in benchmarks/bench_many_classes.py, chunks sized by memory).
CPU_BATCHED_FROM = 500
#: ... and at most this many input elements (3x32x32).
CPU_BATCHED_MAX_ELEMENTS = 3 * 32 * 32
#: Targets per batched product on CPU: 8 and 32 tie; 8 keeps four times larger chunks in the same memory.
CPU_TARGET_BLOCK = 8


def targets_per_pass(n_targets: int, x0: torch.Tensor) -> int:
    """How many margin gradients one backward pass computes for inputs like ``x0``: 1 (the loop) or a block.

    On accelerators the loop (``bench_many_classes.py --device cuda`` reports
    both paths): a batched pass needs ``block`` times the memory, so the
    memory-sized chunk shrinks by as much.
    """
    small = x0.numel() <= CPU_BATCHED_MAX_ELEMENTS
    if x0.device.type == "cpu" and n_targets >= CPU_BATCHED_FROM and small:
        return CPU_TARGET_BLOCK
    return 1


def margin_gradient_norms(
    model: Model, points: torch.Tensor, predicted: int, targets: Sequence[int], ord: float, block: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at ``points`` ``(n, K)`` and the ``ord``-norm of every margin gradient ``(n, len(targets))``.

    ``block`` targets share one batched backward pass (1: one pass per
    target). Only one block of gradients is alive at a time.
    """
    points = points.detach().requires_grad_(True)
    logits = model(points)
    n, n_targets = points.shape[0], len(targets)
    if not logits.requires_grad:  # graph cut between input and output: see margin_gradients
        return logits.detach(), points.new_zeros((n, n_targets))
    norms = []
    if block <= 1:
        for i, j in enumerate(targets):
            margin = (logits[:, predicted] - logits[:, j]).sum()
            (g,) = torch.autograd.grad(margin, points, retain_graph=i < n_targets - 1, allow_unused=True)
            norms.append(points.new_zeros(n) if g is None else torch.linalg.vector_norm(g.flatten(1), ord=ord, dim=1))
        return logits.detach(), torch.stack(norms, dim=1)
    index = torch.as_tensor(list(targets), device=logits.device)
    for start in range(0, n_targets, block):
        rows = index[start : start + block]
        # The gradient of f_c - f_j with respect to the logits, for each j of the block: e_c - e_j per point.
        seeds = logits.new_zeros((len(rows), *logits.shape))
        seeds[:, :, predicted] = 1
        seeds[torch.arange(len(rows), device=logits.device), :, rows] -= 1
        (g,) = torch.autograd.grad(
            logits, points, seeds, retain_graph=start + block < n_targets, is_grads_batched=True, allow_unused=True
        )
        if g is None:
            norms.append(points.new_zeros((n, len(rows))))
        else:
            norms.append(torch.linalg.vector_norm(g.flatten(2), ord=ord, dim=2).T)
    return logits.detach(), torch.cat(norms, dim=1)


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


__all__ = ["input_reaches_output", "margin_gradient_norms", "margin_gradients", "targets_per_pass"]
