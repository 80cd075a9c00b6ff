"""Model outputs as users' models return them: the logits tensor, or a container that holds it.

Hugging Face classifiers return a ``ModelOutput`` (an ``OrderedDict`` subclass whose
fields are also attributes); other models return a dict. :class:`LogitsModel` wraps
the model the engine calls (:func:`~pytest_clever._engine.model_state.borrowed_model`
applies it, so every call of the engine goes through it) and hands on the tensor under
``"logits"`` or ``.logits``; the scores are those of the bare logits, bit for bit.
Any other output reaches the output checks unchanged, and :func:`output_hint` says
how to wrap it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

#: Opens the note a result carries when its logits came out of a container: a fact about the model's
#: output type, not a caveat about the estimate, so it is recorded but not warned about.
UNWRAPPED_NOTE = "logits taken from the model's output"


def logits_in(out: Any) -> torch.Tensor | None:
    """The logits tensor inside ``out``: its ``"logits"`` entry (a mapping) or ``.logits`` attribute, else None."""
    if isinstance(out, Mapping):
        found = out.get("logits")
        if isinstance(found, torch.Tensor):
            return found
    found = getattr(out, "logits", None)
    return found if isinstance(found, torch.Tensor) else None


def output_note(kind: str) -> str:
    """The note of a result whose model returned ``kind`` objects holding the logits."""
    return f"{UNWRAPPED_NOTE}: the model returns {kind} objects, and their logits were scored"


def is_output_note(note: str) -> bool:
    """Whether ``note`` is :func:`output_note`'s (recorded, not warned about)."""
    return note.startswith(UNWRAPPED_NOTE)


class LogitsModel:
    """``model`` with the logits taken out of a Hugging Face-style output; other outputs pass unchanged.

    ``kind`` is the type name of the container the logits came from, once a call has unwrapped one.
    Pickles as the bare model: an executor's workers wrap it again when they borrow it.
    """

    def __init__(self, model: Callable[[torch.Tensor], Any]) -> None:
        self.model = model
        self.kind: str | None = None

    def __call__(self, x: torch.Tensor) -> Any:
        out = self.model(x)
        if isinstance(out, torch.Tensor):
            return out
        found = logits_in(out)
        if found is None:
            return out
        self.kind = type(out).__name__
        return found

    def __reduce__(self) -> tuple[Callable[[Any], Any], tuple[Any]]:
        return _bare, (self.model,)


def _bare(model: Any) -> Any:
    return model


def as_logits_model(model: Callable[[torch.Tensor], Any]) -> LogitsModel:
    """``model`` wrapped in :class:`LogitsModel` (a wrapped model is wrapped afresh, never twice)."""
    return LogitsModel(model.model if isinstance(model, LogitsModel) else model)


def unwrapped_kind(model: Any) -> str | None:
    """The container type a :class:`LogitsModel` took the logits from, or None."""
    return model.kind if isinstance(model, LogitsModel) else None


def output_hint(out: Any) -> str:
    """How to wrap a model whose output ``out`` is neither a tensor nor a container with tensor logits."""
    name = type(out).__name__
    if isinstance(out, Mapping):
        keys = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
        if not keys:
            return f"it returned a {name} with keys {list(out)[:8]} and no tensor among their values"
        return (
            f"it returned a {name} with tensor entries {keys[:8]} and no tensor under 'logits': "
            f"pass a callable that returns the logits, e.g. lambda x: model(x)[{keys[0]!r}]"
        )
    if hasattr(out, "logits"):
        return (
            f"its .logits is a {type(out.logits).__name__}, not a tensor: pass a callable that returns "
            "the logits tensor"
        )
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return (
            f"it returned a {name} of {len(out)} whose first item is a tensor: if that item holds the logits, "
            "pass lambda x: model(x)[0]"
        )
    return f"it returned a {name}: pass a callable that returns the (batch, classes) logits tensor"
