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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pytest_clever._engine.lanczos import (
    HVP,
    MAX_STEPS,
    PATIENCE,
    PATIENCE_SHARE,
    RESIDUAL_TOLERANCE,
    TOLERANCE,
    Restrict,
    RitzState,
    lanczos,
    unit_rows,
)
from pytest_clever.core.validation import CURVATURE_METHODS
from pytest_clever.errors import NotTwiceDifferentiableError

Model = Callable[[torch.Tensor], torch.Tensor]


class MarginHessians:
    """Margin gradients of a chunk of points for every target, with their graph kept for HVPs.

    ``rows`` holds point ``i`` for target ``t`` at row ``i * T + t``;
    ``margins``, ``logit_scale`` (``|f_c| + |f_j|``) and ``grads`` (flattened
    to ``(rows, d)``) follow that order.
    """

    def __init__(self, model: Model, points: torch.Tensor, predicted: int, targets: Sequence[int]) -> None:
        n_targets = len(targets)
        target_rows = torch.as_tensor(list(targets), device=points.device).repeat(len(points))
        self._build(model, points.detach().repeat_interleave(n_targets, dim=0), predicted, target_rows)
        self.margins = self._margins.detach()
        self.logit_scale = self._logit_scale.detach()
        self.grads = self._grads.detach().flatten(1)

    def _build(self, model: Model, rows: torch.Tensor, predicted: int, target_rows: torch.Tensor) -> None:
        self.model, self.predicted, self.target_rows = model, predicted, target_rows
        self.rows = rows.requires_grad_(True)
        logits = model(self.rows)
        index = torch.arange(len(self.rows), device=rows.device)
        own, other = logits[index, predicted], logits[index, target_rows]
        margins = own - other
        (grads,) = torch.autograd.grad(margins.sum(), self.rows, create_graph=True, allow_unused=True)
        self._grads = torch.zeros_like(self.rows) if grads is None else grads
        self._margins, self._logit_scale = margins, own.abs() + other.abs()

    def restrict(self, rows: torch.Tensor) -> HVP:
        """The HVP of only the given rows (a fresh, smaller double-backward graph).

        Rebuilding costs about one product on those rows; ``lanczos`` calls it
        once most rows have stopped, as every product otherwise costs the
        whole chunk. It frees this object's own graph first (only ``restrict``
        works afterwards), and ``lanczos`` drops the previous smaller operator
        before the next rebuild, so that two graphs never coexist.
        """
        self._free_graph()  # this graph is done with: free it before building the next
        smaller = object.__new__(MarginHessians)
        smaller._build(self.model, self.rows.detach()[rows], self.predicted, self.target_rows[rows])
        return smaller.hvp

    def _free_graph(self) -> None:
        """Drop every reference to the graph, keeping the values (the margins hold its forward half)."""
        self._grads, self._margins, self._logit_scale = (
            self._grads.detach(),
            self._margins.detach(),
            self._logit_scale.detach(),
        )

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
    """Per-row curvature: the spectral norm always, and the value of the chosen ``method``.

    ``steps``: the most Lanczos steps a row took; ``row_steps`` each row's;
    ``products``: per-row Hessian-vector products computed (see ``LanczosResult``).
    """

    spectral: torch.Tensor
    value: torch.Tensor
    steps: int
    converged: torch.Tensor
    row_steps: torch.Tensor
    products: int


@dataclass(frozen=True)
class SolverOptions:
    """How Lanczos runs per row (``lanczos.py``).

    ``prune``: stop rows that cannot be their batch's maximum
    (:func:`batch_max_rule`); ``warm``: start each row from the random vector
    plus the extreme Ritz vectors of its margin's Hessian at ``x0``
    (:func:`warm_start`; no pruning then, as the random-start bound needs a
    uniformly random start). The scoring path uses the defaults (cold);
    ``warm`` is for ``benchmarks/second_order_accuracy.py`` only: it saves
    steps, but a row then looks steady as soon as it holds ``x0``'s
    direction and can stop before its own, larger extreme shows (batch
    maxima 6.4% low on a softplus MLP, ``test_second_order_chunks.py``'s
    model, seed 3).
    """

    tol: float = TOLERANCE
    patience: int = PATIENCE
    patience_share: float = PATIENCE_SHARE
    residual_tol: float = RESIDUAL_TOLERANCE
    max_steps: int = MAX_STEPS
    prune: bool = True
    warm: bool = False


DEFAULT_SOLVER = SolverOptions()

#: Weight of each (unit) warm vector next to the unit random vector of a warm start.
WARM_WEIGHT = 1.0


