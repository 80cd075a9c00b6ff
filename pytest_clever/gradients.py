"""Margin gradients at sampled points, for all targets at once, in bounded chunks.

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

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .sampling import sample_ball

Model = Callable[[torch.Tensor], torch.Tensor]

#: Points per forward/backward chunk on CPU (fastest measured for small nets).
CPU_CHUNK = 1024
#: Points per chunk on an accelerator, where larger batches pay off.
ACCELERATOR_CHUNK = 4096
#: Upper bound for the per-chunk gradient tensor (points x targets x input size).
CHUNK_BYTES = 64 * 2**20
#: Rounding allowance, in units of the dtype's epsilon times the logits' size, that a
#: margin change must exceed to count towards the Lipschitz lower bound.
ROUNDING_ULPS = 64


def default_chunk_size(n_targets: int, input_numel: int, itemsize: int, device: torch.device) -> int:
    """Points per chunk: fast for the device, and small enough to bound memory."""
    cap = ACCELERATOR_CHUNK if device.type != "cpu" else CPU_CHUNK
    by_memory = CHUNK_BYTES // max(1, 2 * n_targets * input_numel * itemsize)
    return int(max(1, min(cap, by_memory)))


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


@dataclass
class GradientSamples:
    """What the sampling pass keeps per target: batch maxima and sanity statistics.

    ``maxima[i, t]`` is the largest dual-norm gradient of margin ``targets[t]``
    in batch ``i``; ``lower_bounds[t]`` is the largest observed
    ``|g(x) - g(x0)| / ||x - x0||_p``, a proven lower bound on the local
    Lipschitz constant; ``zero_share`` and ``nonfinite_share`` are the shares
    of points where every margin gradient was zero or non-finite.
    """

    maxima: torch.Tensor
    lower_bounds: torch.Tensor
    zero_share: float
    nonfinite_share: float
    margin_varies: bool


def sample_gradient_maxima(
    model: Model,
    x0: torch.Tensor,
    margins0: torch.Tensor,
    *,
    predicted: int,
    targets: Sequence[int],
    norm: float,
    dual: float,
    radius: float,
    n_batches: int,
    batch_size: int,
    bounds: tuple[float, float] | None,
    generator: torch.Generator,
    chunk_size: int,
) -> GradientSamples:
    """Sample ``n_batches * batch_size`` fresh points and reduce them to batch maxima.

    Work happens in chunks of ``chunk_size`` points, so memory does not grow
    with the number of samples; statistics stay on the device until the end
    (no host synchronisation inside the loop).
    """
    device = x0.device
    n_targets = len(targets)
    total = n_batches * batch_size
    maxima = torch.full((n_batches, n_targets), -math.inf, dtype=x0.dtype, device=device)
    lower = torch.zeros(n_targets, dtype=x0.dtype, device=device)
    zero_count = torch.zeros((), dtype=torch.long, device=device)
    nonfinite_count = torch.zeros((), dtype=torch.long, device=device)
    target_index = torch.as_tensor(list(targets), device=device)

    for start in range(0, total, chunk_size):
        n = min(chunk_size, total - start)
        points = sample_ball(x0, n, norm, radius, generator, bounds)
        logits, grads = margin_gradients(model, points, predicted, targets)
        norms = torch.linalg.vector_norm(grads.flatten(2), ord=dual, dim=2)  # (n, T)

        finite = torch.isfinite(norms)
        nonfinite_count += (~finite).any(dim=1).sum()
        zero_count += (norms == 0).all(dim=1).sum()
        batch_ids = torch.arange(start, start + n, device=device) // batch_size
        index = batch_ids.unsqueeze(1).expand(-1, n_targets)
        maxima.scatter_reduce_(0, index, norms.nan_to_num(nan=math.inf), "amax")

        margins = logits[:, predicted : predicted + 1] - logits[:, target_index]
        distance = torch.linalg.vector_norm((points - x0).flatten(1), ord=norm, dim=1)
        # Only what rounding cannot explain counts as proof: near x0 a few ulps of the
        # logits, divided by a tiny distance, would otherwise "prove" a steeper slope.
        scale = logits[:, predicted : predicted + 1].abs() + logits[:, target_index].abs() + margins0.abs()
        change = ((margins - margins0).abs() - ROUNDING_ULPS * torch.finfo(x0.dtype).eps * scale).clamp_min(0)
        ratio = change / distance.clamp_min(torch.finfo(x0.dtype).tiny).unsqueeze(1)
        ratio = torch.where(distance.unsqueeze(1) > 0, ratio, torch.zeros_like(ratio))
        lower = torch.maximum(lower, ratio.nan_to_num(nan=0.0).amax(dim=0))

    return GradientSamples(
        maxima=maxima,
        lower_bounds=lower,
        zero_share=float(zero_count) / total,
        nonfinite_share=float(nonfinite_count) / total,
        margin_varies=bool((lower > 0).any()),
    )
