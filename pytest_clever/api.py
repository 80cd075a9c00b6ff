"""The public entry points: :func:`clever_score` and :func:`clever_scores`.

Data flow: validate settings -> borrow the model -> resolve the input and
its prediction -> sample the ball and collect batch maxima of margin
gradient norms -> fit the reverse Weibull end point per target -> score ->
result. The numerics live in ``sampling``, ``gradients`` and ``evt``; with
``order=2`` the samples' Hessian norms replace the gradient norms
(``curvature``) and the score is the second-order radius (``second_order``).
"""

from __future__ import annotations

import functools
import math
import secrets
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from .errors import CleverError, GradientMaskingError, InvalidInputError, WeakFitWarning, see
from .evt import CONSTANT_MAXIMA, WEAK_PVALUE, fit_endpoint
from .curvature import CURVATURE_METHODS, CurvatureSamples, default_curvature_chunk, sample_curvature_maxima
from .gradients import GradientSamples, default_chunk_size, input_reaches_output, sample_gradient_maxima
from .model_state import borrowed_model, model_device_and_dtype
from .norms import dual_norm
from .results import CleverReport, CleverResult, TargetScore
from .second_order import second_order_notes, second_order_targets
from .validation import (
    Settings,
    as_input_tensor,
    check_in_bounds,
    check_prediction,
    check_settings,
    resolve_single_input,
    warn_if_probabilities,
)

if TYPE_CHECKING:
    from concurrent.futures import Executor

#: Defaults sized so a 10-class, 64-input model scores in about a second on
#: 2 CPU cores. The paper's high-fidelity settings are n_batches=500,
#: batch_size=1024 (about 40x the work).
DEFAULT_N_BATCHES = 100
DEFAULT_BATCH_SIZE = 128
#: Share of sampled points with all-zero gradients that signals masking.
MASKED_SHARE = 0.5


def _resolve_device(model: Callable, x: torch.Tensor, device: Any) -> tuple[torch.device, torch.dtype]:
    model_device, model_dtype = model_device_and_dtype(model)
    if device is not None:
        try:
            target = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise InvalidInputError(f"unknown device {device!r}") from exc
    else:
        target = model_device or x.device
    return target, model_dtype or x.dtype


def _derive_seed(seed: int, index: int) -> int:
    """Independent, reproducible per-input seeds from one run seed."""
    return int(np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1, np.uint64)[0] >> 1)


def _check_curvature(curvature: Any) -> None:
    if curvature not in CURVATURE_METHODS:
        raise InvalidInputError(f"curvature must be one of {', '.join(map(repr, CURVATURE_METHODS))}, got {curvature!r}")


#: How to score the network behind a non-differentiable transform, shown in masking errors.
BPDA_FIX = (
    "\nTo score the network behind a non-differentiable input transform T, wrap T in BPDA: it keeps "
    "T in the forward pass and passes the gradient straight through it (or through a smooth "
    "surrogate):\n"
    "    from pytest_clever import BPDA\n"
    "    defended = nn.Sequential(BPDA(T), net)  # or BPDA(T, backward=smooth_version_of_T)\n"
    "    clever_score(defended, x, radius=..., bounds=...)"
)


def _check_masking(samples: GradientSamples | CurvatureSamples, model: Callable, x0: torch.Tensor) -> None:
    """Raise :class:`GradientMaskingError` when the sampled gradients cannot be trusted.

    Any non-finite gradient poisons the batch maxima, so it is fatal at any
    share; all-zero gradients are fatal at ``MASKED_SHARE`` of the points when
    the margin visibly changes (a flat model is not masked, only constant).
    """
    if samples.nonfinite_share > 0:
        raise GradientMaskingError(
            f"margin gradients are NaN or infinite at {samples.nonfinite_share:.0%} of the sampled "
            "points: the model (or an input transform) is not differentiable there -- e.g. sqrt, "
            "log or a division at 0, a custom autograd function, or a transform that returns NaN. "
            "CLEVER cannot estimate a Lipschitz constant from them"
            + see("Troubleshooting") + "." + BPDA_FIX
        )
    if samples.zero_share >= MASKED_SHARE and samples.margin_varies:
        # First-order samples also carry the proven slope of the margin (second-order ones do not).
        slopes = getattr(samples, "lower_bounds", None)
        rate = "" if slopes is None else (
            f" (at a rate of at least {float(slopes.max()):.3g} per unit of distance)"
        )
        evidence = (
            f"margin gradients are exactly zero at {samples.zero_share:.0%} of the sampled points, yet "
            f"the margin changes across the ball{rate}"
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
            + see("Troubleshooting") + "." + BPDA_FIX
        )