def warm_start(random: torch.Tensor, warm: Sequence[torch.Tensor]) -> torch.Tensor:
    """Start vectors: each row's unit random vector plus ``WARM_WEIGHT`` times each unit warm vector of the row."""
    start = unit_rows(random)
    for vector in warm:
        start = start + WARM_WEIGHT * unit_rows(vector)
    return start


#: Chance, per row and check, that a row's upper bound is wrong (random-start bound below).
FAILURE_PROBABILITY = 1e-6


def krylov_slack(dim: int, steps: int, failure: float = FAILURE_PROBABILITY) -> float:
    """``eps`` with ``P(theta_k < (1 - eps) lambda_max) <= failure`` for ``steps`` Lanczos steps on a PSD matrix.

    Kuczynski & Wozniakowski (SIAM J. Matrix Anal. Appl. 13(4), 1992), Thm 4.2:
    with a uniformly random start vector that probability is at most
    ``1.648 sqrt(dim) exp(-sqrt(eps) (2 k - 1))``, whatever the spectrum.
    Returns ``inf`` when no ``eps < 1`` is guaranteed yet.
    """
    root = math.log(1.648 * math.sqrt(dim) / failure) / (2 * steps - 1)
    return root**2 if root < 1 else math.inf


def value_bounds(state: RitzState, method: str, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(lower, upper)`` bounds of the curvature value of ``method`` from a Lanczos state.

    The lower bound is proven (Ritz values are inner bounds). The upper one
    holds with probability at least ``1 - 3 FAILURE_PROBABILITY`` over the
    Gaussian start vector (uniform in direction), from :func:`krylov_slack`
    applied to ``H^2`` (``||H||_2^2 <= square_max / (1 - eps)``, after
    ``ceil(k / 2)`` effective steps), then, with ``U`` that bound, to the
    shifted PSD operators ``H + U`` and ``U - H`` after ``k`` steps:
    ``lambda_max <= (theta_max + eps U) / (1 - eps)`` and
    ``-lambda_min <= (eps U - theta_min) / (1 - eps)``.
    """
    lo, hi = state.lambda_min, state.lambda_max
    half, full = krylov_slack(dim, (state.step + 1) // 2), krylov_slack(dim, state.step)
    if math.isinf(half):
        upper_norm = torch.full_like(lo, math.inf)
    else:
        upper_norm = (state.square_max.clamp_min(0) / (1 - half)).sqrt()
    if not math.isinf(full):
        upper_max = (hi + full * upper_norm) / (1 - full)
        upper_neg = (full * upper_norm - lo) / (1 - full)
    else:
        upper_max = upper_neg = upper_norm
    if method == "spectral":
        lower = torch.maximum(hi.abs(), lo.abs())
        upper = torch.minimum(upper_norm, torch.maximum(upper_max, upper_neg))
    else:
        lower, upper = (-lo).clamp_min(0), torch.minimum(upper_norm, upper_neg).clamp_min(0)
    return lower, upper


def batch_max_rule(
    groups: torch.Tensor, floor: torch.Tensor, method: str, dim: int
) -> Callable[[RitzState], torch.Tensor]:
    """``may_stop`` for Lanczos when only each group's maximum value is used (the batch maxima).

    ``groups[row]`` is the row's group; ``floor[g]`` a value group ``g``
    already reached (earlier chunks; ``-inf`` if none). A row may stop once
    its upper bound (:func:`value_bounds`) is below the best lower bound of
    its group: it cannot be the maximum, and its own (lower) value cannot
    raise it. Stalling is no such proof (see ``lanczos.py``), so rows that
    merely look converged keep running.
    """

    def may_stop(state: RitzState) -> torch.Tensor:
        if math.isinf(krylov_slack(dim, (state.step + 1) // 2)):  # every upper bound is still infinite
            return torch.zeros_like(state.running)
        lower, upper = value_bounds(state, method, dim)
        best = floor.clone().scatter_reduce_(0, groups, lower.nan_to_num(nan=0.0), "amax")[groups]
        return upper < best

    return may_stop


def hessian_curvature(
    hvp: HVP,
    n_rows: int,
    dim: int,
    *,
    method: str = "spectral",
    generator: torch.Generator | Sequence[torch.Generator],
    dtype: torch.dtype,
    device: torch.device,
    solver: SolverOptions = DEFAULT_SOLVER,
    groups: torch.Tensor | None = None,
    floor: torch.Tensor | None = None,
    restrict: Restrict | None = None,
    warm: Sequence[torch.Tensor] = (),
) -> CurvatureEstimate:
    """Curvature of ``n_rows`` symmetric ``dim x dim`` operators given by ``hvp``.

    ``method="spectral"`` returns ``||H||_2``; ``method="negative"`` returns
    ``max(0, -lambda_min(H))``; both come from one Lanczos run, whose start
    vectors are drawn from ``generator`` (so the result is reproducible), or
    from one generator per point (``n_rows / len(generator)`` rows each).
    With ``groups`` (and optionally ``floor``, see :func:`batch_max_rule`)
    only each group's maximum is exact to the tolerance; other rows hold
    lower bounds of their value that stay below it. ``solver``: the Lanczos
    stopping rule (its ``prune`` and ``warm`` are the caller's: ``groups``,
    ``warm``). ``warm``: per-row vectors ``(n_rows, dim)`` added to the
    random start (:func:`warm_start`).
    """
    if method not in CURVATURE_METHODS:
        raise ValueError(f"unknown curvature method {method!r}: use one of {CURVATURE_METHODS}")
    if isinstance(generator, torch.Generator):
        start = torch.randn(n_rows, dim, generator=generator, dtype=dtype, device=device)
    else:
        rows = n_rows // len(generator)
        start = torch.cat([torch.randn(rows, dim, generator=g, dtype=dtype, device=device) for g in generator])
    if warm:
        start = warm_start(start, warm)
    may_stop = None
    if groups is not None:
        if floor is None:
            floor = torch.full((int(groups.max()) + 1,), -math.inf, dtype=dtype, device=device)
        may_stop = batch_max_rule(groups, floor, method, dim)
    ritz = lanczos(
        hvp,
        start,
        tol=solver.tol,
        max_steps=solver.max_steps,
        patience=solver.patience,
        patience_share=solver.patience_share,
        residual_tol=solver.residual_tol,
        may_stop=may_stop,
        restrict=restrict,
    )
    spectral = torch.maximum(ritz.lambda_max.abs(), ritz.lambda_min.abs())
    value = spectral if method == "spectral" else (-ritz.lambda_min).clamp_min(0)
    return CurvatureEstimate(spectral, value, ritz.steps, ritz.converged, ritz.row_steps, ritz.products)


def margin_curvatures(
    model: Model,
    points: torch.Tensor,
    predicted: int,
    targets: Sequence[int],
    *,
    method: str = "spectral",
    generator: torch.Generator | Sequence[torch.Generator],
    solver: SolverOptions = DEFAULT_SOLVER,
    groups: torch.Tensor | None = None,
    floor: torch.Tensor | None = None,
    warm: Sequence[torch.Tensor] = (),
) -> tuple[MarginHessians, CurvatureEstimate]:
    """Curvature of every margin ``f_c - f_j`` (j in ``targets``) at every point of ``points``.

    Returns the chunk's :class:`MarginHessians` (margins and gradients per
    row) and the :class:`CurvatureEstimate`; reshape rows with
    ``.view(len(points), len(targets))``. ``groups``/``floor``: see
    :func:`hessian_curvature` (rows stop once they cannot be their group's maximum).
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
        solver=solver,
        groups=groups,
        floor=floor,
        restrict=hessians.restrict,
        warm=warm,
    )
    return hessians, estimate


def ritz_vectors_at(
    model: Model, x0: torch.Tensor, predicted: int, targets: Sequence[int], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit Ritz vectors ``(T, d)`` of the smallest and largest eigenvalue of each margin's Hessian at ``x0``.

    The warm start of the sampled points' rows (:class:`SolverOptions`): one
    Lanczos run over the ``T`` rows of ``x0`` alone, so the vectors depend on
    the input and the seed, never on the chunking.
    """
    hessians = MarginHessians(model, x0.unsqueeze(0), predicted, targets)
    rows, dim = hessians.grads.shape
    start = torch.randn(rows, dim, generator=generator, dtype=x0.dtype, device=x0.device)
    ritz = lanczos(hessians.hvp, start, vectors=True)
    assert ritz.vector_min is not None and ritz.vector_max is not None
    return ritz.vector_min, ritz.vector_max


__all__ = [
    "CurvatureEstimate",
    "DEFAULT_SOLVER",
    "MarginHessians",
    "SolverOptions",
    "WARM_WEIGHT",
    "warm_start",
    "FAILURE_PROBABILITY",
    "batch_max_rule",
    "hessian_curvature",
    "krylov_slack",
    "margin_curvatures",
    "ritz_vectors_at",
    "value_bounds",
]
