"""Curvature of the margins at a chunk of sampled points (second order's per-chunk derivative).

For a chunk of sampled points every (point, target) pair becomes one row of
a batch: the point is repeated once per target and row ``(i, t)`` carries
the margin ``g_t = f_c - f_{j_t}`` at point ``i``. One forward pass and one
backward pass with ``create_graph=True`` give every row's margin gradient;
because rows do not interact (the model is in eval mode), the gradient of
the summed margins is the per-row gradient, and a vector-Jacobian product of
those gradients with per-row vectors ``v`` is the per-row Hessian-vector
product ``H_row v_row``. So one Lanczos step (``lanczos.py``) for the whole
chunk and all K-1 targets is a single double backward. No Hessian is ever formed.

Two curvature measures (docs/maths.md, "Second-order CLEVER"):

- ``"spectral"``: the spectral norm ``||H||_2``;
- ``"negative"``: ``max(0, -lambda_min(H))``, the only curvature that can pull
  the margin down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import NotTwiceDifferentiableError
from .lanczos import HVP, MAX_STEPS, TOLERANCE, lanczos
from .validation import CURVATURE_METHODS

Model = Callable[[torch.Tensor], torch.Tensor]


class MarginHessians:
    """Margin gradients of a chunk of points for every target, with their graph kept for HVPs.

    ``rows`` holds point ``i`` for target ``t`` at row ``i * T + t``;
    ``margins``, ``logit_scale`` (``|f_c| + |f_j|``) and ``grads`` (flattened
    to ``(rows, d)``) follow that order.
    """

    def __init__(self, model: Model, points: torch.Tensor, predicted: int, targets: Sequence[int]) -> None:
        n_targets = len(targets)
        self.rows = points.detach().repeat_interleave(n_targets, dim=0).requires_grad_(True)
        logits = model(self.rows)
        index = torch.arange(len(self.rows), device=points.device)
        target_rows = torch.as_tensor(list(targets), device=points.device).repeat(len(points))
        own, other = logits[index, predicted], logits[index, target_rows]
        margins = own - other
        (grads,) = torch.autograd.grad(margins.sum(), self.rows, create_graph=True, allow_unused=True)
        self._grads = torch.zeros_like(self.rows) if grads is None else grads
        self.margins = margins.detach()
        self.logit_scale = (own.abs() + other.abs()).detach()
        self.grads = self._grads.detach().flatten(1)

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """Per-row Hessian-vector products ``H_row v_row`` for ``v`` of shape ``(rows, d)``."""
        if not self._grads.requires_grad:  # the gradient does not depend on x: H = 0
            return torch.zeros_like(v)
        try:
            (hv,) = torch.autograd.grad(
                self._grads, self.rows, grad_outputs=v.view_as(self.rows), retain_graph=True, allow_unused=True
            )
        except RuntimeError as exc:
            raise NotTwiceDifferentiableError(
                "second-order CLEVER needs Hessian-vector products, but the model does not "
                f"support double backward: {exc}"
            ) from exc
        return torch.zeros_like(v) if hv is None else hv.flatten(1)


@dataclass
class CurvatureEstimate:
    """Per-row curvature: the spectral norm always, and the value of the chosen ``method``."""

    spectral: torch.Tensor
    value: torch.Tensor
    steps: int
    converged: torch.Tensor


def hessian_curvature(
    hvp: HVP,
    n_rows: int,
    dim: int,
    *,
    method: str = "spectral",
    generator: torch.Generator | Sequence[torch.Generator],
    dtype: torch.dtype,
    device: torch.device,
    tol: float = TOLERANCE,
    max_steps: int = MAX_STEPS,
) -> CurvatureEstimate:
    """Curvature of ``n_rows`` symmetric ``dim x dim`` operators given by ``hvp``.

    ``method="spectral"`` returns ``||H||_2``; ``method="negative"`` returns
    ``max(0, -lambda_min(H))``; both come from one Lanczos run, whose start
    vectors are drawn from ``generator`` (so the result is reproducible), or
    from one generator per point (``n_rows / len(generator)`` rows each).
    """
    if method not in CURVATURE_METHODS:
        raise ValueError(f"unknown curvature method {method!r}: use one of {CURVATURE_METHODS}")
    if isinstance(generator, torch.Generator):
        start = torch.randn(n_rows, dim, generator=generator, dtype=dtype, device=device)
    else:
        rows = n_rows // len(generator)
        start = torch.cat([torch.randn(rows, dim, generator=g, dtype=dtype, device=device) for g in generator])
    ritz = lanczos(hvp, start, tol=tol, max_steps=max_steps)
    spectral = torch.maximum(ritz.lambda_max.abs(), ritz.lambda_min.abs())
    value = spectral if method == "spectral" else (-ritz.lambda_min).clamp_min(0)
    return CurvatureEstimate(spectral, value, ritz.steps, ritz.converged)


def margin_curvatures(
    model: Model,
    points: torch.Tensor,
    predicted: int,
    targets: Sequence[int],
    *,
    method: str = "spectral",
    generator: torch.Generator | Sequence[torch.Generator],
    tol: float = TOLERANCE,
    max_steps: int = MAX_STEPS,
) -> tuple[MarginHessians, CurvatureEstimate]:
    """Curvature of every margin ``f_c - f_j`` (j in ``targets``) at every point of ``points``.

    Returns the chunk's :class:`MarginHessians` (margins and gradients per
    row) and the :class:`CurvatureEstimate`; reshape rows with
    ``.view(len(points), len(targets))``.
    """
    hessians = MarginHessians(model, points, predicted, targets)
    estimate = hessian_curvature(
        hessians.hvp,
        len(hessians.rows),
        hessians.grads.shape[1],
        method=method,
        generator=generator,
        dtype=points.dtype,
        device=points.device,
        tol=tol,
        max_steps=max_steps,
    )
    return hessians, estimate


__all__ = ["CurvatureEstimate", "MarginHessians", "hessian_curvature", "margin_curvatures"]
