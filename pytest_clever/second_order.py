"""Second-order CLEVER: exact gradient at x0, EVT bound on the curvature, Taylor radius.

For a twice-differentiable margin ``g`` (SPEC.md, "Second-order CLEVER"),
``g(x0 + d) >= g(x0) - a ||d||_p - M k_p^2 ||d||_p^2 / 2`` with
``a = ||grad g(x0)||_q`` and ``M`` bounding the curvature over the ball, so the
prediction cannot flip to ``j`` before the radius where that quadratic
reaches zero. ``M`` is the reverse Weibull end point of batch maxima of the
sampled curvature (:mod:`pytest_clever.curvature`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .curvature import CurvatureSamples
from .errors import NotTwiceDifferentiableError
from .evt import CONSTANT_MAXIMA, WEAK_PVALUE, fit_endpoint
from .norms import dual_norm
from .results import TargetScore

#: Sampled Hessians this many times smaller than the proven gradient change mean "piecewise linear".
FLAT_HESSIAN_RATIO = 1e-3


def norm_factor(norm: float, dim: int) -> float:
    """``k_p`` with ``||d||_2 <= k_p ||d||_p`` in ``dim`` dimensions (1 for p <= 2)."""
    return 1.0 if norm <= 2 else dim ** (0.5 - 1.0 / norm)


def second_order_radius(margin: float, gradient_norm: float, curvature: float) -> float:
    """The root ``(-a + sqrt(a^2 + 2 M g)) / M`` of ``g - a r - M r^2 / 2``, written without cancellation.

    Tends to ``g / a`` as ``M -> 0``; infinite when both ``a`` and ``M`` vanish.
    """
    denominator = gradient_norm + math.sqrt(gradient_norm**2 + 2.0 * curvature * margin)
    return 2.0 * margin / denominator if denominator > 0 else math.inf


def check_twice_differentiable(samples: CurvatureSamples, targets: Sequence[int]) -> None:
    """Raise :class:`NotTwiceDifferentiableError` for piecewise-linear models or non-finite Hessians.

    A ReLU/max-pool network has zero Hessian at every sampled point, yet its
    gradient changes across the ball; the change per unit distance is a
    proven lower bound on the Hessian norm somewhere in the ball, so sampled
    Hessians far below it cannot be an estimate.
    """
    if samples.hessian_nonfinite_share > 0:
        raise NotTwiceDifferentiableError(
            f"Hessian-vector products of the margins are NaN or infinite at "
            f"{samples.hessian_nonfinite_share:.0%} of the sampled points: second-order CLEVER "
            "needs a twice-differentiable model (softplus, tanh, GELU, SiLU); use order=1"
        )
    change = samples.gradient_change.double().cpu().tolist()
    seen = samples.spectral_max.double().cpu().tolist()
    flat = [(j, c, s) for j, c, s in zip(targets, change, seen) if c > 0 and s <= FLAT_HESSIAN_RATIO * c]
    if flat:
        j, c, s = flat[0]
        raise NotTwiceDifferentiableError(
            "second-order CLEVER needs a twice-differentiable model (softplus, tanh, GELU, SiLU): "
            f"the margin's Hessian is ~0 at every sampled point (largest spectral norm {s:.3g} for "
            f"target {j}) while its gradient changes across the ball (by at least {c:.3g} per unit "
            "distance) - the signature of a piecewise-linear network (ReLU, max-pool, ...). Its "
            "second-order score would collapse to g / ||grad g(x0)||, which guarantees nothing. "
            "Use order=1 for this model"
        )


def second_order_targets(
    samples: CurvatureSamples,
    targets: Sequence[int],
    margins: Sequence[float],
    *,
    norm: float,
    radius: float,
) -> dict[int, TargetScore]:
    """Fit the curvature end point and compute the capped second-order radius per target.

    ``lipschitz`` is reported as ``margin / radius_j`` (= ``a + M' r_j / 2``, the
    mean slope of the quadratic bound up to the score), so that the
    first-order identity ``score = min(margin / lipschitz, R)`` still holds.
    """
    check_twice_differentiable(samples, targets)
    dim = samples.gradient0[0].numel()
    k2 = norm_factor(norm, dim) ** 2
    grad_norms = torch.linalg.vector_norm(samples.gradient0.flatten(1).double(), ord=dual_norm(norm), dim=1).tolist()
    maxima = samples.maxima.double().cpu().numpy()
    lower = samples.curvature_lower_bound.double().cpu().tolist()
    converged = samples.converged_share.cpu().tolist()
    per_target: dict[int, TargetScore] = {}
    for t, j in enumerate(targets):
        fit = fit_endpoint(maxima[:, t])
        curvature = max(fit.endpoint, 0.0)
        reach = second_order_radius(margins[t], grad_norms[t], curvature * k2)
        score = min(reach, radius)
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
            power_iterations=int(samples.iterations),
            power_converged=float(converged[t]),
        )
    return per_target


def second_order_notes(per_target: dict[int, TargetScore], deciding: int) -> tuple[str, ...]:
    """Human-readable caveats about the deciding target's curvature estimate."""
    s = per_target[deciding]
    notes = []
    if s.curvature_method == "negative" and s.curvature == 0:
        notes.append(
            f"target {deciding}: no sampled point shows negative curvature, so the score is "
            "g / ||grad g(x0)||: trustworthy only if the margin really is convex in the ball "
            "(curvature='spectral' gives a bound that does not rely on it)"
        )
    elif s.fit_method == "max" and s.fit_reason != CONSTANT_MAXIMA:
        notes.append(
            f"target {deciding}: no trustworthy Weibull fit ({s.fit_reason}); the sample maximum "
            f"{s.curvature:.4g} was used as curvature estimate (the score may be too high: "
            "raise n_batches/batch_size)"
        )
    elif s.fit_method == "weibull" and s.ks_pvalue < WEAK_PVALUE:
        notes.append(
            f"target {deciding}: weak Weibull fit of the curvature (KS p-value {s.ks_pvalue:.2g}); "
            "raise n_batches/batch_size for a steadier estimate"
        )
    if s.power_converged < 1:
        notes.append(
            f"target {deciding}: the eigenvalue solver stopped at its cap of {s.power_iterations} "
            f"Hessian-vector products before converging at {1 - s.power_converged:.0%} of the "
            "sampled points; their curvature may be underestimated"
        )
    inconsistent = [j for j, t in per_target.items() if not t.consistent]
    if inconsistent:
        worst = max(inconsistent, key=lambda j: per_target[j].curvature_lower_bound / max(per_target[j].curvature, 1e-300))
        t = per_target[worst]
        notes.append(
            f"target {worst}: the samples prove the curvature reaches at least "
            f"{t.curvature_lower_bound:.4g}, above the estimate {t.curvature:.4g}; the score "
            "overestimates robustness"
        )
    return tuple(notes)


__all__ = [
    "check_twice_differentiable",
    "norm_factor",
    "second_order_notes",
    "second_order_radius",
    "second_order_targets",
]
