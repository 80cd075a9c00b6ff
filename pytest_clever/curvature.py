"""Curvature of the margins at sampled points: Hessian eigenvalues from batched HVPs.

For a chunk of sampled points every (point, target) pair becomes one row of
a batch: the point is repeated once per target and row ``(i, t)`` carries
the margin ``g_t = f_c - f_{j_t}`` at point ``i``. One forward pass and one
backward pass with ``create_graph=True`` give every row's margin gradient;
because rows do not interact (the model is in eval mode), the gradient of
the summed margins is the per-row gradient, and a vector-Jacobian product of
those gradients with per-row vectors ``v`` is the per-row Hessian-vector
product ``H_row v_row``. So one solver step for the whole chunk and all K-1
targets is a single double backward. No Hessian is ever formed.

Two curvature measures (SPEC.md, "Second-order CLEVER"):

- ``"spectral"``: the spectral norm ``||H||_2``;
- ``"negative"``: ``max(0, -lambda_min(H))``, the only curvature that can pull
  the margin down.

Two solvers: Lanczos (default) gives both extreme eigenvalues from one run
and needs far fewer steps (measured on the digits CNN at tolerance 1e-3: 15
steps with errors ~1e-6, where power iteration needed 49 and was still 6%
off on the slowest rows after 40); power iteration (then, for "negative", a
power iteration on ``H - s I`` with ``s`` the spectral norm, whose dominant
eigenvalue is ``lambda_min - s``) is kept as a simple reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import NotTwiceDifferentiableError
from .gradients import CPU_CHUNK, ACCELERATOR_CHUNK, CHUNK_BYTES, margin_gradients
from .sampling import sample_ball

Model = Callable[[torch.Tensor], torch.Tensor]
HVP = Callable[[torch.Tensor], torch.Tensor]

#: Curvature measures: the Hessian spectral norm, or only its negative part.
CURVATURE_METHODS = ("spectral", "negative")
#: Eigenvalue solvers on Hessian-vector products; Lanczos is the default (fewer products).
SOLVERS = ("lanczos", "power")
DEFAULT_SOLVER = "lanczos"
#: The solver stops once every row's estimate changes by less than this (relative).
POWER_TOLERANCE = 1e-3
#: The solver gives up after this many Hessian-vector products (per phase for power iteration).
POWER_MAX_ITERATIONS = 100
#: Float rounding allowance (in machine epsilons) before a difference counts as real.
ROUNDING_EPS = 64


def default_curvature_chunk(n_targets: int, input_numel: int, itemsize: int, device: torch.device) -> int:
    """Points per chunk for the curvature pass; each point makes ``n_targets`` rows.

    The double-backward graph of a row is a few times the size of a plain
    gradient's, hence the smaller memory budget per row than in gradients.py.
    """
    rows = ACCELERATOR_CHUNK if device.type != "cpu" else CPU_CHUNK
    by_memory = CHUNK_BYTES // max(1, 8 * n_targets * input_numel * itemsize)
    return int(max(1, min(rows // max(1, n_targets), by_memory)))


class MarginHessians:
    """Margin gradients of a chunk of points for every target, with their graph kept for HVPs.

    ``rows`` holds point ``i`` for target ``t`` at row ``i * T + t``;
    ``margins`` and ``grads`` (flattened to ``(rows, d)``) follow that order.
    """

    def __init__(self, model: Model, points: torch.Tensor, predicted: int, targets: Sequence[int]) -> None:
        n_targets = len(targets)
        self.rows = points.detach().repeat_interleave(n_targets, dim=0).requires_grad_(True)
        logits = model(self.rows)
        index = torch.arange(len(self.rows), device=points.device)
        target_rows = torch.as_tensor(list(targets), device=points.device).repeat(len(points))
        margins = logits[index, predicted] - logits[index, target_rows]
        (grads,) = torch.autograd.grad(margins.sum(), self.rows, create_graph=True, allow_unused=True)
        self._grads = torch.zeros_like(self.rows) if grads is None else grads
        self.margins = margins.detach()
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
class PowerResult:
    """Per-row outcome of a power iteration."""

    estimate: torch.Tensor  # ||A v|| at the last unit vector v: a lower bound on ||A||_2
    rayleigh: torch.Tensor  # v^T H v at the last v (H, not the shifted operator)
    iterations: int
    converged: torch.Tensor  # bool per row


def _unit_rows(v: torch.Tensor) -> torch.Tensor:
    norms = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    return torch.where(norms > 0, v / norms.clamp_min(torch.finfo(v.dtype).tiny), v)


def power_iteration(
    hvp: HVP,
    v0: torch.Tensor,
    *,
    shift: torch.Tensor | None = None,
    done: torch.Tensor | None = None,
    tol: float = POWER_TOLERANCE,
    max_iter: int = POWER_MAX_ITERATIONS,
) -> PowerResult:
    """Batched power iteration on ``A = H - shift I`` (per row), with ``H v = hvp(v)``.

    For symmetric ``A`` the estimate ``||A v_k||`` increases monotonically
    towards ``||A||_2``; a row has converged once its estimate changes by at
    most ``tol`` relative. Rows marked in ``done`` need no convergence (they
    are still multiplied, as the chunk shares one double backward).
    """
    v = _unit_rows(v0)
    previous = torch.zeros(len(v), dtype=v.dtype, device=v.device)
    base = torch.zeros(len(v), dtype=torch.bool, device=v.device) if done is None else done
    estimate, rayleigh, converged = previous, previous, base
    iterations = 0
    for iterations in range(1, max_iter + 1):
        hv = hvp(v)
        rayleigh = (v * hv).sum(dim=1)
        av = hv if shift is None else hv - shift.unsqueeze(1) * v
        estimate = torch.linalg.vector_norm(av, dim=1)
        converged = base | ((estimate - previous).abs() <= tol * estimate)
        v = torch.where(estimate.unsqueeze(1) > 0, av / estimate.clamp_min(torch.finfo(v.dtype).tiny).unsqueeze(1), v)
        previous = estimate
        if iterations > 1 and bool(converged.all()):
            break
    return PowerResult(estimate, rayleigh, iterations, converged)


@dataclass
class LanczosResult:
    """Per-row extreme Ritz values of a Lanczos run: inner bounds on the extreme eigenvalues."""

    lambda_min: torch.Tensor  # >= the true lambda_min
    lambda_max: torch.Tensor  # <= the true lambda_max
    iterations: int
    converged: torch.Tensor  # bool per row


def _tridiagonal(alphas: list[torch.Tensor], betas: list[torch.Tensor]) -> torch.Tensor:
    """Batched symmetric tridiagonal matrices ``(rows, k, k)`` from the Lanczos coefficients."""
    t = torch.diag_embed(torch.stack(alphas, dim=1))
    if betas:
        off = torch.diag_embed(torch.stack(betas, dim=1), offset=1)
        t = t + off + off.transpose(1, 2)
    return t


def lanczos(
    hvp: HVP,
    v0: torch.Tensor,
    *,
    tol: float = POWER_TOLERANCE,
    max_iter: int = POWER_MAX_ITERATIONS,
) -> LanczosResult:
    """Batched Lanczos with full reorthogonalisation for the extreme eigenvalues of ``H`` per row.

    Both extreme Ritz values converge far faster than a power iteration
    (measured: about 4x fewer Hessian-vector products on the digits CNN) and
    come from the same run, so ``lambda_min`` costs nothing extra. A row has
    converged once both extremes change by at most ``tol`` relative to the
    spectral norm, or its Krylov space is exhausted (then they are exact).
    """
    rows, dim = v0.shape
    tiny = torch.finfo(v0.dtype).tiny
    basis: list[torch.Tensor] = []
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    q = _unit_rows(v0)
    alive = torch.ones(rows, dtype=torch.bool, device=v0.device)  # Krylov space not yet exhausted
    lo = hi = torch.zeros(rows, dtype=v0.dtype, device=v0.device)
    converged = ~alive
    iterations = 0
    for iterations in range(1, min(max_iter, dim) + 1):
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
        lo, hi = torch.where(alive, new_lo, lo), torch.where(alive, new_hi, hi)
        converged = ~alive | (steady & torch.tensor(iterations > 1, device=v0.device))
        beta = torch.linalg.vector_norm(w, dim=1)
        alive = alive & (beta > 1e3 * torch.finfo(v0.dtype).eps * scale.clamp_min(tiny))
        if bool(converged.all()) or not bool(alive.any()):
            converged = converged | ~alive
            break
        betas.append(torch.where(alive, beta, torch.zeros_like(beta)))
        q = torch.where(alive.unsqueeze(1), w / beta.clamp_min(tiny).unsqueeze(1), torch.zeros_like(w))
    if iterations == dim:  # the whole space was spanned: the Ritz values are the eigenvalues
        converged = torch.ones_like(converged)
    return LanczosResult(lo, hi, iterations, converged)


@dataclass
class CurvatureEstimate:
    """Per-row curvature: the spectral norm always, and the value of the chosen ``method``."""

    spectral: torch.Tensor
    value: torch.Tensor
    iterations: int
    converged: torch.Tensor


def hessian_curvature(
    hvp: HVP,
    n_rows: int,
    dim: int,
    *,
    method: str = "spectral",
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    tol: float = POWER_TOLERANCE,
    max_iter: int = POWER_MAX_ITERATIONS,
    solver: str = DEFAULT_SOLVER,
) -> CurvatureEstimate:
    """Curvature of ``n_rows`` symmetric ``dim x dim`` operators given by ``hvp``.

    ``method="spectral"`` returns ``||H||_2``; ``method="negative"`` returns
    ``max(0, -lambda_min(H))``. With ``solver="lanczos"`` both come from one
    Lanczos run; with ``solver="power"`` from a power iteration, followed for
    "negative" by a shifted power iteration (skipped for rows whose dominant
    eigenvalue is already negative). Start vectors are drawn from
    ``generator``, so the result is reproducible.
    """
    if method not in CURVATURE_METHODS:
        raise ValueError(f"unknown curvature method {method!r}: use one of {CURVATURE_METHODS}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}: use one of {SOLVERS}")
    start = torch.randn(n_rows, dim, generator=generator, dtype=dtype, device=device)
    if solver == "lanczos":
        ritz = lanczos(hvp, start, tol=tol, max_iter=max_iter)
        spectral = torch.maximum(ritz.lambda_max.abs(), ritz.lambda_min.abs())
        value = spectral if method == "spectral" else (-ritz.lambda_min).clamp_min(0)
        return CurvatureEstimate(spectral, value, ritz.iterations, ritz.converged)
    first = power_iteration(hvp, start, tol=tol, max_iter=max_iter)
    spectral = first.estimate
    if method == "spectral":
        return CurvatureEstimate(spectral, spectral, first.iterations, first.converged)

    # Dominant eigenvalue already negative (Rayleigh quotient ~ -||H||) or H = 0: lambda_min is known.
    settled = (first.rayleigh <= -(1 - 10 * tol) * spectral) | (spectral == 0)
    lambda_min = torch.where(settled, -spectral, torch.zeros_like(spectral))
    iterations, converged = first.iterations, first.converged
    if not bool(settled.all()):
        start = torch.randn(n_rows, dim, generator=generator, dtype=dtype, device=device)
        second = power_iteration(hvp, start, shift=spectral, done=settled, tol=tol, max_iter=max_iter)
        # Both Rayleigh quotients are >= lambda_min; the smaller one is the tighter estimate.
        shifted = torch.minimum(second.rayleigh, first.rayleigh)
        lambda_min = torch.where(settled, lambda_min, shifted)
        iterations += second.iterations
        converged = converged & second.converged
    return CurvatureEstimate(spectral, (-lambda_min).clamp_min(0), iterations, converged)


def margin_curvatures(
    model: Model,
    points: torch.Tensor,
    predicted: int,
    targets: Sequence[int],
    *,
    method: str = "spectral",
    generator: torch.Generator,
    tol: float = POWER_TOLERANCE,
    max_iter: int = POWER_MAX_ITERATIONS,
    solver: str = DEFAULT_SOLVER,
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
        max_iter=max_iter,
        solver=solver,
    )
    return hessians, estimate


@dataclass
class CurvatureSamples:
    """What the second-order sampling pass keeps per target (index ``t`` of ``targets``).

    - ``maxima[i, t]``: largest curvature (of ``method``) in batch ``i``;
    - ``spectral_max[t]``: largest sampled Hessian spectral norm;
    - ``gradient_change[t]``: largest ``||grad g(x) - grad g(x0)||_2 / ||x - x0||_2``,
      a proven lower bound on the spectral norm somewhere in the ball;
    - ``curvature_lower_bound[t]``: largest ``2 r / ||x - x0||_2^2`` over the
      Taylor residuals ``r = g(x0) + grad g(x0).d - g(x)`` (their absolute
      value for "spectral"), a proven lower bound on the curvature measure
      somewhere in the ball;
    - ``gradient0``: margin gradients at ``x0``, ``(T, *x0.shape)``;
    - ``converged_share[t]``: share of sampled points whose power iteration converged;
    - ``zero_share``, ``nonfinite_share``, ``margin_varies``: as in
      :class:`~pytest_clever.gradients.GradientSamples` (for the masking check);
      ``hessian_nonfinite_share``: share of points with a non-finite curvature.
    """

    method: str
    maxima: torch.Tensor
    spectral_max: torch.Tensor
    gradient_change: torch.Tensor
    curvature_lower_bound: torch.Tensor
    gradient0: torch.Tensor
    converged_share: torch.Tensor
    iterations: int
    zero_share: float
    nonfinite_share: float
    hessian_nonfinite_share: float
    margin_varies: bool


def _rounding(dtype: torch.dtype) -> float:
    return ROUNDING_EPS * torch.finfo(dtype).eps


def sample_curvature_maxima(
    model: Model,
    x0: torch.Tensor,
    margins0: torch.Tensor,
    *,
    predicted: int,
    targets: Sequence[int],
    norm: float,
    radius: float,
    n_batches: int,
    batch_size: int,
    bounds: tuple[float, float] | None,
    generator: torch.Generator,
    chunk_size: int,
    method: str = "spectral",
    tol: float = POWER_TOLERANCE,
    max_iter: int = POWER_MAX_ITERATIONS,
    solver: str = DEFAULT_SOLVER,
) -> CurvatureSamples:
    """Sample ``n_batches * batch_size`` fresh points and reduce their curvature to batch maxima.

    Work happens in chunks of ``chunk_size`` points (times the number of
    targets in rows), so memory does not grow with the number of samples.
    """
    device, dtype = x0.device, x0.dtype
    n_targets = len(targets)
    total = n_batches * batch_size
    _, grad0 = margin_gradients(model, x0.unsqueeze(0), predicted, targets)
    grad0 = grad0[0].detach()  # (T, *shape)
    g0 = grad0.flatten(1)
    g0_norm = torch.linalg.vector_norm(g0, dim=1)
    eps = _rounding(dtype)

    maxima = torch.full((n_batches, n_targets), -math.inf, dtype=dtype, device=device)
    spectral_max = torch.zeros(n_targets, dtype=dtype, device=device)
    gradient_change = torch.zeros(n_targets, dtype=dtype, device=device)
    lower = torch.zeros(n_targets, dtype=dtype, device=device)
    converged = torch.zeros(n_targets, dtype=torch.long, device=device)
    zero_count = nonfinite_count = hessian_nonfinite = 0
    margin_varies = False
    iterations = 0

    for start in range(0, total, chunk_size):
        n = min(chunk_size, total - start)
        points = sample_ball(x0, n, norm, radius, generator, bounds)
        hessians, estimate = margin_curvatures(
            model, points, predicted, targets, method=method, generator=generator, tol=tol, max_iter=max_iter,
            solver=solver,
        )
        iterations = max(iterations, estimate.iterations)
        grads = hessians.grads.view(n, n_targets, -1)
        margins = hessians.margins.view(n, n_targets)
        value = estimate.value.view(n, n_targets)
        spectral = estimate.spectral.view(n, n_targets)

        finite = torch.isfinite(grads).all(dim=2)
        nonfinite_count += int((~finite).any(dim=1).sum())
        zero_count += int((grads == 0).all(dim=2).all(dim=1).sum())
        hessian_nonfinite += int((~torch.isfinite(value)).any(dim=1).sum())
        margin_varies = margin_varies or bool(((margins - margins0).abs() > eps * margins0.abs()).any())
        converged += estimate.converged.view(n, n_targets).sum(dim=0)

        batch_ids = torch.arange(start, start + n, device=device) // batch_size
        index = batch_ids.unsqueeze(1).expand(-1, n_targets)
        maxima.scatter_reduce_(0, index, value.nan_to_num(nan=math.inf), "amax")
        spectral_max = torch.maximum(spectral_max, spectral.nan_to_num(nan=0.0).amax(dim=0))

        delta = (points - x0).flatten(1)  # (n, d)
        dist = torch.linalg.vector_norm(delta, dim=1).unsqueeze(1)  # (n, 1)
        safe = dist.clamp_min(torch.finfo(dtype).tiny)
        # Mean value theorem: ||grad g(x) - grad g(x0)|| <= max ||H|| * ||x - x0||.
        change = torch.linalg.vector_norm(grads - g0, dim=2)
        change = change - eps * (torch.linalg.vector_norm(grads, dim=2) + g0_norm)
        gradient_change = torch.maximum(gradient_change, _masked_max(change / safe, dist))
        # Taylor: g(x) - g(x0) - grad g(x0).d = d^T H(xi) d / 2 for some xi on the segment.
        linear = delta @ g0.T  # (n, T)
        residual = margins - margins0 - linear
        if method == "spectral":
            residual = residual.abs()
        else:
            residual = -residual
        residual = residual - eps * (margins.abs() + margins0.abs() + linear.abs())
        lower = torch.maximum(lower, _masked_max(2 * residual / safe**2, dist))

    return CurvatureSamples(
        method=method,
        maxima=maxima,
        spectral_max=spectral_max,
        gradient_change=gradient_change,
        curvature_lower_bound=lower,
        gradient0=grad0,
        converged_share=converged.to(torch.float64) / total,
        iterations=iterations,
        zero_share=zero_count / total,
        nonfinite_share=nonfinite_count / total,
        hessian_nonfinite_share=hessian_nonfinite / total,
        margin_varies=margin_varies,
    )


def _masked_max(ratio: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Column maxima of ``ratio`` over rows with ``dist > 0``, ignoring NaN, at least 0."""
    ratio = torch.where(dist > 0, ratio, torch.zeros_like(ratio)).nan_to_num(nan=0.0)
    return ratio.amax(dim=0).clamp_min(0)


__all__ = [
    "CURVATURE_METHODS",
    "DEFAULT_SOLVER",
    "SOLVERS",
    "LanczosResult",
    "lanczos",
    "POWER_TOLERANCE",
    "POWER_MAX_ITERATIONS",
    "CurvatureEstimate",
    "CurvatureSamples",
    "MarginHessians",
    "PowerResult",
    "default_curvature_chunk",
    "hessian_curvature",
    "margin_curvatures",
    "power_iteration",
    "sample_curvature_maxima",
]
