"""Second-order CLEVER: exact gradient at x0, EVT bound on the curvature, Taylor radius.

For a twice-differentiable margin ``g`` (docs/maths.md, "Second-order CLEVER"),
``g(x0 + d) >= g(x0) - a ||d||_p - M k_p^2 ||d||_p^2 / 2`` with
``a = ||grad g(x0)||_q`` and ``M`` bounding the curvature over the ball, so the
prediction cannot flip to ``j`` before the radius where that quadratic
reaches zero. The same two steps as :mod:`pytest_clever._engine.first_order`:
:func:`sample_targets` runs the shared sampling loop (``maxima.py``) with this
order's per-chunk statistic, the curvature of every margin
(``curvature.py``); :func:`score_targets` fits the end point ``M`` per
target and computes the radius.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pytest_clever._engine.curvature import DEFAULT_SOLVER, SolverOptions, margin_curvatures, ritz_vectors_at
from pytest_clever._engine.diagnostics import check_twice_differentiable
from pytest_clever._engine.gradients import Model, margin_gradients
from pytest_clever._engine.lanczos import MAX_STEPS
from pytest_clever._engine.maxima import (
    ACCELERATOR_MEMORY_SHARE,
    ChunkValues,
    Problem,
    SampleMaxima,
    default_chunk_size,
    masked_max,
    rounding,
    sample_maxima,
)
from pytest_clever._engine.memory import bytes_per_row
from pytest_clever._engine.sampling import point_generators
from pytest_clever.core import progress
from pytest_clever.core.norms import dual_norm
from pytest_clever.core.seeds import derive_seed
from pytest_clever.core.validation import Settings
from pytest_clever.stats.evt import fit_endpoint
from pytest_clever.stats.radius import second_order_radius
from pytest_clever.stats.target_score import TargetScore

#: Input-sized tensors per row besides the Lanczos basis (start vector, products, gradients).
HESSIAN_COPIES = 8
#: Each product walks the saved graph and allocates temporaries on top: sized so that the
#: peak RSS of a second-order run on bench_second_order.py's 3x32x32 ResNet stays in budget.
GRAPH_WORKSPACE = 3


def chunk_size_for(problem: Problem) -> int:
    """Default points per chunk for the second-order pass: each point is one row per target.

    A row costs its double-backward graph (measured, ``memory.py``), the
    Lanczos basis (up to ``MAX_STEPS`` input-sized vectors) and a few
    input-sized working copies. On an accelerator the budget is a share of
    its total memory (pass ``chunk_size`` when other processes hold much of it).
    """
    x0, n_targets = problem.x0, len(problem.targets)
    dim, element = x0.numel(), x0.element_size()
    graph = bytes_per_row(problem.model, x0, problem.predicted, problem.targets, order=2)
    row = GRAPH_WORKSPACE * graph + (min(MAX_STEPS, dim) + HESSIAN_COPIES) * dim * element
    budget = None
    if x0.device.type == "cuda":
        # A share of the device's total memory, not of its free memory: the default chunk (kept in the
        # results and compared between records) must not move with what other processes hold.
        _, total = torch.cuda.mem_get_info(x0.device)
        budget = int(ACCELERATOR_MEMORY_SHARE * total)
    return default_chunk_size(n_targets * row, n_targets, x0.device, budget)


def norm_factor(norm: float, dim: int) -> float:
    """``k_p`` with ``||d||_2 <= k_p ||d||_p`` in ``dim`` dimensions (1 for p <= 2)."""
    return 1.0 if norm <= 2 else dim ** (0.5 - 1.0 / norm)


@dataclass
class CurvatureSamples:
    """What the second-order pass keeps per target (index ``t`` of ``targets``).

    - ``sampled``: the loop's batch maxima of the curvature (of ``method``)
      and its masking statistics;
    - ``spectral_max[t]``: largest sampled Hessian spectral norm;
    - ``gradient_change[t]``: largest ``||grad g(x) - grad g(x0)||_2 / ||x - x0||_2``,
      a proven lower bound on the spectral norm somewhere in the ball;
    - ``curvature_lower_bound[t]``: largest ``2 r / ||x - x0||_2^2`` over the
      Taylor residuals ``r = g(x0) + grad g(x0).d - g(x)`` (their absolute
      value for "spectral"), a proven lower bound on the curvature measure
      somewhere in the ball;
    - ``gradient0``: margin gradients at ``x0``, ``(T, *x0.shape)``;
    - ``converged_share[t]``: share of sampled points whose Lanczos run converged;
      ``steps``: the most Lanczos steps a row took;
    - ``hessian_nonfinite_share``: share of points with a non-finite curvature;
    - the cost: ``chunk_size`` (points per chunk), ``hvp_per_point`` (per-row
      Hessian-vector products computed per sampled point, all targets together,
      those of stopped rows that share an operator with running ones
      included), ``steps_per_row`` (mean Lanczos steps per point and target).
    """

    method: str
    sampled: SampleMaxima
    spectral_max: torch.Tensor
    gradient_change: torch.Tensor
    curvature_lower_bound: torch.Tensor
    gradient0: torch.Tensor
    converged_share: torch.Tensor
    steps: int
    hessian_nonfinite_share: float
    chunk_size: int = 0
    hvp_per_point: float = math.nan
    steps_per_row: float = math.nan


class _CurvatureChunks:
    """The per-chunk statistic of second order, keeping its own lower bounds across chunks."""

    def __init__(
        self,
        model: Model,
        x0: torch.Tensor,
        margins0: torch.Tensor,
        predicted: int,
        targets: Sequence[int],
        method: str,
        seed: int,
        settings: Settings,
        solver: SolverOptions,
    ) -> None:
        self.model, self.x0, self.margins0, self.solver = model, x0, margins0, solver
        # Only batch maxima are fitted: Lanczos stops rows that cannot be their (batch, target)'s
        # maximum, given what earlier chunks of the batch reached (``best``); chunks arrive in order.
        self.batch_size = settings.batch_size
        self.best = torch.full((settings.n_batches * len(targets),), -math.inf, dtype=x0.dtype, device=x0.device)
        self.predicted, self.targets, self.method, self.seed = predicted, list(targets), method, seed
        _, grad0 = margin_gradients(model, x0.unsqueeze(0), predicted, targets)
        self.gradient0 = grad0[0].detach()  # (T, *shape)
        self.g0 = self.gradient0.flatten(1)
        self.g0_norm = torch.linalg.vector_norm(self.g0, dim=1)
        zeros = torch.zeros(len(targets), dtype=x0.dtype, device=x0.device)
        self.spectral_max, self.gradient_change, self.lower = zeros, zeros, zeros
        self.converged = torch.zeros(len(targets), dtype=torch.long, device=x0.device)
        self.hessian_nonfinite = torch.zeros((), dtype=torch.long, device=x0.device)
        self.steps, self.products = 0, 0
        self.row_steps = torch.zeros((), dtype=torch.long, device=x0.device)
        self.warm: tuple[torch.Tensor, ...] = ()
        if solver.warm:
            generator = torch.Generator(device=x0.device).manual_seed(derive_seed(seed, "warm start"))
            vector_min, vector_max = ritz_vectors_at(model, x0, predicted, self.targets, generator)
            self.warm = (vector_min,) if method == "negative" else (vector_min, vector_max)

    def __call__(self, points: torch.Tensor, first: int) -> ChunkValues:
        n, n_targets, eps = len(points), len(self.targets), rounding(self.x0.dtype)
        batch = torch.arange(first, first + n, device=points.device) // self.batch_size
        groups = (batch.unsqueeze(1) * n_targets + torch.arange(n_targets, device=points.device)).flatten()
        # One generator per point: the Lanczos start vectors do not depend on the chunking.
        generators = point_generators(self.seed, first, n, points.device)
        hessians, estimate = margin_curvatures(
            self.model,
            points,
            self.predicted,
            self.targets,
            method=self.method,
            generator=generators,
            solver=self.solver,
            groups=groups if self.solver.prune and not self.solver.warm else None,
            floor=self.best,
            warm=tuple(vectors.repeat(n, 1) for vectors in self.warm),  # row i * T + t: target t
        )
        self.best.scatter_reduce_(0, groups, estimate.value.nan_to_num(nan=0.0), "amax")
        self.steps = max(self.steps, estimate.steps)
        self.products += estimate.products
        self.row_steps += estimate.row_steps.sum()
        progress.points_done(n)
        grads = hessians.grads.view(n, n_targets, -1)
        margins = hessians.margins.view(n, n_targets)
        value = estimate.value.view(n, n_targets)
        grad_norms = torch.linalg.vector_norm(grads, dim=2)
        self.hessian_nonfinite += (~torch.isfinite(value)).any(dim=1).sum()
        self.converged += estimate.converged.view(n, n_targets).sum(dim=0)
        self.spectral_max = torch.maximum(
            self.spectral_max, estimate.spectral.view(n, n_targets).nan_to_num(nan=0.0).amax(dim=0)
        )

        delta = (points - self.x0).flatten(1)  # (n, d)
        dist = torch.linalg.vector_norm(delta, dim=1).unsqueeze(1)  # (n, 1)
        safe = dist.clamp_min(torch.finfo(self.x0.dtype).tiny)
        # Mean value theorem: ||grad g(x) - grad g(x0)|| <= max ||H|| * ||x - x0||.
        change = torch.linalg.vector_norm(grads - self.g0, dim=2) - eps * (grad_norms + self.g0_norm)
        self.gradient_change = torch.maximum(self.gradient_change, masked_max(change / safe, dist))
        # Taylor: g(x) - g(x0) - grad g(x0).d = d^T H(xi) d / 2 for some xi on the segment.
        linear = delta @ self.g0.T  # (n, T)
        residual = margins - self.margins0 - linear
        residual = residual.abs() if self.method == "spectral" else -residual
        residual = residual - eps * (margins.abs() + self.margins0.abs() + linear.abs())
        self.lower = torch.maximum(self.lower, masked_max(2 * residual / safe**2, dist))
        return ChunkValues(
            values=value,
            gradient_norms=grad_norms,
            margins=margins,
            logit_scale=hessians.logit_scale.view(n, n_targets),
        )


def sample_targets(
    problem: Problem, settings: Settings, *, curvature: str = "spectral", solver: SolverOptions = DEFAULT_SOLVER
) -> CurvatureSamples:
    """Batch maxima of the margins' curvature over ``n_batches * batch_size`` sampled points, every target at once."""
    x0 = problem.x0
    chunks = _CurvatureChunks(
        problem.model,
        x0,
        problem.margins0,
        problem.predicted,
        problem.targets,
        curvature,
        problem.seed,
        settings,
        solver,
    )
    chunk_size = problem.chunk_size or chunk_size_for(problem)
    sampled = sample_maxima(chunks, x0, problem.margins0, settings, seed=problem.seed, chunk_size=chunk_size)
    total = settings.n_batches * settings.batch_size
    return CurvatureSamples(
        method=curvature,
        sampled=sampled,
        spectral_max=chunks.spectral_max,
        gradient_change=chunks.gradient_change,
        curvature_lower_bound=chunks.lower,
        gradient0=chunks.gradient0,
        converged_share=chunks.converged.to(torch.float64) / total,
        steps=chunks.steps,
        hessian_nonfinite_share=float(chunks.hessian_nonfinite) / total,
        chunk_size=chunk_size,
        hvp_per_point=chunks.products / total,
        steps_per_row=float(chunks.row_steps) / (total * len(problem.targets)),
    )