def _first_order_targets(
    model: Callable,
    x0: torch.Tensor,
    margins0: torch.Tensor,
    settings: Settings,
    *,
    predicted: int,
    targets: list[int],
    generator: torch.Generator,
    chunk_size: int | None,
) -> tuple[dict[int, TargetScore], torch.Tensor]:
    """Per-target first-order scores, and the batch maxima ``(n_batches, T)`` behind them."""
    device = x0.device
    chunk = chunk_size or default_chunk_size(len(targets), x0.numel(), x0.element_size(), device)
    samples = sample_gradient_maxima(
        model,
        x0,
        margins0,
        predicted=predicted,
        targets=targets,
        norm=settings.norm,
        dual=dual_norm(settings.norm),
        radius=settings.radius,
        n_batches=settings.n_batches,
        batch_size=settings.batch_size,
        bounds=settings.bounds,
        generator=generator,
        chunk_size=chunk,
    )
    _check_masking(samples, model, x0)

    maxima = samples.maxima.double().cpu().numpy()
    lower = samples.lower_bounds.double().cpu().tolist()
    margins = margins0.double().cpu().tolist()
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
    return per_target, samples.maxima


def _second_order_targets(
    model: Callable,
    x0: torch.Tensor,
    margins0: torch.Tensor,
    settings: Settings,
    *,
    predicted: int,
    targets: list[int],
    generator: torch.Generator,
    chunk_size: int | None,
    curvature: str,
) -> tuple[dict[int, TargetScore], torch.Tensor]:
    """Per-target second-order scores, and the batch maxima of the curvature behind them."""
    chunk = chunk_size or default_curvature_chunk(len(targets), x0.numel(), x0.element_size(), x0.device)
    samples = sample_curvature_maxima(
        model,
        x0,
        margins0,
        predicted=predicted,
        targets=targets,
        norm=settings.norm,
        radius=settings.radius,
        n_batches=settings.n_batches,
        batch_size=settings.batch_size,
        bounds=settings.bounds,
        generator=generator,
        chunk_size=chunk,
        method=curvature,
    )
    _check_masking(samples, model, x0)
    margins = margins0.double().cpu().tolist()
    per_target = second_order_targets(samples, targets, margins, norm=settings.norm, radius=settings.radius)
    return per_target, samples.maxima


def _score_one(
    model: Callable,
    x: torch.Tensor,
    settings: Settings,
    *,
    target: int | None,
    label: int | None,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    chunk_size: int | None,
    curvature: str = "spectral",
) -> CleverResult:
    started = time.perf_counter()
    x = x.to(device=device, dtype=dtype)
    x0, logits0 = resolve_single_input(model, x)
    warn_if_probabilities(logits0)
    check_in_bounds(x0, settings.bounds)
    predicted = check_prediction(logits0, label, target)
    k = logits0.shape[0]
    targets = [int(target)] if target is not None else [j for j in range(k) if j != predicted]
    margins0 = logits0[predicted] - logits0[targets]

    generator = torch.Generator(device=device).manual_seed(seed)
    if settings.order == 2:
        per_target, maxima = _second_order_targets(
            model, x0, margins0, settings, predicted=predicted, targets=targets,
            generator=generator, chunk_size=chunk_size, curvature=curvature,
        )
    else:
        per_target, maxima = _first_order_targets(
            model, x0, margins0, settings, predicted=predicted, targets=targets,
            generator=generator, chunk_size=chunk_size,
        )
    deciding = min(per_target.values(), key=lambda s: (s.score, s.target))
    if settings.order == 2:
        notes = second_order_notes(per_target, deciding.target)
    else:
        notes = _notes(per_target, deciding.target, settings.radius)
    return CleverResult(
        score=deciding.score,
        target=deciding.target,
        predicted=predicted,
        norm=settings.norm,
        radius=settings.radius,
        order=settings.order,
        per_target=per_target,
        n_batches=settings.n_batches,
        batch_size=settings.batch_size,
        seed=seed,
        elapsed=time.perf_counter() - started,
        targeted=target is not None,
        label=None if label is None else int(label),
        bounds=settings.bounds,
        device=str(device),
        notes=notes,
        batch_maxima=tuple(maxima[:, targets.index(deciding.target)].double().cpu().tolist()),
    )


