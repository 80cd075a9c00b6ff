"""The public entry points: :func:`clever_score` and :func:`clever_scores`, on one preparation path.

Data flow: validate settings once (``validation``) -> resolve the device and
borrow the model (``model_state``) -> per input: resolve it and its prediction
(``inputs``), sample the ball and collect batch maxima (``first_order`` or
``second_order``, both on the loop of ``maxima``), check for masking
(``diagnostics``), fit and score per target, attach the notes
(``diagnostics``) -> result (``results``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Sequence

import torch

from . import first_order, second_order
from .diagnostics import check_masking, score_notes
from .evt import endpoint_interval
from .errors import CleverError, InvalidInputError, WeakFitWarning
from .inputs import as_input_tensor, check_in_bounds, check_prediction, resolve_single_input, warn_if_probabilities
from .maxima import Problem
from .model_state import borrowed_model, model_device_and_dtype
from .results import CleverReport, CleverResult
from .seeds import derive_seed, resolve_seed
from .targets import TargetSpec, combine_target_and_targets, resolve_targets
from .validation import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_N_BATCHES,
    Settings,
    DEFAULT_CONFIDENCE,
    check_chunk_size,
    check_confidence,
    check_curvature,
    check_settings,
)


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


def _score_one(
    model: Callable,
    x: torch.Tensor,
    settings: Settings,
    *,
    target: int | None,
    targets: TargetSpec,
    label: int | None,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    chunk_size: int | None,
    curvature: str,
    confidence: float = DEFAULT_CONFIDENCE,
) -> CleverResult:
    started = time.perf_counter()
    x = x.to(device=device, dtype=dtype)
    x0, logits0 = resolve_single_input(model, x)
    warn_if_probabilities(logits0)
    check_in_bounds(x0, settings.bounds)
    predicted = check_prediction(logits0, label, target)
    spec, targets = targets, resolve_targets(targets, logits0, predicted, seed)
    margins0 = logits0[predicted] - logits0[targets]

    generator = torch.Generator(device=device).manual_seed(seed)
    problem = Problem(model, x0, margins0, predicted, targets, generator, chunk_size)
    if settings.order == 2:
        order, samples = second_order, second_order.sample_targets(problem, settings, curvature=curvature)
    else:
        order, samples = first_order, first_order.sample_targets(problem, settings)
    check_masking(samples.sampled, model, x0)
    per_target = order.score_targets(samples, targets, margins0.double().cpu().tolist(), settings)

    deciding = min(per_target.values(), key=lambda s: (s.score, s.target))
    maxima = samples.sampled.maxima[:, targets.index(deciding.target)].double().cpu().numpy()
    # The interval of the deciding target only: the score's, and ~10 ms (docs/maths.md, "Uncertainty").
    deciding = per_target[deciding.target] = deciding.with_interval(
        endpoint_interval(maxima, method=deciding.fit_method, reason=deciding.fit_reason,
                          endpoint=deciding.endpoint, confidence=confidence),
        settings.radius,
    )
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
        targeted=spec.targeted,
        targets=str(spec),
        target_classes=tuple(targets),
        label=None if label is None else int(label),
        bounds=settings.bounds,
        device=str(device),
        notes=score_notes(per_target, deciding.target, radius=settings.radius, order=settings.order),
        batch_maxima=tuple(maxima.tolist()),
        confidence=confidence,
    )


def _warn(result: CleverResult, index: int | None = None) -> None:
    where = "" if index is None else f"input {index}: "
    for note in result.notes:
        warnings.warn(f"CLEVER {where}{note}", WeakFitWarning, stacklevel=4)


def _score_inputs(
    model: Callable,
    inputs: Sequence[Any],
    labels: Sequence[Any] | None,
    seed: Any,
    *,
    target: int | None,
    targets: Any,
    device: Any,
    chunk_size: Any,
    curvature: Any,
    indexed: bool,
    confidence: Any = DEFAULT_CONFIDENCE,
    **settings: Any,
) -> tuple[list[CleverResult], int]:
    """The one preparation path: validate once, resolve the device, borrow the model, score each input.

    Returns the results and the run's seed (drawn when ``seed`` is None).
    With ``indexed`` (``clever_scores``) errors and warnings name the input
    (``input i: ...``) and input ``i`` is scored with ``derive_seed(seed, i)``;
    otherwise with ``seed`` itself.
    """
    checked = check_settings(**settings)
    chunk_size = check_chunk_size(chunk_size)
    curvature = check_curvature(curvature)
    confidence = check_confidence(confidence)
    run_seed = resolve_seed(seed)
    spec = combine_target_and_targets(target, targets)

    tensors = []
    for i, x in enumerate(inputs):
        try:
            tensors.append(as_input_tensor(x))
        except CleverError as exc:
            if not indexed:
                raise
            raise type(exc)(f"input {i}: {exc}") from exc
    if not tensors:
        raise InvalidInputError("xs holds no inputs")
    if labels is not None and len(labels) != len(tensors):
        raise InvalidInputError(f"got {len(labels)} labels for {len(tensors)} inputs")
    dev, dtype = _resolve_device(model, tensors[0], device)
    results = []
    with borrowed_model(model, dev) as prepared:
        for i, x in enumerate(tensors):
            try:
                results.append(_score_one(
                    prepared, x, checked, target=target, targets=spec, label=None if labels is None else labels[i],
                    seed=derive_seed(run_seed, i) if indexed else run_seed,
                    device=dev, dtype=dtype, chunk_size=chunk_size, curvature=curvature, confidence=confidence,
                ))
            except CleverError as exc:
                if not indexed:
                    raise
                raise type(exc)(f"input {i}: {exc}") from exc
    for i, result in enumerate(results):
        _warn(result, i if indexed else None)
    return results, run_seed


def clever_score(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    norm: int | float | str = 2,
    radius: float,
    target: int | None = None,
    targets: str | Sequence[int] | None = None,
    n_batches: int = DEFAULT_N_BATCHES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bounds: tuple[float, float] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    label: int | None = None,
    order: int = 1,
    chunk_size: int | None = None,
    curvature: str = "spectral",
    confidence: float = DEFAULT_CONFIDENCE,
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
        classes other than the predicted one (untargeted). The same as
        ``targets=[target]``; pass one or the other.
    targets:
        The classes the score is the minimum over: "all" (the default, also
        when None), "top-k" (the k most likely other classes at ``x``),
        "random-k" (k classes drawn with the input's seed), "least-likely",
        or a list of class indices (see :mod:`pytest_clever.targets`).
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
        estimated from sampled Hessians; see docs/maths.md, "Second-order CLEVER"). A piecewise-linear
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
    confidence:
        Level of the score's confidence interval ``result.interval`` (the
        profile likelihood of the deciding target's end point), strictly
        between 0 and 1.
    """
    (result,), _ = _score_inputs(
        model, [x], None if label is None else [label], seed, target=target, targets=targets, device=device,
        chunk_size=chunk_size, curvature=curvature, indexed=False, confidence=confidence,
        norm=norm, radius=radius, n_batches=n_batches, batch_size=batch_size, bounds=bounds, order=order,
    )
    return result


