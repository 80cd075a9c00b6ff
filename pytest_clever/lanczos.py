"""Batched Lanczos: the extreme eigenvalues of many symmetric operators given only by products.

Each row of a batch is its own symmetric ``d x d`` operator ``H_row``, known
only through ``hvp(v)``, which returns ``H_row v_row`` for every row at once
(one double backward for a whole chunk of sampled points, see
``curvature.py``). Measured on the digits CNN at tolerance 1e-3, Lanczos
needs 15 products with errors ~1e-6 where a power iteration needed 49 and was
still 6% off on the slowest rows after 40, and it gives ``lambda_min`` from
the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

HVP = Callable[[torch.Tensor], torch.Tensor]

#: A row has converged once both extreme Ritz values change by less than this (relative).
TOLERANCE = 1e-3
#: The solver gives up after this many Hessian-vector products.
MAX_STEPS = 100


@dataclass
class LanczosResult:
    """Per-row extreme Ritz values of a Lanczos run: inner bounds on the extreme eigenvalues."""

    lambda_min: torch.Tensor  # >= the true lambda_min
    lambda_max: torch.Tensor  # <= the true lambda_max
    steps: int
    converged: torch.Tensor  # bool per row


def unit_rows(v: torch.Tensor) -> torch.Tensor:
    """Each row of ``v`` scaled to unit Euclidean norm (zero rows stay zero)."""
    norms = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    return torch.where(norms > 0, v / norms.clamp_min(torch.finfo(v.dtype).tiny), v)


def _tridiagonal(alphas: list[torch.Tensor], betas: list[torch.Tensor]) -> torch.Tensor:
    """Batched symmetric tridiagonal matrices ``(rows, k, k)`` from the Lanczos coefficients."""
    t = torch.diag_embed(torch.stack(alphas, dim=1))
    if betas:
        off = torch.diag_embed(torch.stack(betas, dim=1), offset=1)
        t = t + off + off.transpose(1, 2)
    return t


def lanczos(hvp: HVP, v0: torch.Tensor, *, tol: float = TOLERANCE, max_steps: int = MAX_STEPS) -> LanczosResult:
    """Batched Lanczos with full reorthogonalisation for the extreme eigenvalues of ``H`` per row.

    A row has converged once both extremes change by at most ``tol``
    relative to the spectral norm, or its Krylov space is exhausted (then
    they are exact).
    """
    rows, dim = v0.shape
    tiny = torch.finfo(v0.dtype).tiny
    basis: list[torch.Tensor] = []
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    q = unit_rows(v0)
    alive = torch.ones(rows, dtype=torch.bool, device=v0.device)  # Krylov space not yet exhausted
    lo = hi = torch.zeros(rows, dtype=v0.dtype, device=v0.device)
    converged = ~alive
    steps = 0
    for steps in range(1, min(max_steps, dim) + 1):
        basis.append(q)
        w = hvp(q)
        alphas.append((q * w).sum(dim=1))
        stacked = torch.stack(basis)  # (k, rows, d)
        for _ in range(2):  # full reorthogonalisation, twice is enough in floating point
            w = w - torch.einsum("kr,krd->rd", torch.einsum("krd,rd->kr", stacked, w), stacked)
        ritz = torch.linalg.eigvalsh(_tridiagonal(alphas, betas))
        new_lo, new_hi = ritz[:, 0], ritz[:, -1]
        scale = torch.maximum(new_hi.abs(), new_lo.abs())
        steady = ((new_lo - lo).abs() <= tol * scale) & ((new_hi - hi).abs() <= tol * scale)
        # Rows whose space was exhausted keep their (exact) values; zero padding would add a 0 eigenvalue.
        # Converged rows keep the values they converged with, so a row's result does not depend on
        # the other rows of its chunk (chunk_size changes memory use, not scores).
        update = alive & ~converged
        lo, hi = torch.where(update, new_lo, lo), torch.where(update, new_hi, hi)
        converged = converged | ~alive | (steady & torch.tensor(steps > 1, device=v0.device))
        beta = torch.linalg.vector_norm(w, dim=1)
        alive = alive & (beta > 1e3 * torch.finfo(v0.dtype).eps * scale.clamp_min(tiny))
        if bool(converged.all()) or not bool(alive.any()):
            converged = converged | ~alive
            break
        betas.append(torch.where(alive, beta, torch.zeros_like(beta)))
        q = torch.where(alive.unsqueeze(1), w / beta.clamp_min(tiny).unsqueeze(1), torch.zeros_like(w))
    if steps == dim:  # the whole space was spanned: the Ritz values are the eigenvalues
        converged = torch.ones_like(converged)
    return LanczosResult(lo, hi, steps, converged)


__all__ = ["HVP", "LanczosResult", "MAX_STEPS", "TOLERANCE", "lanczos", "unit_rows"]