def _notes(per_target: dict[int, TargetScore], deciding: int, radius: float = math.inf) -> tuple[str, ...]:
    """Human-readable caveats about the deciding target's estimate and the consistency check."""
    s = per_target[deciding]
    notes = []
    if s.fit_method == "max" and s.fit_reason == CONSTANT_MAXIMA:
        pass  # the gradient norm is the same everywhere sampled: the maximum is exact
    elif s.fit_method == "max":
        notes.append(
            f"target {deciding}: no trustworthy Weibull fit ({s.fit_reason}); the sample maximum "
            f"{s.lipschitz:.4g} was used as Lipschitz estimate (the score may be too high: "
            "raise n_batches/batch_size)" + see("Troubleshooting")
        )
    elif s.ks_pvalue < WEAK_PVALUE:
        notes.append(
            f"target {deciding}: weak Weibull fit (KS p-value {s.ks_pvalue:.2g}); "
            "raise n_batches/batch_size for a steadier estimate" + see("Troubleshooting")
        )
    inconsistent = _inconsistency_note(per_target, s.score, radius)
    if inconsistent:
        notes.append(inconsistent)
    return tuple(notes)


def _consistent_score(per_target: dict[int, TargetScore], radius: float) -> float:
    """The score with every Lipschitz estimate raised to the proven lower bound where that is higher."""
    scores = []
    for t in per_target.values():
        lipschitz = max(t.lipschitz, t.lipschitz_lower_bound)
        scores.append(min(t.margin / lipschitz, radius) if lipschitz > 0 else radius)
    return min(scores)


