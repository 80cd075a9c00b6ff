"""Checks on input tensors and model outputs (torch), each failing with a message that names the problem.

The torch-free checks of settings live in :mod:`pytest_clever.core.validation`.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from pytest_clever._engine.model_state import Model
from pytest_clever._engine.outputs import output_hint
from pytest_clever.core.validation import as_class_index
from pytest_clever.errors import CleverWarning, InvalidInputError, MisclassifiedInputError, ModelError, see


def as_input_tensor(x: Any) -> torch.Tensor:
    """Turn ``x`` into a tensor; reject non-floating and non-finite inputs."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InvalidInputError(f"x must be a tensor or array, got {type(x).__name__}") from exc
    if x.is_meta:
        raise InvalidInputError("x is on the 'meta' device, which holds no data: pass a tensor with values")
    if not x.is_floating_point():
        raise InvalidInputError(
            f"x must be a floating-point tensor, got dtype {x.dtype}: convert it with "
            "x.float() and scale it to the model's input range"
        )
    if x.numel() == 0:
        raise InvalidInputError(
            f"x is empty (shape {tuple(x.shape)}): pass one input, e.g. an image of shape (C, H, W)"
        )
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise InvalidInputError(f"x contains {bad} NaN or infinite value(s)")
    return x


def check_in_bounds(x: torch.Tensor, bounds: tuple[float, float] | None) -> None:
    if bounds is None:
        return
    lo, hi = bounds
    below, above = float(x.min()), float(x.max())
    if below < lo or above > hi:
        raise InvalidInputError(
            f"x lies outside bounds {bounds}: its values range over [{below:.4g}, {above:.4g}]; "
            "scale the input to the model's domain or pass the right bounds"
        )


def _call(model: Model, batch: torch.Tensor) -> torch.Tensor:
    given = batch.clone()  # the model gets a copy: the user's x is never changed
    try:
        with torch.no_grad():
            out = model(given)
    except Exception as exc:
        raise ModelError(
            f"the model raised {type(exc).__name__} when called on a batch of shape {tuple(batch.shape)}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise InvalidInputError(
            "the model must return a tensor of logits, or a mapping or object holding that tensor under "
            f"'logits' (as Hugging Face models do); {output_hint(out)}" + see("how-to/troubleshooting.md")
        )
    if not out.is_floating_point():  # integer logits have no gradient; complex ones no order
        raise InvalidInputError(
            f"the model must return real floating-point logits, got dtype {out.dtype}; "
            "cast them, e.g. lambda x: model(x).float()"
        )
    if not torch.equal(given, batch):
        raise ModelError(
            "the model changed its input in place (the batch differs after the forward pass), so the "
            "gradients would belong to other points: start forward() with x = x.clone(), or replace in-place "
            "ops on the input (x.mul_(), x.clamp_(), ReLU(inplace=True) as first layer)"
        )
    return out


def _check_logits(out: torch.Tensor, batch: int, shape: tuple[int, ...]) -> None:
    if out.dim() != 2 or out.shape[0] != batch:
        raise InvalidInputError(
            f"the model must return 2-D logits of shape (batch, classes); for a batch of "
            f"shape {shape} it returned shape {tuple(out.shape)}"
        )
    if out.shape[1] < 2:
        raise InvalidInputError(f"the model returns {out.shape[1]} class score(s); CLEVER needs at least 2 classes")
    if not torch.isfinite(out).all():
        raise InvalidInputError("the model returned NaN or infinite logits for x")


