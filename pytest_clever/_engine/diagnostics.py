"""What can make a score untrustworthy, said once for both orders.

- :func:`check_masking`: masked or non-finite gradients (both orders), with
  the BPDA help text;
- :func:`check_twice_differentiable`: a piecewise-linear model asked for a
  second-order score;
- :func:`score_notes`: the one ladder of caveats attached to a result (no
  trustworthy fit / weak fit / solver cap / inconsistent estimate).

The rules themselves (when a fit is weak, when an estimate is inconsistent)
live on :class:`~pytest_clever.stats.results.TargetScore`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pytest_clever._engine.gradients import Model, input_reaches_output
from pytest_clever._engine.maxima import SampleMaxima
from pytest_clever.errors import GradientMaskingError, NotTwiceDifferentiableError, see
from pytest_clever.stats.results import TargetScore
from pytest_clever.stats.screening import ScreenResult

#: Share of sampled points with all-zero gradients that signals masking.
MASKED_SHARE = 0.5
#: Sampled Hessians this many times smaller than the proven gradient change mean "piecewise linear".
FLAT_HESSIAN_RATIO = 1e-3

#: How to score the network behind a non-differentiable transform, shown in masking errors.
BPDA_FIX = (
    "\nTo score the network behind a non-differentiable input transform T, wrap T in BPDA: it keeps "
    "T in the forward pass and passes the gradient straight through it (or through a smooth "
    "surrogate):\n"
    "    from pytest_clever import BPDA\n"
    "    defended = nn.Sequential(BPDA(T), net)  # or BPDA(T, backward=smooth_version_of_T)\n"
    "    clever_score(defended, x, radius=..., bounds=...)"
)


def check_masking(sampled: SampleMaxima, model: Model, x0: torch.Tensor) -> None:
    """Raise :class:`GradientMaskingError` when the sampled gradients cannot be trusted.

    Any non-finite gradient poisons the batch maxima, so it is fatal at any
    share; all-zero gradients are fatal at ``MASKED_SHARE`` of the points when
    the margin visibly changes (a flat model is not masked, only constant).
    """
    if sampled.nonfinite_share > 0:
        raise GradientMaskingError(
            f"margin gradients are NaN or infinite at {sampled.nonfinite_share:.0%} of the sampled "
            "points: the model (or an input transform) is not differentiable there -- e.g. sqrt, "
            "log or a division at 0, a custom autograd function, or a transform that returns NaN. "
            "CLEVER cannot estimate a Lipschitz constant from them" + see("how-to/troubleshooting.md") + "." + BPDA_FIX
        )
    if sampled.zero_share >= MASKED_SHARE and sampled.margin_varies:
        evidence = (
            f"margin gradients are exactly zero at {sampled.zero_share:.0%} of the sampled points, yet "
            f"the margin changes across the ball (at a rate of at least {sampled.steepest_slope:.3g} "
            "per unit of distance)"
        )
        if not input_reaches_output(model, x0):
            cause = (
                "the model's output is cut off from its input in autograd's graph: part of the "
                "forward pass runs outside torch autograd (numpy, PIL or scipy, .detach(), .item(), "
                "torch.no_grad() inside forward), so every gradient reads as zero."
            )
        else:
            cause = (
                "gradients are masked by a piecewise-constant step in the forward pass (rounding, "
                "quantisation, bit-depth reduction, JPEG compression, thresholding), whose derivative "
                "is zero almost everywhere."
            )
        raise GradientMaskingError(
            f"{evidence}: {cause} CLEVER would report a meaningless, too large score"
            + see("how-to/troubleshooting.md")
            + "."
            + BPDA_FIX
        )


def check_twice_differentiable(
    targets: Sequence[int],
    *,
    hessian_nonfinite_share: float,
    gradient_change: Sequence[float],
    spectral_max: Sequence[float],
) -> None:
    """Raise :class:`NotTwiceDifferentiableError` for piecewise-linear models or non-finite Hessians.

    A ReLU/max-pool network has zero Hessian at every sampled point, yet its
    gradient changes across the ball; the change per unit distance
    (``gradient_change``) is a proven lower bound on the Hessian norm
    somewhere in the ball, so sampled Hessians (``spectral_max``) far below
    it cannot be an estimate.
    """
    if hessian_nonfinite_share > 0:
        raise NotTwiceDifferentiableError(
            f"Hessian-vector products of the margins are NaN or infinite at "
            f"{hessian_nonfinite_share:.0%} of the sampled points: second-order CLEVER "
            "needs a twice-differentiable model (softplus, tanh, GELU, SiLU); use order=1"
        )
    flat = [
        (j, c, s)
        for j, c, s in zip(targets, gradient_change, spectral_max, strict=True)
        if c > 0 and s <= FLAT_HESSIAN_RATIO * c
    ]
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


def _estimate(t: TargetScore, order: int) -> tuple[float, float]:
    """The EVT estimate of a target and the lower bound the samples prove for it."""
    if order == 2:
        return t.curvature, t.curvature_lower_bound
    return t.lipschitz, t.lipschitz_lower_bound


def score_notes(per_target: dict[int, TargetScore], deciding: int, *, radius: float, order: int) -> tuple[str, ...]:
    """Human-readable caveats about the deciding target's estimate, and the consistency check."""
    s = per_target[deciding]
    estimate, _ = _estimate(s, order)
    what = "curvature" if order == 2 else "Lipschitz"
    notes = []
    if order == 2 and s.curvature_method == "negative" and s.curvature == 0:
        notes.append(
            f"target {deciding}: no sampled point shows negative curvature, so the score is "
            "g / ||grad g(x0)||: trustworthy only if the margin really is convex in the ball "
            "(curvature='spectral' gives a bound that does not rely on it)"
        )
    elif s.weak and s.fit_method == "max":
        notes.append(
            f"target {deciding}: no trustworthy Weibull fit ({s.fit_reason}); the sample maximum "
            f"{estimate:.4g} was used as {what} estimate (the score may be too high"
            + (f", down to {s.interval[0]:.4g}" if s.interval is not None else "")
            + ": raise n_batches/batch_size)"
            + see("how-to/troubleshooting.md")
        )
    elif s.weak:
        of = " of the curvature" if order == 2 else ""
        notes.append(
            f"target {deciding}: weak Weibull fit{of} (KS p-value {s.ks_pvalue:.2g}); "
            "raise n_batches/batch_size for a steadier estimate" + see("how-to/troubleshooting.md")
        )
    if order == 2 and s.solver_converged < 1:
        notes.append(
            f"target {deciding}: the eigenvalue solver stopped at its cap of {s.solver_steps} "
            f"Hessian-vector products before converging at {1 - s.solver_converged:.0%} of the "
            "sampled points; their curvature may be underestimated"
        )
    inconsistent = _inconsistency_note(per_target, s.score, radius, order)
    if inconsistent:
        notes.append(inconsistent)
    return tuple(notes)


