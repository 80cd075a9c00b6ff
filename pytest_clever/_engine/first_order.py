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

import torch

from pytest_clever._engine.compiled import compile_model, run_compiled
from pytest_clever._engine.gradients import margin_gradient_norms, targets_per_pass
from pytest_clever._engine.maxima import ChunkValues, MaximaRounds, Problem, SampleMaxima, default_chunk_size
from pytest_clever._engine.memory import bytes_per_row
from pytest_clever.core import progress
from pytest_clever.core.norms import dual_norm
from pytest_clever.core.validation import Settings
from pytest_clever.stats.evt import endpoint_bracket, fit_endpoint
from pytest_clever.stats.radius import first_order_score
from pytest_clever.stats.results import TargetScore

#: Working copies per point, target alive at once and input element: the gradients and their autograd buffers.
GRADIENT_COPIES = 2


@dataclass
class GradientSamples:
    """The loop's batch maxima of dual-norm margin gradients (``sampled.maxima[i, t]``) and sanity statistics."""

    sampled: SampleMaxima


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


def rounds(problem: Problem, settings: Settings) -> MaximaRounds:
    """The resumable sampling loop of ``||grad g_j||_q`` (``MaximaRounds``): nothing is sampled until ``extend``."""
    model, x0, predicted, targets = problem.model, problem.x0, problem.predicted, problem.targets
    dual = dual_norm(settings.norm)
    target_index = torch.as_tensor(list(targets), device=x0.device)

    block = targets_per_pass(len(targets), x0)
    sampled = compile_model(model) if problem.torch_compile else None

    def norms_of(points: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        if sampled is None:
            return margin_gradient_norms(model, points, predicted, targets, dual, block)
        return run_compiled(
            functools.partial(margin_gradient_norms, sampled),
            functools.partial(margin_gradient_norms, model),
            points,
            predicted,
            targets,
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

    chunk_size = problem.chunk_size or chunk_size_for(len(targets), x0, problem)
    return MaximaRounds(gradient_norms, x0, problem.margins0, settings, seed=problem.seed, chunk_size=chunk_size)


#: ``TargetScore.fit_method`` of a target whose fit was skipped: its bracket shows it cannot decide the minimum.
UNFITTED = "unfitted"


def score_targets(
    samples: GradientSamples, targets: Sequence[int], margins: Sequence[float], settings: Settings
) -> dict[int, TargetScore]:
    """Fit the Lipschitz end point and score ``min(margin / L, R)`` per target, fitting only targets that can decide.

    Before any fit each target's end point is bracketed (:func:`~pytest_clever.stats.evt.endpoint_bracket`),
    hence its score: at least ``margin / upper``. Targets are fitted in order of that
    lower bound; once it exceeds the smallest fitted score, no later target can
    attain (or tie) the minimum, so the rest are recorded unfitted (``fit_method``
    ``"unfitted"``, ``lipschitz`` the bracket's upper end, ``score`` its lower bound).
    The deciding target and score are those of fitting every target.
    """
    maxima = samples.sampled.maxima.double().cpu().numpy()
    lower = samples.sampled.slopes.double().cpu().tolist()
    _, highest = endpoint_bracket(maxima)
    radius = settings.radius
    # The score falls as L grows (margins at x0 are >= 0 for the predicted class);
    # a negative or NaN margin gets no bound and is always fitted.
    floor = [
        first_order_score(m, h, radius) if m >= 0 else -math.inf for m, h in zip(margins, highest.tolist(), strict=True)
    ]
    order = sorted(range(len(targets)), key=lambda t: (floor[t], targets[t]))
    best = math.inf
    per_target: dict[int, TargetScore] = {}
    for t in order:
        j = targets[t]
        if floor[t] > best:  # strictly: an equal score could still win the tie on the class index
            per_target[j] = TargetScore(
                target=j,
                score=floor[t],
                margin=margins[t],
                lipschitz=float(highest[t]),
                lipschitz_lower_bound=lower[t],
                sample_max=float(maxima[:, t].max()),
                fit_method=UNFITTED,
                shape=math.nan,
                loc=math.nan,
                scale=math.nan,
                ks_statistic=math.nan,
                ks_pvalue=math.nan,
                fit_reason=f"not fitted: cannot decide the minimum (score >= {floor[t]:.6g} > {best:.6g})",
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
    "UNFITTED",
    "GradientSamples",
    "chunk_size_for",
    "rounds",
    "sample_targets",
    "score_targets",
]