def resolve_single_input(model: Model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x0, logits0)``: the single input without batch dimension and its logits ``(K,)``.

    ``x`` is one batch element; an explicit leading batch dimension of 1 is
    accepted only when the model's output settles it (docs/how-to/models.md).
    """
    first_error: Exception | None = None
    try:
        out = _call(model, x.unsqueeze(0))
        if out.dim() == 2 and out.shape[0] == 1:
            _check_logits(out, 1, tuple(x.unsqueeze(0).shape))
            return x, out[0]
        first_error = InvalidInputError(
            f"the model must return 2-D logits of shape (batch, classes); for a batch of "
            f"shape {tuple(x.unsqueeze(0).shape)} it returned shape {tuple(out.shape)}"
        )
    except ModelError as exc:
        first_error = exc
    if x.dim() >= 2 and x.shape[0] == 1:
        try:
            out = _call(model, x)
        except ModelError:
            raise first_error from None
        if out.dim() == 2 and out.shape[0] == 1:
            _check_logits(out, 1, tuple(x.shape))
            return x[0], out[0]
    if x.dim() >= 2 and x.shape[0] > 1:
        try:
            out = _call(model, x)
            looks_batched = out.dim() == 2 and out.shape[0] == x.shape[0]
        except ModelError:
            looks_batched = False
        if looks_batched:
            raise InvalidInputError(
                f"clever_score scores one input, but x of shape {tuple(x.shape)} looks like a "
                f"batch of {x.shape[0]}: use clever_scores(model, xs) for several inputs"
            )
    raise first_error


def check_rows_independent(
    model: Model, x0: torch.Tensor, logits0: torch.Tensor, radius: float, bounds: tuple[float, float] | None
) -> None:
    """Reject a model whose logits for one input depend on the other inputs of its batch.

    CLEVER evaluates sampled points in batches, so each row must be computed
    on its own. Compares ``x0`` and a point ``p`` of the ball scored together
    with each scored alone, to a rounding tolerance (BLAS kernels may round
    differently for different batch sizes).
    """
    signs = torch.ones(x0.numel(), dtype=x0.dtype, device=x0.device)
    signs[1::2] = -1
    # Every Lp norm of this step is at most radius / 2 (its L1 norm is).
    other = x0 + (radius / (2 * x0.numel())) * signs.view_as(x0)
    if bounds is not None:
        other = other.clamp(bounds[0], bounds[1])
    both = _call(model, torch.stack([other, x0]))
    alone = _call(model, other.unsqueeze(0))
    if both.shape != (2, logits0.shape[0]):
        raise InvalidInputError(
            f"the model must return one row of logits per input row: for a batch of 2 inputs it returned "
            f"shape {tuple(both.shape)} (for 1 input, {(1, logits0.shape[0])}); it ignores the batch dimension "
            "(e.g. indexes x[0] or reshapes over the batch)"
        )
    # The rounding of the computation, not of the output: a float32 model may return float64 logits.
    computed_in = x0.dtype if x0.is_floating_point() else logits0.dtype
    eps = max(torch.finfo(logits0.dtype).eps, torch.finfo(computed_in).eps) ** 0.5
    tolerance = eps * (1 + float(logits0.abs().max()))
    deviation = max(float((both[1] - logits0).abs().max()), float((both[0] - alone[0]).abs().max()))
    if deviation > tolerance:
        raise InvalidInputError(
            f"the model's logits for one input depend on the other inputs of its batch (they change by "
            f"{deviation:.3g} when another point is in the batch): CLEVER scores sampled points in batches, so "
            "each row must be computed on its own. The model mixes or ignores the batch dimension (x[0], "
            "x.mean(0), a reshape over the batch), is random (dropout), or uses batch statistics (BatchNorm "
            "in training mode in a wrapper pytest-clever cannot see into): call model.eval() and keep rows apart"
        )


def warn_if_probabilities(logits0: torch.Tensor) -> None:
    """CLEVER on softmax outputs is valid but measures another margin: say so once."""
    total = float(logits0.sum())
    # Softmax outputs are strictly positive; logits such as (1, 0) are not mistaken for them.
    if float(logits0.min()) > 0 and float(logits0.max()) < 1 and abs(total - 1) < 1e-4:
        warnings.warn(
            "the model's outputs look like probabilities (in [0, 1], summing to 1): CLEVER is "
            "defined on logits. Scores of softmax outputs are valid for the probability margin "
            "but not comparable with logit scores; drop the final softmax to score the logits"
            + see("how-to/troubleshooting.md"),
            CleverWarning,
            stacklevel=5,
        )


def check_prediction(logits0: torch.Tensor, label: Any, target: Any) -> int:
    """Return the predicted class; reject ties, wrong predictions and bad targets."""
    k = logits0.shape[0]
    top2 = torch.topk(logits0, 2)
    predicted = int(top2.indices[0])
    if float(top2.values[0] - top2.values[1]) <= 0:
        raise MisclassifiedInputError(
            f"classes {int(top2.indices[0])} and {int(top2.indices[1])} tie at the top "
            f"(logit {float(top2.values[0]):.6g}); the margin is 0, so the score would be 0 "
            "whatever the model's robustness"
        )
    if label is not None:
        index = as_class_index(label)
        if index is None or index >= k:
            raise InvalidInputError(f"label must be a class index in [0, {k}), got {label!r}")
        label = index
        if predicted != int(label):
            raise MisclassifiedInputError(
                f"the model predicts class {predicted} but the label is {int(label)}: the CLEVER "
                "score of a misclassified input is meaningless (it measures the distance to "
                "the boundary of the wrong class); drop the input or fix the model" + see("how-to/troubleshooting.md")
            )
    if target is not None:
        index = as_class_index(target)
        if index is None or index >= k:
            raise InvalidInputError(f"target must be a class index in [0, {k}), got {target!r}")
        target = index
        if int(target) == predicted:
            raise InvalidInputError(f"target {target} is the predicted class; a targeted score needs another class")
    return predicted