#: The start of :func:`screen_notes`' note: it states what was done, so it is recorded, not warned.
SCREEN_NOTE = "screened out"


def is_screen_note(note: str) -> bool:
    """Whether ``note`` is :func:`screen_notes`' (recorded, not warned about)."""
    return note.startswith(SCREEN_NOTE)


def screen_notes(screened: ScreenResult | None, targets: Sequence[int]) -> tuple[str, ...]:
    """What the screening round did: how many targets it screened out, after how many points, and why."""
    if screened is None:
        return ()
    return (
        f"{SCREEN_NOTE} {len(screened.screened)} of {len(targets)} targets after {screened.points} points: "
        f"their scores' {screened.level:.1%} lower bounds exceed {screened.best:.6g}, a certain upper bound "
        "of the minimum (fit_method 'screened'; screen='off' fits every target)",
    )


def _consistent_score(per_target: dict[int, TargetScore], radius: float) -> float:
    """The first-order score with every Lipschitz estimate raised to the proven lower bound where that is higher."""
    scores = []
    for t in per_target.values():
        lipschitz = max(t.lipschitz, t.lipschitz_lower_bound)
        scores.append(min(t.margin / lipschitz, radius) if lipschitz > 0 else radius)
    return min(scores)


def _inconsistency_note(per_target: dict[int, TargetScore], score: float, radius: float, order: int) -> str | None:
    """Say by how much the samples prove the estimate too low, and what that does to the score."""
    inconsistent = [j for j, t in per_target.items() if not t.consistent]
    if not inconsistent:
        return None

    def excess(j: int) -> float:
        estimate, proven = _estimate(per_target[j], order)
        return proven / estimate if estimate > 0 else math.inf

    worst = max(inconsistent, key=excess)
    estimate, proven = _estimate(per_target[worst], order)
    if order == 2:
        return (
            f"target {worst}: the samples prove the curvature reaches at least "
            f"{proven:.4g}, above the estimate {estimate:.4g}; the score "
            "overestimates robustness"
        )
    proof = (
        f"inconsistent estimate, target {worst}: the sampled margins prove the local Lipschitz constant "
        f"is at least {proven:.4g}, {excess(worst):.2f}x the estimate {estimate:.4g} "
        "(the samples missed the steepest region, or the fit extrapolated too little)"
    )
    corrected = _consistent_score(per_target, radius)
    if corrected >= score:
        return f"{proof}; the score {score:.4g} is decided elsewhere and not affected"
    return (
        f"{proof}; the score {score:.4g} is an overestimate: a Lipschitz estimate consistent with the "
        f"samples puts it at {corrected:.4g} or lower, at least {score / corrected:.2f}x lower (raise "
        "n_batches/batch_size, or check with an attack)"
    )


__all__ = [
    "BPDA_FIX",
    "MASKED_SHARE",
    "check_masking",
    "check_twice_differentiable",
    "SCREEN_NOTE",
    "is_screen_note",
    "score_notes",
    "screen_notes",
]
