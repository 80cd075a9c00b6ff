"""The public entry points: :func:`clever_score` and :func:`clever_scores`, on one preparation path.

Data flow: validate settings once (``validation``) -> resolve the device and
borrow the model (``model_state``) -> per input: resolve it and its prediction
(``inputs``), sample the ball and collect batch maxima (``first_order`` or
``second_order``, both on the loop of ``maxima``), check for masking
(``diagnostics``), fit and score per target, attach the notes
(``diagnostics``) -> result (``results``).
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from pytest_clever._engine import first_order
from pytest_clever.core import progress
from pytest_clever._engine import second_order
from pytest_clever._engine.diagnostics import check_masking, score_notes
from pytest_clever.stats.evt import endpoint_interval
from pytest_clever.errors import CleverError, InvalidInputError, WeakFitWarning
from pytest_clever._engine.inputs import (
    as_input_tensor,
    check_in_bounds,
    check_prediction,
    check_rows_independent,
    resolve_single_input,
    warn_if_probabilities,
)
from pytest_clever._engine.maxima import Problem
from pytest_clever._engine.model_state import borrowed_model, check_model_tensors, model_device_and_dtype
from pytest_clever._engine.numerics import exact_float32
from pytest_clever.stats.results import CleverReport, CleverResult
from pytest_clever.core.seeds import derive_seed, resolve_seed
from pytest_clever.core.targets import TargetSpec, combine_target_and_targets, resolve_targets
from pytest_clever.core.validation import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_N_BATCHES,
    Settings,
    DEFAULT_CONFIDENCE,
    check_chunk_size,
    check_confidence,
    check_curvature,
    check_settings,
)

if TYPE_CHECKING:
    from concurrent.futures import Executor


#: Dtypes second order refuses (see _score_inputs).
HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_device(device: torch.device) -> None:
    """Reject a device that holds no data (``meta``) or that this torch cannot use, before anything moves."""
    if device.type == "meta":
        raise InvalidInputError(
            "device='meta' holds no data, so nothing can be computed there (and moving the model "
            "there would drop its weights): pass device='cpu', a GPU, or None for the model's device"
        )
    if device.type == "cpu":
        return
    try:
        torch.empty(1, device=device)
    except Exception as exc:  # noqa: BLE001 - AssertionError ("not compiled with CUDA"), RuntimeError, ...
        cuda = torch.cuda.is_available()
        raise InvalidInputError(
            f"device {str(device)!r} is not available in this torch ({type(exc).__name__}: {exc}; "
            f"torch.cuda.is_available() is {cuda}, {torch.cuda.device_count()} CUDA device(s)): "
            "pass device='cpu', or None for the model's device"
        ) from None


def _resolve_device(model: Callable, x: torch.Tensor, device: Any) -> tuple[torch.device, torch.dtype]:
    check_model_tensors(model)
    model_device, model_dtype = model_device_and_dtype(model)
    if device is not None:
        try:
            target = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise InvalidInputError(f"unknown device {device!r}") from exc
    else:
        target = model_device or x.device
    check_device(target)
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
    check_rows_independent(model, x0, logits0, settings.radius, settings.bounds)
    predicted = check_prediction(logits0, label, target)
    spec, targets = targets, resolve_targets(targets, logits0, predicted, seed)
    margins0 = logits0[predicted] - logits0[targets]
    tracker = progress.current()
    if tracker is not None:
        tracker.input(len(targets))

    problem = Problem(model, x0, margins0, predicted, targets, seed, chunk_size)
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
    executor: Executor | None = None,
    progress_to: progress.ProgressSetting = False,
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
    if checked.order == 2 and dtype in HALF_DTYPES:
        raise InvalidInputError(
            f"order=2 needs a float32 or float64 model, got {dtype}: the Hessian solver has no half-precision "
            "kernels and half-precision rounding swamps the curvature; score a float32 copy, e.g. "
            "clever_score(copy.deepcopy(model).float(), x.float(), order=2, ...)"
        )
    seeds = [derive_seed(run_seed, i) if indexed else run_seed for i in range(len(tensors))]
    # One set of keywords for both routes (a second list once dropped confidence= on executors).
    score = functools.partial(
        _score_one, settings=checked, target=target, targets=spec, device=dev, dtype=dtype,
        chunk_size=chunk_size, curvature=curvature, confidence=confidence,
    )
    points = checked.n_batches * checked.batch_size
    with progress.tracking(progress_to, len(tensors), points) as tracker:
        if executor is not None:
            from pytest_clever._engine.executor import score_on_executor

            # Workers report nothing back while they sample: progress counts inputs as they come back.
            results = score_on_executor(
                executor, model, tensors, labels or [None] * len(tensors), seeds=seeds, device=dev, score=score,
                on_result=None if tracker is None else (lambda _index: tracker.scored()),
            )
        else:
            results = []
            with borrowed_model(model, dev) as prepared, exact_float32():
                for i, x in enumerate(tensors):
                    try:
                        results.append(score(prepared, x, label=None if labels is None else labels[i], seed=seeds[i]))
                    except CleverError as exc:
                        if not indexed:
                            raise
                        raise type(exc)(f"input {i}: {exc}") from exc
                    if tracker is not None:
                        tracker.scored()
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
    progress: progress.ProgressSetting = False,
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
        or a list of class indices (see :mod:`pytest_clever.core.targets`).
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
        by default. The sampled points (and second order's random start
        vectors) do not depend on it, so a model whose output for one point
        does not depend on the batch size gives bit-identical scores for
        every ``chunk_size``. BLAS kernels (``nn.Linear``, convolutions) may
        round differently for different batch sizes, which can change the
        last bits of a score (about 1e-7 relative in float32).
    curvature:
        For ``order=2``: "spectral" bounds the Hessian spectral norm (the
        default; a bound that holds whatever the sign of the curvature),
        "negative" only its negative part ``max(0, -lambda_min)`` (tighter,
        as in the authors' code; twice the Hessian-vector products, and
        ``g / ||grad g(x)||`` when no negative curvature is sampled).
    progress:
        True prints progress of a long call to stderr (inputs and points done,
        the first input's time, the estimated time left; at most once a
        second, nothing in the first 2 s); a callable receives every
        :class:`~pytest_clever.core.progress.ProgressEvent` instead. Off by default.
    confidence:
        Level of the score's confidence interval ``result.interval`` (the
        profile likelihood of the deciding target's end point), strictly
        between 0 and 1.

    Scoring runs in IEEE float32: TF32 (and oneDNN's bf16) for float32
    matmuls and convolutions is off during the call, whatever the session set
    (``torch.backends.cudnn.allow_tf32`` is on by default), and the settings are
    restored afterwards; see :mod:`pytest_clever._engine.numerics`.
    """
    (result,), _ = _score_inputs(
        model, [x], None if label is None else [label], seed, target=target, targets=targets, device=device,
        chunk_size=chunk_size, curvature=curvature, indexed=False, progress_to=progress,
        confidence=confidence,
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
    executor: Executor | None = None,
    progress: progress.ProgressSetting = False,
    confidence: float = DEFAULT_CONFIDENCE,
) -> CleverReport:
    """CLEVER scores of several inputs: ``xs`` is a batch ``(N, ...)`` or a sequence of inputs.

    Takes the settings of :func:`clever_score`; input ``i`` is scored with the
    seed ``derive_seed(seed, i)`` (:mod:`pytest_clever.core.seeds`), so each score is reproducible on its own.
    Returns a :class:`~pytest_clever.stats.results.CleverReport` with ``min``,
    ``mean``, ``median`` and ``quantile(q)``.

    With ``executor`` (any ``concurrent.futures.Executor``: a
    ``ProcessPoolExecutor``, ``dask.distributed.Client.get_executor()``, ...)
    each input is one task there, with the same result as the serial run on
    the same device and torch build; the model travels to each worker once
    (see :mod:`pytest_clever._engine.executor` and docs/cluster.md).
    With ``progress=True`` a long call shows the first input's time and the estimate
    for the rest on stderr.
    """
    started = time.perf_counter()
    inputs = xs.unbind(0) if isinstance(xs, torch.Tensor) else list(xs)
    if labels is not None:
        labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    results, run_seed = _score_inputs(
        model, inputs, labels, seed, target=target, targets=targets, device=device,
        chunk_size=chunk_size, curvature=curvature, indexed=True, executor=executor, progress_to=progress,
        confidence=confidence,
        norm=norm, radius=radius, n_batches=n_batches, batch_size=batch_size, bounds=bounds, order=order,
    )
    return CleverReport(tuple(results), seed=run_seed, elapsed=time.perf_counter() - started)


__all__ = ["clever_score", "clever_scores", "DEFAULT_N_BATCHES", "DEFAULT_BATCH_SIZE"]
