"""First-order CLEVER: batch maxima of margin gradient norms, reverse Weibull end point, ``g / L``.

The same two steps as :mod:`pytest_clever.second_order`: :func:`sample_targets`
runs the shared sampling loop (``maxima.py``) with this order's per-chunk
statistic, the dual norm of every margin gradient (``gradients.py``);
:func:`score_targets` fits the end point ``L_j`` per target and scores
``min(g_j(x0) / L_j, R)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .evt import fit_endpoint
from .gradients import margin_gradients
from .memory import bytes_per_row
from .maxima import ChunkValues, Problem, SampleMaxima, default_chunk_size, sample_maxima
from .norms import dual_norm
from .results import TargetScore
from .validation import Settings

#: Working copies per point, target and input element: the gradients and their autograd buffers.
GRADIENT_COPIES = 2


@dataclass
class GradientSamples:
    """The loop's batch maxima of dual-norm margin gradients (``sampled.maxima[i, t]``) and sanity statistics."""

    sampled: SampleMaxima


def chunk_size_for(n_targets: int, x0: torch.Tensor, problem: Problem | None = None) -> int:
    """Default points per chunk for the first-order pass on ``x0``'s device.

    With ``problem``, the model's activation memory per point is measured
    (``memory.py``); without, only the input-sized tensors are counted.
    """
    bytes_per_point = GRADIENT_COPIES * n_targets * x0.numel() * x0.element_size()
    if problem is not None:
        bytes_per_point += bytes_per_row(problem.model, x0, problem.predicted, problem.targets, order=1)
    return default_chunk_size(bytes_per_point, 1, x0.device)


def sample_targets(problem: Problem, settings: Settings) -> GradientSamples:
    """Batch maxima of ``||grad g_j||_q`` over ``n_batches * batch_size`` sampled points, every target at once."""
    model, x0, predicted, targets = problem.model, problem.x0, problem.predicted, problem.targets
    dual = dual_norm(settings.norm)
    target_index = torch.as_tensor(list(targets), device=x0.device)

    def gradient_norms(points: torch.Tensor) -> ChunkValues:
        logits, grads = margin_gradients(model, points, predicted, targets)
        norms = torch.linalg.vector_norm(grads.flatten(2), ord=dual, dim=2)  # (n, T)
        own, other = logits[:, predicted : predicted + 1], logits[:, target_index]
        return ChunkValues(values=norms, gradient_norms=norms, margins=own - other, logit_scale=own.abs() + other.abs())

    chunk_size = problem.chunk_size or chunk_size_for(len(targets), x0, problem)
    sampled = sample_maxima(gradient_norms, x0, problem.margins0, settings, generator=problem.generator, chunk_size=chunk_size)
    return GradientSamples(sampled)


def score_targets(
    samples: GradientSamples, targets: Sequence[int], margins: Sequence[float], settings: Settings
) -> dict[int, TargetScore]:
    """Fit the Lipschitz end point and score ``min(margin / L, R)`` per target."""
    maxima = samples.sampled.maxima.double().cpu().numpy()
    lower = samples.sampled.slopes.double().cpu().tolist()
    per_target: dict[int, TargetScore] = {}
    for t, j in enumerate(targets):
        fit = fit_endpoint(maxima[:, t])
        lipschitz = fit.endpoint
        score = min(margins[t] / lipschitz, settings.radius) if lipschitz > 0 else settings.radius
        per_target[j] = TargetScore(
            target=j,
            score=float(score),
            margin=margins[t],
            lipschitz=float(lipschitz),
            lipschitz_lower_bound=lower[t],
            **fit.result_fields(),
        )
    return per_target


__all__ = ["GRADIENT_COPIES", "GradientSamples", "chunk_size_for", "sample_targets", "score_targets"]
