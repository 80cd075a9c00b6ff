"""Batched Lanczos: the extreme eigenvalues of many symmetric operators given only by products.

Each row of a batch is its own symmetric ``d x d`` operator ``H_row``, known
only through ``hvp(v)``, which returns ``H_row v_row`` for every row at once
(one double backward for a whole chunk of sampled points, see
``curvature.py``). Lanczos rather than a power iteration: it needs far fewer
products, each a double backward, and gives ``lambda_min`` from the same run.

Each row stops on its own: once its extreme Ritz values have been steady
for ``patience`` steps in a row and both extreme Ritz pairs are resolved
(small residuals), when its Krylov space is exhausted, or when
the caller's ``may_stop`` says its value can no longer matter
(``curvature.py`` stops rows that cannot be their batch's maximum). A row
never waits for the other rows of its batch, and its later products are
neither computed nor read, so its values depend on the row alone (up to the
rounding of batched kernels), never on which rows share its chunk. The
products cost the same for a stopped row as for a running one, so once at
most ``RESTRICT_SHARE`` of the operator's rows still run, ``restrict`` (if
given) rebuilds the operator on those rows only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

HVP = Callable[[torch.Tensor], torch.Tensor]
#: Rebuilds the operator on a subset of the rows (indices into the original rows).
Restrict = Callable[[torch.Tensor], HVP]

#: A row has converged once both extreme Ritz values change by less than this (relative).
TOLERANCE = 1e-3
#: A row stops once it has been steady (both extremes within ``TOLERANCE``) for this many steps in a row.
#: Ritz values can stall for a step or two before an eigenvector with a small share of the start vector
#: shows, so one steady step is not enough. Measured against Lanczos converged to 1e-7 over 50 (digits CNN
#: softplus/tanh, input, seed) configurations (benchmarks/second_order_accuracy.py): batch maxima at most
#: 1.1e-6 low with 4, 2.8e-6 with 3, but 10.7% low with 2.
PATIENCE = 4
#: ... and both extreme Ritz pairs ``(theta, y)`` have residuals ``||H y - theta y||`` of at most this share
#: of the spectral norm. Steadiness alone misses Ritz values that creep (a spectrum without a gap at its
#: end, as in a random-weight softplus ResNet: they change by less than 1e-3 per step long before they
#: converge; batch maxima 2.3e-3 to 6.3e-3 low). A residual ``r`` puts an eigenvalue within ``r`` of
#: ``theta`` (within ``r^2 / gap`` when the next eigenvalue is ``gap`` away), and it stays large while the
#: value creeps. Measured on that ResNet (18 configurations, benchmarks/second_order_accuracy.py): worst
#: batch maximum 2.4e-3 low at 1e-3, 3.0e-4 at 3e-4, 6.3e-7 at 1e-4 (62 steps per row against 100 to
#: converge). Where spectra have gaps (digits CNNs, a trained ResNet) the residual is small by the time
#: the values are steady: 1e-4 costs 1-6% more steps than 1e-3 there.
RESIDUAL_TOLERANCE = 1e-4
#: ... and for at least this share of its steps (0: no such rule). Steady for half the steps without the
#: residual rule left that ResNet's batch maxima up to 3.7e-3 low, at about 30% more steps than the residual
#: rule on the digits CNN and the trained ResNet; ``benchmarks/second_order_accuracy.py`` compares the two.
PATIENCE_SHARE = 0.0
#: The solver gives up after this many Hessian-vector products.
MAX_STEPS = 100
#: Basis vectors per row allocated at first (the basis doubles when full).
INITIAL_CAPACITY = 16
#: Rebuild the operator once at most this share of its rows still runs.
RESTRICT_SHARE = 0.5


class RitzState:
    """Per-row state of a run after a step, for every original row.

    ``lambda_min``/``lambda_max`` are the extreme Ritz values (inner bounds);
    ``square_max`` the largest Ritz value of ``H^2`` on the same Krylov space
    (``lambda_max(T^2 + beta_k^2 e_k e_k^T)``, as ``H Q = Q T + beta_k q e_k^T``).
    The Krylov space of ``H`` after ``k`` steps holds that of ``H^2`` after
    ``ceil(k / 2)``, so ``square_max`` is at least the Lanczos estimate of
    ``||H||_2^2`` after ``ceil(k / 2)`` steps on the positive semi-definite
    ``H^2``, which random-start bounds apply to (``curvature.py``). It is
    computed only when read (a ``may_stop`` that knows its bound is still
    vacuous skips it). ``running``: rows still iterating (stopped rows keep
    their last values).
    """

    def __init__(
        self,
        lambda_min: torch.Tensor,
        lambda_max: torch.Tensor,
        running: torch.Tensor,
        step: int,
        square_max: Callable[[], torch.Tensor],
    ) -> None:
        self.lambda_min, self.lambda_max, self.running, self.step = lambda_min, lambda_max, running, step
        self._square_max = square_max

    @cached_property
    def square_max(self) -> torch.Tensor:
        return self._square_max()


MayStop = Callable[[RitzState], torch.Tensor]


@dataclass
class LanczosResult:
    """Per-row extreme Ritz values of a Lanczos run: inner bounds on the extreme eigenvalues.

    ``steps`` is the most steps any row took, ``row_steps`` each row's own;
    ``products`` counts the per-row products the operator computed, stopped
    rows' zero vectors included (they cost as much until ``restrict``).
    """

    lambda_min: torch.Tensor  # >= the true lambda_min
    lambda_max: torch.Tensor  # <= the true lambda_max
    steps: int
    converged: torch.Tensor  # bool per row: steady, exhausted, or stopped by ``may_stop``
    row_steps: torch.Tensor  # long per row
    products: int
    #: Unit Ritz vectors of ``lambda_min`` and ``lambda_max`` per row ``(rows, d)``, when asked for.
    vector_min: torch.Tensor | None = None
    vector_max: torch.Tensor | None = None


def unit_rows(v: torch.Tensor) -> torch.Tensor:
    """Each row of ``v`` scaled to unit Euclidean norm (zero rows stay zero)."""
    norms = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    return torch.where(norms > 0, v / norms.clamp_min(torch.finfo(v.dtype).tiny), v)


def _tridiagonal(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """Batched symmetric tridiagonal matrices ``(rows, k, k)`` from ``(rows, k)`` and ``(rows, k - 1)``."""
    t = torch.diag_embed(alphas)
    if betas.shape[1]:
        off = torch.diag_embed(betas, offset=1)
        t = t + off + off.transpose(1, 2)
    return t


def lanczos(
    hvp: HVP,
    v0: torch.Tensor,
    *,
    tol: float = TOLERANCE,
    max_steps: int = MAX_STEPS,
    patience: int = PATIENCE,
    patience_share: float = PATIENCE_SHARE,
    residual_tol: float = RESIDUAL_TOLERANCE,
    may_stop: MayStop | None = None,
    restrict: Restrict | None = None,
    vectors: bool = False,
) -> LanczosResult:
    """Batched Lanczos with full reorthogonalisation for the extreme eigenvalues of ``H`` per row.

    A step is steady for a row when both extremes change by at most ``tol``
    relative to the spectral norm; a row stops after ``patience`` steady
    steps in a row (and for at least ``patience_share`` of its steps so
    far) once both extreme Ritz pairs' residuals are at most
    ``residual_tol`` times the spectral norm, once its Krylov space is
    exhausted (its Ritz values are then exact), or when ``may_stop`` marks it.
    The residual of the Ritz pair ``(theta_i, Q s_i)`` is ``beta_k |s_i[k]|``
    (``H Q = Q T + beta_k q e_k^T``): it comes with the tridiagonal's
    eigenvectors. The tridiagonal matrices are tiny (``steps x steps``);
    their eigen-decomposition costs little next to one product.
    ``vectors``: also return the extreme Ritz vectors.
    """
    rows, dim = v0.shape
    device, dtype = v0.device, v0.dtype
    tiny, eps = torch.finfo(dtype).tiny, torch.finfo(dtype).eps
    lo = torch.zeros(rows, dtype=dtype, device=device)
    hi, square = lo.clone(), lo.clone()
    converged = torch.zeros(rows, dtype=torch.bool, device=device)
    calm = torch.zeros(rows, dtype=torch.long, device=device)  # steady steps in a row, per running row
    row_steps = calm.clone()
    live = torch.arange(rows, device=device)  # original ids of running rows
    op_rows = live  # original ids of the operator's rows
    q = unit_rows(v0)
    steps, products, limit = 0, 0, min(max_steps, dim)
    # One contiguous (k x d) block per running row, filled in place and doubled when full:
    # no copy of the whole basis per step, and reorthogonalisation is two batched matmuls.
    basis = v0.new_empty(rows, min(limit, INITIAL_CAPACITY), dim)
    alphas, betas = v0.new_zeros(rows, limit), v0.new_zeros(rows, limit)
    vector_min, vector_max = (v0.new_zeros(rows, dim), v0.new_zeros(rows, dim)) if vectors else (v0, v0)
    for steps in range(1, limit + 1):
        k = steps - 1
        if k == basis.shape[1]:
            grown = basis.new_empty(len(live), min(limit, 2 * k), dim)
            grown[:, :k] = basis
            basis = grown
        basis[:, k] = q
        products += len(op_rows)
        if len(op_rows) == len(live):
            w = hvp(q)
        else:  # stopped rows of the operator get zero vectors (their products are discarded)
            full = q.new_zeros(len(op_rows), dim)
            full[torch.searchsorted(op_rows, live)] = q
            w = hvp(full)[torch.searchsorted(op_rows, live)]
        row_steps[live] = steps
        alphas[:, k] = (q * w).sum(dim=1)
        spanned = basis[:, :steps]  # (live, k, d)
        for _ in range(2):  # full reorthogonalisation, twice is enough in floating point
            w = w - torch.bmm(torch.bmm(spanned, w.unsqueeze(2)).transpose(1, 2), spanned).squeeze(1)
        beta = torch.linalg.vector_norm(w, dim=1)
        t = _tridiagonal(alphas[:, :steps], betas[:, :k])
        values, ritz = torch.linalg.eigh(t)
        if vectors:
            vector_min[live] = unit_rows(torch.bmm(ritz[:, :, :1].transpose(1, 2), spanned).squeeze(1))
            vector_max[live] = unit_rows(torch.bmm(ritz[:, :, -1:].transpose(1, 2), spanned).squeeze(1))
        new_lo, new_hi = values[:, 0], values[:, -1]
        residual = beta * torch.maximum(ritz[:, -1, 0].abs(), ritz[:, -1, -1].abs())
        change = torch.maximum((new_lo - lo[live]).abs(), (new_hi - hi[live]).abs())
        scale = torch.maximum(new_hi.abs(), new_lo.abs())
        lo[live], hi[live] = new_lo, new_hi
        steady = change <= tol * scale if steps > 1 else torch.zeros_like(change, dtype=torch.bool)
        calm[live] = torch.where(steady, calm[live] + 1, 0)
        exhausted = beta <= 1e3 * eps * scale.clamp_min(tiny)  # the Ritz values are exact
        resolved = residual <= residual_tol * scale
        stop = exhausted | (resolved & (calm[live] >= max(patience, math.ceil(patience_share * steps))))
        if may_stop is not None:

            def square_max(t: torch.Tensor = t, beta: torch.Tensor = beta, live: torch.Tensor = live) -> torch.Tensor:
                t2 = t @ t
                t2[:, -1, -1] += beta**2
                square[live] = torch.linalg.eigvalsh(t2)[:, -1]
                return square

            running = torch.zeros(rows, dtype=torch.bool, device=device)
            running[live] = True
            stop = stop | may_stop(RitzState(lo, hi, running, steps, square_max))[live]
        converged[live] = steady | stop
        done, any_stopped = torch.stack([stop.all(), stop.any()]).tolist()  # one sync per step
        if steps == limit or done:
            break
        betas[:, k] = beta
        keep = ~stop
        q = w / beta.unsqueeze(1)
        if any_stopped:
            live, basis, alphas, betas, q = live[keep], basis[keep], alphas[keep], betas[keep], q[keep]
        if restrict is not None and len(live) <= RESTRICT_SHARE * len(op_rows):
            del hvp  # drop the previous operator's graph before the next is built
            hvp, op_rows = restrict(live), live
    converged |= row_steps == dim  # the whole space was spanned: the Ritz values are the eigenvalues
    if not vectors:
        return LanczosResult(lo, hi, steps, converged, row_steps, products)
    return LanczosResult(lo, hi, steps, converged, row_steps, products, vector_min, vector_max)


__all__ = [
    "HVP",
    "LanczosResult",
    "MAX_STEPS",
    "MayStop",
    "PATIENCE",
    "PATIENCE_SHARE",
    "RESIDUAL_TOLERANCE",
    "RESTRICT_SHARE",
    "Restrict",
    "RitzState",
    "TOLERANCE",
    "lanczos",
    "unit_rows",
]