def _inconsistency_note(per_target: dict[int, TargetScore], score: float, radius: float) -> str | None:
    """Say by how much the samples prove the estimate too low, and what that does to the score."""
    inconsistent = [j for j, t in per_target.items() if not t.consistent]
    if not inconsistent:
        return None

    def excess(j: int) -> float:
        t = per_target[j]
        return t.lipschitz_lower_bound / t.lipschitz if t.lipschitz > 0 else math.inf

    worst = max(inconsistent, key=excess)
    t = per_target[worst]
    proof = (
        f"inconsistent estimate, target {worst}: the sampled margins prove the local Lipschitz constant "
        f"is at least {t.lipschitz_lower_bound:.4g}, {excess(worst):.2f}x the estimate {t.lipschitz:.4g} "
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


def _warn(result: CleverResult, index: int | None = None) -> None:
    where = "" if index is None else f"input {index}: "
    for note in result.notes:
        warnings.warn(f"CLEVER {where}{note}", WeakFitWarning, stacklevel=3)


def clever_score(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    norm: int | float | str = 2,
    radius: float,
    target: int | None = None,
    n_batches: int = DEFAULT_N_BATCHES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bounds: tuple[float, float] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    label: int | None = None,
    order: int = 1,
    chunk_size: int | None = None,
    curvature: str = "spectral",
) -> CleverResult:
    """CLEVER score of one input (first order by default, second order with ``order=2``).

    Parameters
    ----------
    model:
        A ``torch.nn.Module`` or any callable mapping a batch to 2-D logits.
        It is scored in eval mode and handed back exactly as it was.
    x:
        One input, without batch dimension (e.g. ``(1, 8, 8)``); a leading
        batch dimension of 1 is accepted when the model's output settles it.
    norm:
        Perturbation norm: 1, 2 or inf (also "l1", "l2", "linf").
    radius:
        Radius R of the sampling ball; scores are capped at R.
    target:
        Score against this class only; by default the minimum over all
        classes other than the predicted one (untargeted).
    n_batches, batch_size:
        Number of batch maxima for the extreme-value fit and fresh points per
        batch. The paper's high-fidelity setting is 500 x 1024.
    bounds:
        ``(lo, hi)`` range of valid inputs; samples are clipped to it and
        ``x`` must lie inside it.
    seed:
        Makes the score reproducible bit-for-bit on the same device; a
        random seed is drawn (and recorded in the result) when None.
    device:
        Where to compute; the model is moved there for the computation and
        moved back afterwards. Defaults to the model's device.
    label:
        The expected class; a model that predicts another class raises
        :class:`~pytest_clever.errors.MisclassifiedInputError`.
    order:
        1 for the first-order score (a Lipschitz bound estimated from
        sampled gradients); 2 for the second-order score of a
        twice-differentiable model (exact gradient at ``x``, curvature bound
        estimated from sampled Hessians; see SPEC.md). A piecewise-linear
        model (ReLU, max-pool) raises
        :class:`~pytest_clever.errors.NotTwiceDifferentiableError` with ``order=2``.
    chunk_size:
        Points per forward/backward pass; bounds memory. Chosen per device
        by default.
    curvature:
        For ``order=2``: "spectral" bounds the Hessian spectral norm (the
        default; a bound that holds whatever the sign of the curvature),
        "negative" only its negative part ``max(0, -lambda_min)`` (tighter,
        as in the authors' code; twice the Hessian-vector products, and
        ``g / ||grad g(x)||`` when no negative curvature is sampled).
    """
    settings = check_settings(
        norm=norm, radius=radius, n_batches=n_batches, batch_size=batch_size, bounds=bounds, order=order
    )
    if chunk_size is not None:
        chunk_size = int(chunk_size)
        if chunk_size < 1:
            raise InvalidInputError(f"chunk_size must be >= 1, got {chunk_size}")
    _check_curvature(curvature)
    x = as_input_tensor(x)
    seed = secrets.randbits(63) if seed is None else int(seed)
    dev, dtype = _resolve_device(model, x, device)
    with borrowed_model(model, dev) as prepared:
        result = _score_one(
            prepared, x, settings, target=target, label=label, seed=seed,
            device=dev, dtype=dtype, chunk_size=chunk_size, curvature=curvature,
        )
    _warn(result)
    return result


def clever_scores(
    model: Callable[[torch.Tensor], torch.Tensor],
    xs: torch.Tensor | Sequence[torch.Tensor],
    labels: Sequence[int] | torch.Tensor | None = None,
    *,
    norm: int | float | str = 2,
    radius: float,
    target: int | None = None,
    n_batches: int = DEFAULT_N_BATCHES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bounds: tuple[float, float] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    order: int = 1,
    chunk_size: int | None = None,
    curvature: str = "spectral",
    executor: Executor | None = None,
) -> CleverReport:
    """CLEVER scores of several inputs: ``xs`` is a batch ``(N, ...)`` or a sequence of inputs.

    Takes the settings of :func:`clever_score`; input ``i`` is scored with a
    seed derived from ``(seed, i)``, so each score is reproducible on its own.
    Returns a :class:`~pytest_clever.results.CleverReport` with ``min``,
    ``mean``, ``median`` and ``quantile(q)``.

    With ``executor`` (any ``concurrent.futures.Executor``: a
    ``ProcessPoolExecutor``, ``dask.distributed.Client.get_executor()``, ...)
    each input is one task there, with the same result as the serial run on
    the same device and torch build; the model travels to each worker once
    (see ``pytest_clever.executor`` and docs/cluster.md).
    """
    settings = check_settings(
        norm=norm, radius=radius, n_batches=n_batches, batch_size=batch_size, bounds=bounds, order=order
    )
    _check_curvature(curvature)
    inputs = []
    for i, x in enumerate(xs.unbind(0) if isinstance(xs, torch.Tensor) else xs):
        try:
            inputs.append(as_input_tensor(x))
        except CleverError as exc:
            raise type(exc)(f"input {i}: {exc}") from exc
    if not inputs:
        raise InvalidInputError("xs holds no inputs")
    if labels is not None:
        labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
        if len(labels) != len(inputs):
            raise InvalidInputError(f"got {len(labels)} labels for {len(inputs)} inputs")
    run_seed = secrets.randbits(63) if seed is None else int(seed)
    started = time.perf_counter()
    dev, dtype = _resolve_device(model, inputs[0], device)
    if executor is not None:
        from .executor import score_on_executor

        score = functools.partial(
            _score_one, settings=settings, target=target, device=dev, dtype=dtype,
            chunk_size=chunk_size, curvature=curvature,
        )
        results = score_on_executor(
            executor, model, inputs, labels or [None] * len(inputs),
            seeds=[_derive_seed(run_seed, i) for i in range(len(inputs))], device=dev, score=score,
        )
    else:
        results = []
        with borrowed_model(model, dev) as prepared:
            for i, x in enumerate(inputs):
                try:
                    result = _score_one(
                        prepared, x, settings, target=target,
                        label=None if labels is None else labels[i],
                        seed=_derive_seed(run_seed, i), device=dev, dtype=dtype, chunk_size=chunk_size,
                        curvature=curvature,
                    )
                except CleverError as exc:
                    raise type(exc)(f"input {i}: {exc}") from exc
                results.append(result)
    for i, result in enumerate(results):
        _warn(result, i)
    return CleverReport(tuple(results), seed=run_seed, elapsed=time.perf_counter() - started)


__all__ = ["clever_score", "clever_scores", "DEFAULT_N_BATCHES", "DEFAULT_BATCH_SIZE"]
