"""The public entry points: :func:`clever_score` and :func:`clever_scores`.

Both validate their keywords once into a :class:`~pytest_clever.core.options.ScoreOptions`
and hand it to the one scoring path, :mod:`pytest_clever._engine.pipeline`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from pytest_clever._engine.pipeline import score_inputs
from pytest_clever.core import progress
from pytest_clever.core.options import ScoreOptions
from pytest_clever.core.validation import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONFIDENCE,
    DEFAULT_EXECUTOR_TIMEOUT,
    DEFAULT_N_BATCHES,
)
from pytest_clever.stats.report import CleverReport
from pytest_clever.stats.results import CleverResult

if TYPE_CHECKING:
    from concurrent.futures import Executor


def clever_score(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    norm: int | float | str = 2,
    radius: float,
    target: int | None = None,
    targets: str | Sequence[int] | None = None,
    label: int | None = None,
    n_batches: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bounds: tuple[float, float] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    order: int = 1,
    chunk_size: int | None = None,
    curvature: str = "spectral",
    progress: progress.ProgressSetting = False,
    confidence: float = DEFAULT_CONFIDENCE,
    precision: float | None = None,
    max_batches: int | None = None,
    budget: float | None = None,
    min_score: float | None = None,
    statistic: str = "mean",
    gate: str = "point",
    interval: str = "estimator",
    torch_compile: bool = False,
    screen: str = "auto",
) -> CleverResult:
    """CLEVER score of one input (first order by default, second order with ``order=2``).

    Parameters
    ----------
    model:
        A ``torch.nn.Module`` or any callable mapping a batch to 2-D logits, or to
        an output holding them under ``"logits"`` or ``.logits`` (a Hugging Face
        ``ModelOutput``; the result's notes say so). It is scored in eval mode and handed back exactly as it was.
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
    label:
        The expected class; a model that predicts another class raises
        :class:`~pytest_clever.errors.MisclassifiedInputError`.
    n_batches, batch_size:
        Number of batch maxima for the extreme-value fit (default 100) and fresh points per
        batch. The paper's high-fidelity setting is 500 x 1024. With ``precision`` or
        ``budget``, ``n_batches`` is the first round (default 20) instead of a fixed count.
    bounds:
        ``(lo, hi)`` range of valid inputs; samples are clipped to it and
        ``x`` must lie inside it.
    seed:
        Makes the score reproducible bit-for-bit on the same device; a
        random seed is drawn (and recorded in the result) when None.
    device:
        Where to compute; the model is moved there for the computation and
        moved back afterwards. Defaults to the model's device.
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
    precision:
        Sample in rounds (``n_batches`` first, then 1.5 times as many batches each round, same stream of
        points) until the score's interval at ``confidence`` has a relative half-width
        ``(hi - lo) / (2 * score)`` of at most ``precision`` (strictly between 0 and 1), or until
        ``max_batches``. ``result.stop_reason`` says which ("precision", "cap", "budget", "decision").
    max_batches:
        The most batches one input gets with ``precision`` or ``budget`` (default 1000).
    budget:
        Seconds the call may spend sampling: rounds stop when it is spent (``stop_reason`` "budget"),
        and the result says the precision reached (``result.precision_reached``).
    min_score, statistic, gate, interval:
        With ``precision`` or ``budget``: the gate the scores will be held to (the pytest plugin's
        settings of the same names). The rounds of every input stop once ``statistic``'s interval lies
        wholly above or below ``min_score`` (``stop_reason`` "decision"); the gate itself is applied by
        the caller (the plugin), which marks a decision the rounds could not settle as unsettled.
    torch_compile:
        True runs the sampled first-order passes through ``torch.compile(model)``: about half the time
        of the 3x32x32 ResNet on 2 CPU cores after some 20 s of compiling, slower on very small models
        (benchmarks/bench_cpu_floor.py). Gradient norms, hence scores, move by at most
        ``COMPILED_TOLERANCE`` (relative) from the eager model's; ``result.torch_compile`` records it.
        First order only (second order's Hessian-vector products need double backward).
    screen:
        "auto" (the default), "on" or "off". Screening samples the first 128 points for every target
        class, then only for the classes whose score's lower confidence bound (at a stricter level than
        ``confidence``) does not lie above a certain upper bound of the minimum; the others are reported
        with that lower bound (``fit_method`` "screened"), and ``result.screened`` says how many, after
        ``result.screened_after`` points. "auto" screens first-order scores over at least 100 classes;
        "on" with ``order=2`` raises :class:`~pytest_clever.errors.InvalidInputError`
        (docs/how-to/budgets.md).

    Notes
    -----
    Scoring runs in IEEE float32: TF32 (and oneDNN's bf16) for float32
    matmuls and convolutions is off during the call, whatever the session set
    (``torch.backends.cudnn.allow_tf32`` is on by default), and the settings are
    restored afterwards (docs/how-to/budgets.md).
    """
    options = ScoreOptions.from_keywords(locals())  # the keywords by name: one field of ScoreOptions each
    (result,), _ = score_inputs(model, [x], None if label is None else [label], options, indexed=False)
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
    n_batches: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bounds: tuple[float, float] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    executor: Executor | None = None,
    executor_timeout: float = DEFAULT_EXECUTOR_TIMEOUT,
    order: int = 1,
    chunk_size: int | None = None,
    curvature: str = "spectral",
    progress: progress.ProgressSetting = False,
    confidence: float = DEFAULT_CONFIDENCE,
    precision: float | None = None,
    max_batches: int | None = None,
    budget: float | None = None,
    min_score: float | None = None,
    statistic: str = "mean",
    gate: str = "point",
    interval: str = "estimator",
    torch_compile: bool = False,
    screen: str = "auto",
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
    (see docs/cluster.md). A wait in which no input comes back for
    ``executor_timeout`` seconds raises :class:`~pytest_clever.errors.ExecutorError`
    naming the pending inputs. With an executor the device is checked where it
    is used: the caller checks its name, each worker that it exists there.
    With ``min_score`` and ``precision`` or ``budget``, all inputs are sampled in rounds together and
    stop as soon as the gate's decision is settled (see :func:`clever_score`).
    With ``progress=True`` a long call shows the first input's time and the estimate
    for the rest on stderr.
    """
    started = time.perf_counter()
    inputs = xs.unbind(0) if isinstance(xs, torch.Tensor) else list(xs)
    if labels is not None:
        labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    options = ScoreOptions.from_keywords(locals())  # after xs and labels: their errors come first
    results, settled = score_inputs(model, inputs, labels, options, indexed=True)
    return CleverReport(tuple(results), seed=options.seed, elapsed=time.perf_counter() - started, settled=settled)


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_N_BATCHES", "clever_score", "clever_scores"]