def clever_scores(
    model: Callable[[torch.Tensor], torch.Tensor],
    xs: torch.Tensor | Sequence[torch.Tensor],
    labels: Sequence[int] | torch.Tensor | None = None,
    *,
    norm: int | float | str = 2,
    radius: float,
    target: int | None = None,
    targets: str | Sequence[int] | None = None,
    n_batches: int = DEFAULT_N_BATCHES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bounds: tuple[float, float] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    order: int = 1,
    chunk_size: int | None = None,
    curvature: str = "spectral",
    confidence: float = DEFAULT_CONFIDENCE,
) -> CleverReport:
    """CLEVER scores of several inputs: ``xs`` is a batch ``(N, ...)`` or a sequence of inputs.

    Takes the settings of :func:`clever_score`; input ``i`` is scored with the
    seed ``derive_seed(seed, i)`` (:mod:`pytest_clever.seeds`), so each score is reproducible on its own.
    Returns a :class:`~pytest_clever.results.CleverReport` with ``min``,
    ``mean``, ``median`` and ``quantile(q)``.
    """
    started = time.perf_counter()
    inputs = xs.unbind(0) if isinstance(xs, torch.Tensor) else list(xs)
    if labels is not None:
        labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    results, run_seed = _score_inputs(
        model, inputs, labels, seed, target=target, targets=targets, device=device,
        chunk_size=chunk_size, curvature=curvature, indexed=True, confidence=confidence,
        norm=norm, radius=radius, n_batches=n_batches, batch_size=batch_size, bounds=bounds, order=order,
    )
    return CleverReport(tuple(results), seed=run_seed, elapsed=time.perf_counter() - started)


__all__ = ["clever_score", "clever_scores", "DEFAULT_N_BATCHES", "DEFAULT_BATCH_SIZE"]
