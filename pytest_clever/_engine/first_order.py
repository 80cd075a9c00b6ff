"""First-order CLEVER: batch maxima of margin gradient norms, reverse Weibull end point, ``g / L``.

The same two steps as :mod:`pytest_clever._engine.second_order`: :func:`sample_targets`
runs the shared sampling loop (``maxima.py``) with this order's per-chunk
statistic, the dual norm of every margin gradient (``gradients.py``);
:func:`score_targets` fits the end point ``L_j`` per target and scores
``min(g_j(x0) / L_j, R)``, fitting only the targets that can decide the minimum.

Inputs are scored one at a time, never several in one forward/backward
pass: at the default 100 x 128 samples one input fills every chunk but its
last (chunks hold at most 1024 points on CPU, 4096 on a GPU), so sharing
passes could save at most one partial chunk per input, while each input has
its own predicted class and targets, and kernels may pick other algorithms
for another batch size (cuDNN does), which would break bit-identity with
scoring the input alone (benchmarks/bench_many_classes.py checks the latter
per device: ``same_bits_when_the_chunk_grows``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pytest_clever._engine.compiled import compile_model, run_compiled
from pytest_clever._engine.gradients import margin_gradient_norms, targets_per_pass
from pytest_clever._engine.maxima import ChunkValues, MaximaRounds, Problem, SampleMaxima, Screen, default_chunk_size
from pytest_clever._engine.memory import bytes_per_row
from pytest_clever.core import progress
from pytest_clever.core.norms import dual_norm
from pytest_clever.core.validation import DEFAULT_CONFIDENCE, SCREEN_POINTS, Settings
from pytest_clever.stats.evt import endpoint_bracket, fit_endpoint
from pytest_clever.stats.radius import first_order_score
from pytest_clever.stats.results import TargetScore
from pytest_clever.stats.screening import ScreenResult, screen_targets

#: Working copies per point, target alive at once and input element: the gradients and their autograd buffers.
GRADIENT_COPIES = 2


@dataclass
class GradientSamples:
    """The loop's batch maxima of dual-norm margin gradients (``sampled.maxima[i, t]``) and sanity statistics.

    ``screened``: the screening's decision (``stats.screening``) when the loop screened targets out.
    """

    sampled: SampleMaxima
    screened: ScreenResult | None = None


def chunk_size_for(n_targets: int, x0: torch.Tensor, problem: Problem | None = None) -> int:
    """Default points per chunk for the first-order pass on ``x0``'s device.

    Gradients are reduced to norms as they come (``margin_gradient_norms``), so
    only one block of targets' gradients is alive at a time. With ``problem``,
    the model's activation memory per point is measured too (``memory.py``).
    """
    alive = targets_per_pass(n_targets, x0)
    bytes_per_point = GRADIENT_COPIES * alive * x0.numel() * x0.element_size()
    if problem is not None:
        bytes_per_point += bytes_per_row(problem.model, x0, problem.predicted, problem.targets, order=1)
    return default_chunk_size(bytes_per_point, 1, x0.device)


def sample_targets(problem: Problem, settings: Settings) -> GradientSamples:
    """Batch maxima of ``||grad g_j||_q`` over ``n_batches * batch_size`` sampled points, every target at once."""
    loop = rounds(problem, settings)
    loop.extend(settings.n_batches)
    return GradientSamples(loop.sampled())


def rounds(
    problem: Problem, settings: Settings, *, screen: bool = False, confidence: float = DEFAULT_CONFIDENCE
) -> MaximaRounds:
    """The resumable sampling loop of ``||grad g_j||_q`` (``MaximaRounds``): nothing is sampled until ``extend``.

    With ``screen``, the first ``SCREEN_POINTS`` points are sampled for every target, then only for the
    targets ``stats.screening.screen_targets`` keeps (at ``confidence``, the score's level).
    """
    model, x0, predicted, targets = problem.model, problem.x0, problem.predicted, problem.targets
    dual = dual_norm(settings.norm)
    target_index = torch.as_tensor(list(targets), device=x0.device)

    sampled = list(targets)  # the targets whose gradients are computed (the survivors, after a screening)
    block = targets_per_pass(len(sampled), x0)
    compiled = compile_model(model) if problem.torch_compile else None

    def norms_of(points: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        if compiled is None:
            return margin_gradient_norms(model, points, predicted, sampled, dual, block)
        return run_compiled(
            functools.partial(margin_gradient_norms, compiled),
            functools.partial(margin_gradient_norms, model),
            points,
            predicted,
            sampled,
            dual,
            block,
        )

    def gradient_norms(points: torch.Tensor, first: int) -> ChunkValues:
        nonlocal block
        try:
            logits, norms = norms_of(points, block)  # norms: (n, T)
        except RuntimeError:
            if block == 1:
                raise
            # The model's backward cannot run under vmap (numpy inside a custom backward, say):
            # the loop can, with the same bits. A genuine model error is raised by the loop again.
            block = 1
            logits, norms = norms_of(points, block)
        own, other = logits[:, predicted : predicted + 1], logits[:, target_index]
        progress.points_done(len(points))
        return ChunkValues(values=norms, gradient_norms=norms, margins=own - other, logit_scale=own.abs() + other.abs())

    def narrow(survivors: Sequence[int]) -> None:
        nonlocal sampled, block
        sampled = [targets[t] for t in survivors]
        block = min(block, targets_per_pass(len(sampled), x0))  # the loop and batched passes give the same bits

    def decide(values: torch.Tensor) -> ScreenResult:
        margins = problem.margins0.double().cpu().numpy()
        return screen_targets(values.double().cpu().numpy(), margins, radius=settings.radius, confidence=confidence)

    chunk_size = problem.chunk_size or chunk_size_for(len(targets), x0, problem)
    screening = Screen(SCREEN_POINTS, decide, narrow) if screen else None
    return MaximaRounds(
        gradient_norms, x0, problem.margins0, settings, seed=problem.seed, chunk_size=chunk_size, screen=screening
    )


#: ``TargetScore.fit_method`` of a target whose fit was skipped: its bracket shows it cannot decide the minimum.
UNFITTED = "unfitted"
#: ``TargetScore.fit_method`` of a target screened out after the screening round (``stats.screening``).
SCREENED = "screened"


def not_fitted(
    target: int, score: float, margin: float, bound: float, lower_bound: float, method: str, reason: str, **extra: Any
) -> TargetScore:
    """A target that cannot decide the minimum, without a fit: its score's lower bound ``score`` from the
    Lipschitz upper bound ``bound`` (``method`` :data:`UNFITTED` or :data:`SCREENED`, ``reason`` why)."""
    nan = math.nan
    fields = dict(sample_max=nan, shape=nan, loc=nan, scale=nan, ks_statistic=nan, ks_pvalue=nan) | extra
    return TargetScore(
        target=target,
        score=float(score),
        margin=margin,
        lipschitz=float(bound),
        lipschitz_lower_bound=lower_bound,
        fit_method=method,
        fit_reason=reason,
        **fields,
    )


def screened_score(screened: ScreenResult, t: int, target: int, margin: float, lower_bound: float) -> TargetScore:
    """The score of column ``t`` screened out: its lower bound ``g / U`` from the screening points alone."""
    reason = (
        f"screened out after {screened.points} points: score >= {screened.lower[t]:.6g} at "
        f"{screened.level:.1%} > {screened.best:.6g}, a certain upper bound of the minimum"
    )
    bound, score = screened.lipschitz_bound[t], screened.lower[t]
    return not_fitted(target, score, margin, bound, lower_bound, SCREENED, reason, points=screened.points)


def score_targets(
    samples: GradientSamples, targets: Sequence[int], margins: Sequence[float], settings: Settings
) -> dict[int, TargetScore]:
    """Fit the Lipschitz end point and score ``min(margin / L, R)`` per target, fitting only targets that can decide.

    Before any fit each target's end point is bracketed (:func:`~pytest_clever.stats.evt.endpoint_bracket`),
    hence its score: at least ``margin / upper``. Targets are fitted in order of that
    lower bound; once it exceeds the smallest fitted score, no later target can
    attain (or tie) the minimum, so the rest are recorded unfitted (``fit_method``
    ``"unfitted"``, ``lipschitz`` the bracket's upper end, ``score`` its lower bound).
    The deciding target and score are those of fitting every target. Targets screened out
    (``samples.screened``) get :func:`screened_score` and take no part.
    """
    maxima = samples.sampled.maxima.double().cpu().numpy()
    lower = samples.sampled.slopes.double().cpu().tolist()
    screened = samples.screened
    per_target: dict[int, TargetScore] = {}
    kept = range(len(targets)) if screened is None else screened.survivors
    if screened is not None:
        for t in screened.screened:
            per_target[targets[t]] = screened_score(screened, t, targets[t], margins[t], lower[t])
    highest = dict(zip(kept, endpoint_bracket(maxima[:, list(kept)])[1].tolist(), strict=True))
    radius = settings.radius
    # The score falls as L grows (margins at x0 are >= 0 for the predicted class);
    # a negative or NaN margin gets no bound and is always fitted.
    floor = {t: first_order_score(margins[t], highest[t], radius) if margins[t] >= 0 else -math.inf for t in kept}
    order = sorted(kept, key=lambda t: (floor[t], targets[t]))
    best = math.inf
    for t in order:
        j = targets[t]
        if floor[t] > best:  # strictly: an equal score could still win the tie on the class index
            reason = f"not fitted: cannot decide the minimum (score >= {floor[t]:.6g} > {best:.6g})"
            bound, sample_max = highest[t], float(maxima[:, t].max())
            per_target[j] = not_fitted(
                j, floor[t], margins[t], bound, lower[t], UNFITTED, reason, sample_max=sample_max
            )
            continue
        fit = fit_endpoint(maxima[:, t])
        score = first_order_score(margins[t], fit.endpoint, radius)
        best = min(best, score)
        per_target[j] = TargetScore(
            target=j,
            score=float(score),
            margin=margins[t],
            lipschitz=float(fit.endpoint),
            lipschitz_lower_bound=lower[t],
            **fit.result_fields(),
        )
    return {j: per_target[j] for j in targets}


__all__ = [
    "GRADIENT_COPIES",
    "SCREENED",
    "UNFITTED",
    "GradientSamples",
    "chunk_size_for",
    "not_fitted",
    "rounds",
    "sample_targets",
    "score_targets",
]
