"""Backward Pass Differentiable Approximation (BPDA, Athalye et al. 2018).

A defence that preprocesses inputs with a non-differentiable transform ``T``
(rounding, JPEG, median filtering, ...) masks gradients: ``∇(f∘T)`` is zero
or undefined almost everywhere, and CLEVER then reports a large, meaningless
score. :class:`BPDA` keeps ``T`` in the forward pass and differentiates a
surrogate ``h`` instead (by default the identity, ``h(x) = x``: the gradient
passes straight through), so CLEVER measures the network behind the
transform::

    defended = nn.Sequential(BPDA(bit_depth(4)), net)
    clever_score(defended, x, radius=2.0, bounds=(0, 1))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

TensorFn = Callable[[torch.Tensor], torch.Tensor]


class _BPDAFunction(torch.autograd.Function):
    """Forward ``T(x)``; backward ``J_h(x)^T grad``, itself differentiable (double backward)."""

    @staticmethod
    def forward(x: torch.Tensor, transform: TensorFn, surrogate: TensorFn | None) -> torch.Tensor:
        out = transform(x)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the BPDA transform must return a tensor, got {type(out).__name__}")
        # An output aliasing the input would confuse autograd's view tracking.
        if out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
            out = out.clone()
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, _, surrogate = inputs
        ctx.surrogate = surrogate
        if surrogate is not None:
            ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if ctx.surrogate is None:
            # Identity surrogate: J_h = I. Returning ``grad`` itself keeps the
            # result differentiable in ``grad``, which is all double backward needs.
            return grad, None, None
        (x,) = ctx.saved_tensors
        # torch.func.vjp stays differentiable in x and grad when the caller asked for
        # create_graph=True (or nests torch.func transforms), and costs nothing extra otherwise.
        vjp = torch.func.vjp(ctx.surrogate, x)[1]  # (output, vjp_fn): torch types it as a 2- or 3-tuple
        (grad_x,) = vjp(grad)
        return grad_x, None, None


class BPDA(nn.Module):
    """Apply ``transform`` in the forward pass and differentiate ``backward`` instead.

    Parameters
    ----------
    transform:
        Any tensor -> tensor function ``T`` (differentiable or not: it runs
        without autograd, so numpy round trips are fine). It receives the
        whole batch.
    backward:
        A differentiable surrogate ``h`` with the same output shape as ``T``;
        its vector-Jacobian product replaces ``T``'s. ``None`` (default) is
        the identity, which needs ``T`` to keep the input's shape.

    Notes
    -----
    First order: the gradient of ``f(BPDA(T, h)(x))`` is
    ``J_h(x)^T ∇f(T(x))``: the network's gradient at the transformed input,
    pulled back through the surrogate. Margins, and so CLEVER's numerator,
    use the true forward ``f(T(x))``.

    Second order (double backward, Hessian-vector products with
    ``create_graph=True``): differentiating that gradient once more gives

        J_h(x)^T ∇²f(T(x)) J_h(x) + Σ_k ∂_k f(T(x)) ∇²h_k(x),

    the Hessian of ``f∘h`` with ``f``'s derivatives taken at ``T(x)`` instead
    of ``h(x)``. For the identity surrogate it is ``∇²f(T(x))``, the
    network's curvature at the transformed input. ``T``'s own curvature
    (zero or undefined) never enters, and neither does the change of
    ``T(x) - h(x)`` with ``x``: a second-order score through BPDA bounds the
    curvature of the surrogate model, not of the true ``f∘T``.

    Works with ``torch.autograd`` (including ``create_graph=True``) and with
    ``torch.func.grad``, ``vjp`` and ``jacrev``; not under ``vmap`` or forward
    mode (``torch.func.hessian``, ``jacfwd``), since ``T`` may be any code.
    """

    def __init__(self, transform: TensorFn, backward: TensorFn | None = None) -> None:
        super().__init__()
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        if backward is not None and not callable(backward):
            raise TypeError(f"backward must be callable or None, got {type(backward).__name__}")
        self.transform = transform
        self.backward_fn = backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _BPDAFunction.apply(x, self.transform, self.backward_fn)
        if self.backward_fn is None and out.shape != x.shape:
            raise ValueError(
                f"BPDA: the transform changes the shape {tuple(x.shape)} -> {tuple(out.shape)}, so the "
                "identity cannot stand in for its gradient; pass a differentiable surrogate with the "
                "same output shape as backward=..."
            )
        return out

    def extra_repr(self) -> str:
        # Submodules print themselves; name only plain callables here.
        parts = [] if isinstance(self.transform, nn.Module) else [f"transform={self.transform!r}"]
        if self.backward_fn is None:
            parts.append("backward=identity")
        elif not isinstance(self.backward_fn, nn.Module):
            parts.append(f"backward={self.backward_fn!r}")
        return ", ".join(parts)


__all__ = ["BPDA"]
