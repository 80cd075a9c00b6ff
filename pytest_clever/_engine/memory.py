"""Memory one sampled point costs a model's derivative pass, measured on a tiny probe.

The chunk sizer (``maxima.default_chunk_size``) needs bytes per point, and
what dominates is the model's activations kept for backward (and, for second
order, the double-backward graph), not the input-sized tensors. They are
measured rather than guessed: the pass runs on probes of 1 and 2 rows and
the difference is the cost of one row (weights and other constants cancel).
On CPU the bytes come from the tensors autograd saves
(``torch.autograd.graph.saved_tensors_hooks``, each storage counted once);
on CUDA from ``torch.cuda.max_memory_allocated``, which also sees
temporaries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

Model = Callable[[torch.Tensor], torch.Tensor]


def _saved_bytes(run: Callable[[], object]) -> int:
    """Bytes of the distinct storages autograd saves while ``run()`` executes."""
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    keep = []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        keep.append(run())  # the graph must live until counted
    return sum(seen.values())


def _peak_bytes(run: Callable[[], object], device: torch.device) -> int:
    """Peak CUDA memory allocated while ``run()`` executes, above what was allocated before."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = run()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del result
    return peak


def _row_pass(model: Model, rows: torch.Tensor, predicted: int, targets: torch.Tensor, order: int) -> object:
    """One derivative pass over ``rows`` (each row a point for one target), as the orders run it."""
    rows = rows.detach().requires_grad_(True)
    logits = model(rows)
    if not logits.requires_grad:
        return logits
    index = torch.arange(len(rows), device=rows.device)
    margins = logits[index, predicted] - logits[index, targets]
    (grads,) = torch.autograd.grad(margins.sum(), rows, create_graph=order == 2, allow_unused=True)
    if order == 2 and grads is not None and grads.requires_grad:  # one Hessian-vector product
        (hv,) = torch.autograd.grad(
            grads, rows, grad_outputs=torch.ones_like(grads), retain_graph=True, allow_unused=True
        )
        return grads, hv
    return grads


def bytes_per_row(model: Model, x0: torch.Tensor, predicted: int, targets: Sequence[int], order: int) -> int:
    """Bytes one batch row (one point, one target) costs the derivative pass of ``order``.

    First order runs one forward pass per point and one backward pass per
    target over it; second order repeats each point once per target and
    keeps the double-backward graph. At least the size of the input.
    """
    device = x0.device
    target_rows = torch.as_tensor([targets[0], targets[-1]], device=device)

    def probe(n: int) -> int:
        rows = x0.detach().unsqueeze(0).expand(n, *x0.shape).clone()
        run = functools.partial(_row_pass, model, rows, predicted, target_rows[:n], order)
        return _peak_bytes(run, device) if device.type == "cuda" else _saved_bytes(run)

    try:
        one, two = probe(1), probe(2)
    except RuntimeError:  # e.g. no double backward: the real pass reports it properly
        return x0.numel() * x0.element_size()
    return max(two - one, x0.numel() * x0.element_size())


__all__ = ["bytes_per_row"]
