"""Checks on input tensors and model outputs (torch), each failing with a message that names the problem.

The torch-free checks of settings live in :mod:`pytest_clever.validation`.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Callable

import torch

from .errors import CleverWarning, InvalidInputError, MisclassifiedInputError, ModelError, see


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
        raise InvalidInputError(f"x is empty (shape {tuple(x.shape)}): pass one input, e.g. an image of shape (C, H, W)")
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


def _call(model: Callable, batch: torch.Tensor) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = model(batch)
    except Exception as exc:
        raise ModelError(
            f"the model raised {type(exc).__name__} when called on a batch of shape "
            f"{tuple(batch.shape)}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise InvalidInputError(
            f"the model must return a tensor of logits, got {type(out).__name__}; "
            "wrap it, e.g. lambda x: model(x).logits" + see("Usage")
        )
    return out


def _check_logits(out: torch.Tensor, batch: int, shape: tuple[int, ...]) -> None:
    if out.dim() != 2 or out.shape[0] != batch:
        raise InvalidInputError(
            f"the model must return 2-D logits of shape (batch, classes); for a batch of "
            f"shape {shape} it returned shape {tuple(out.shape)}"
        )
    if out.shape[1] < 2:
        raise InvalidInputError(
            f"the model returns {out.shape[1]} class score(s); CLEVER needs at least 2 classes"
        )
    if not torch.isfinite(out).all():
        raise InvalidInputError("the model returned NaN or infinite logits for x")


def resolve_single_input(model: Callable, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x0, logits0)``: the single input without batch dimension and its logits ``(K,)``.

    ``x`` is one batch element; an explicit leading batch dimension of 1 is
    accepted only when the model's output settles it (README, "API settings").
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


def warn_if_probabilities(logits0: torch.Tensor) -> None:
    """CLEVER on softmax outputs is valid but measures another margin: say so once."""
    total = float(logits0.sum())
    # Softmax outputs are strictly positive; logits such as (1, 0) are not mistaken for them.
    if float(logits0.min()) > 0 and float(logits0.max()) < 1 and abs(total - 1) < 1e-4:
        warnings.warn(
            "the model's outputs look like probabilities (in [0, 1], summing to 1): CLEVER is "
            "defined on logits. Scores of softmax outputs are valid for the probability margin "
            "but not comparable with logit scores; drop the final softmax to score the logits"
            + see("Troubleshooting"),
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
        if isinstance(label, torch.Tensor):
            label = label.item()
        if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= label < k:
            raise InvalidInputError(f"label must be a class index in [0, {k}), got {label!r}")
        if predicted != int(label):
            raise MisclassifiedInputError(
                f"the model predicts class {predicted} but the label is {int(label)}: the CLEVER "
                "score of a misclassified input is meaningless (it measures the distance to "
                "the boundary of the wrong class); drop the input or fix the model" + see("Troubleshooting")
            )
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, numbers.Integral) or not 0 <= target < k:
            raise InvalidInputError(f"target must be a class index in [0, {k}), got {target!r}")
        if int(target) == predicted:
            raise InvalidInputError(
                f"target {target} is the predicted class; a targeted score needs another class"
            )
    return predicted