def score_targets(
    samples: CurvatureSamples, targets: Sequence[int], margins: Sequence[float], settings: Settings
) -> dict[int, TargetScore]:
    """Fit the curvature end point and compute the capped second-order radius per target.

    ``lipschitz`` is reported as ``margin / radius_j`` (= ``a + M' r_j / 2``, the
    mean slope of the quadratic bound up to the score), so that the
    first-order identity ``score = min(margin / lipschitz, R)`` still holds.
    """
    check_twice_differentiable(
        targets,
        hessian_nonfinite_share=samples.hessian_nonfinite_share,
        gradient_change=samples.gradient_change.double().cpu().tolist(),
        spectral_max=samples.spectral_max.double().cpu().tolist(),
    )
    norm = settings.norm
    dim = samples.gradient0[0].numel()
    k2 = norm_factor(norm, dim) ** 2
    grad_norms = torch.linalg.vector_norm(samples.gradient0.flatten(1).double(), ord=dual_norm(norm), dim=1).tolist()
    maxima = samples.sampled.maxima.double().cpu().numpy()
    lower = samples.curvature_lower_bound.double().cpu().tolist()
    converged = samples.converged_share.cpu().tolist()
    per_target: dict[int, TargetScore] = {}
    for t, j in enumerate(targets):
        fit = fit_endpoint(maxima[:, t])
        curvature = max(fit.endpoint, 0.0)
        reach = second_order_radius(margins[t], grad_norms[t], curvature * k2)
        score = min(reach, settings.radius)
        per_target[j] = TargetScore(
            target=j,
            score=float(score),
            margin=margins[t],
            lipschitz=float(margins[t] / reach) if math.isfinite(reach) else 0.0,
            lipschitz_lower_bound=0.0,
            **fit.result_fields(),
            gradient_norm=float(grad_norms[t]),
            curvature=float(curvature),
            curvature_lower_bound=float(lower[t]),
            curvature_method=samples.method,
            solver_steps=int(samples.steps),
            solver_converged=float(converged[t]),
        )
    return per_target


__all__ = [
    "GRAPH_WORKSPACE",
    "HESSIAN_COPIES",
    "CurvatureSamples",
    "chunk_size_for",
    "norm_factor",
    "sample_targets",
    "score_targets",
    "second_order_radius",
]
