"""Borrow the user's model for a computation and hand it back exactly as it was.

Inside :func:`borrowed_model` the model is in eval mode (so samples in a
batch do not interact through BatchNorm statistics or dropout), its
parameters do not require grad (we only differentiate with respect to the
input, which also saves the weight-gradient work), it sits on the requested
device, and autograd is enabled even if the caller is under ``torch.no_grad()``
or ``torch.inference_mode()``. On exit the train flags, ``requires_grad``
flags, ``.grad`` fields, buffers and device are restored; a step of the
restore that fails never hides the error that ended the computation.

A model that is not an ``nn.Module`` (``lambda x: net(x)``,
``functools.partial(f, net)``, a bound method, a callable object) is searched
for the modules it uses (:func:`find_modules`), and those are borrowed.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from pytest_clever._engine.outputs import as_logits_model
from pytest_clever.errors import CleverError, CleverWarning, InvalidInputError

#: What the engine scores: a batch of inputs in, a batch of logits out (an ``nn.Module`` or any callable).
Model = Callable[[torch.Tensor], torch.Tensor]

# Layers whose output depends on the train flag (and would couple the samples of a batch).
_MODE_DEPENDENT = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)
#: How many wrappers deep (a lambda calling a partial calling a method ...) the search for modules goes.
SEARCH_DEPTH = 3


def find_modules(model: Model) -> tuple[list[nn.Module], bool]:
    """The ``nn.Module`` objects ``model`` calls, and whether the search saw everything it could hold.

    Looks into closure cells, default arguments and the global names of
    functions, the ``func``/``args``/``keywords`` of ``functools.partial``,
    the ``__self__`` of bound methods, the attributes of callable objects and
    the items of lists, tuples and dicts, up to :data:`SEARCH_DEPTH` wrappers
    deep. The second value is False when some object was left unexplored
    (too deep, or of a kind whose contents cannot be seen), so a module
    may hide there.
    """
    found: dict[int, nn.Module] = {}
    seen: set[int] = set()
    complete = True

    def visit(obj: Any, depth: int) -> None:
        nonlocal complete
        if isinstance(obj, nn.Module):
            found.setdefault(id(obj), obj)
            return
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, str, bytes, int, float, torch.Tensor)):
            return
        seen.add(id(obj))
        children: list[Any]
        if isinstance(obj, (list, tuple, set, frozenset)):
            children = list(obj)
        elif isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, functools.partial):
            children = [obj.func, *obj.args, *obj.keywords.values()]
        elif inspect.ismethod(obj):
            children = [obj.__self__, obj.__func__]
        elif isinstance(obj, types.FunctionType):
            globals_used = [obj.__globals__[n] for n in obj.__code__.co_names if n in obj.__globals__]
            cells = []
            for cell in obj.__closure__ or ():
                with contextlib.suppress(ValueError):  # an empty cell
                    cells.append(cell.cell_contents)
            children = [*cells, *(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values(), *globals_used]
        elif isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType)) or obj is None:
            return
        elif callable(obj) and hasattr(obj, "__dict__"):
            children = list(vars(obj).values())
        else:
            # Plain data is not looked into; an object with attributes might hold a module.
            complete = complete and not hasattr(obj, "__dict__")
            return
        if depth >= SEARCH_DEPTH:
            complete = complete and not any(_may_hold_modules(c) for c in children)
            return
        for child in children:
            visit(child, depth + 1)

    visit(model, 0)
    modules = list(found.values())
    # A module inside another found one is borrowed with it.
    inner = {id(sub) for m in modules for sub in m.modules() if sub is not m}
    return [m for m in modules if id(m) not in inner], complete


def _may_hold_modules(obj: Any) -> bool:
    if isinstance(obj, (type, types.ModuleType, str, bytes, int, float, torch.Tensor)) or obj is None:
        return False
    return (
        isinstance(obj, nn.Module) or callable(obj) or isinstance(obj, (list, tuple, dict)) or hasattr(obj, "__dict__")
    )


def _tensors(modules: list[nn.Module]) -> tuple[list[nn.Parameter], list[torch.Tensor]]:
    params, buffers, seen = [], [], set()
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
        for b in module.buffers():
            if id(b) not in seen:
                seen.add(id(b))
                buffers.append(b)
    return params, buffers


def model_device_and_dtype(model: Model) -> tuple[torch.device | None, torch.dtype | None]:
    """Device and floating dtype of the first parameter or buffer of the model's modules, if it has any."""
    params, buffers = _tensors(find_modules(model)[0])
    device, dtype = None, None
    for tensor in [*params, *buffers]:
        device = device or tensor.device
        if dtype is None and tensor.is_floating_point():
            dtype = tensor.dtype
    return device, dtype


def check_model_tensors(model: Model) -> None:
    """Reject weights autograd cannot use: on the ``meta`` device (no data) or created under ``inference_mode``."""
    params, buffers = _tensors(find_modules(model)[0])
    if any(t.is_meta for t in [*params, *buffers]):
        raise InvalidInputError(
            "the model's weights are on the 'meta' device, which holds no data: materialise them first, "
            "e.g. model.to_empty(device='cpu') followed by model.load_state_dict(...)"
        )
    inference = [t for t in [*params, *buffers] if t.is_floating_point() and t.is_inference()]
    if inference:
        raise InvalidInputError(
            f"{len(inference)} of the model's parameters and buffers are inference tensors (created under "
            "torch.inference_mode()), and inference tensors cannot be used in autograd: create or load the "
            "model outside inference_mode, or clone them there, e.g. "
            "`for m in model.modules(): m._parameters.update({k: nn.Parameter(p.clone()) for k, p in "
            "m._parameters.items() if p is not None}); m._buffers.update({k: b.clone() for k, b in "
            "m._buffers.items() if b is not None})`"
        )


def _describe(model: Model) -> str:
    return getattr(model, "__qualname__", None) or type(model).__name__


@contextlib.contextmanager
def borrowed_model(model: Model, device: torch.device | None = None) -> Iterator[Model]:
    """Yield ``model`` prepared for input-gradient computations; restore it (and the modules it uses) afterwards.

    What is yielded calls ``model`` and returns the logits tensor also when the model returns a
    Hugging Face-style output (:class:`~pytest_clever._engine.outputs.LogitsModel`): every call the
    engine makes goes through this one boundary.
    """
    roots, complete = find_modules(model)
    if not roots and not complete:
        warnings.warn(
            f"pytest-clever found no torch.nn.Module inside the callable {_describe(model)}, so it cannot check "
            "that the model is in eval mode (dropout or BatchNorm in training mode make scores random). "
            "Call model.eval() before scoring, or pass the module, a lambda or a functools.partial that uses it",
            CleverWarning,
            stacklevel=4,
        )
    check_model_tensors(model)
    modules = [m for root in roots for m in root.modules()]
    train_flags = [m.training for m in modules]
    params, all_buffers = _tensors(roots)
    requires_grad = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    # A forward pass that writes to buffers (counters, running statistics kept by hand)
    # would change the user's model and couple the samples: keep copies to restore and compare.
    buffers = [(b, b.detach().clone()) for b in all_buffers]
    devices = [next(iter([*r.parameters(), *r.buffers()]), None) for r in roots]
    moved = [
        (root, tensor.device)
        for root, tensor in zip(roots, devices, strict=True)
        if device is not None and tensor is not None and tensor.device != device
    ]

    mode_dependent = [type(m).__name__ for m in modules if m.training and isinstance(m, _MODE_DEPENDENT)]
    if mode_dependent:
        warnings.warn(
            f"the model was in training mode with {', '.join(sorted(set(mode_dependent)))} layers; "
            "pytest-clever scores it in eval mode (running statistics, no dropout) and restores "
            "the mode afterwards. Call model.eval() before scoring to silence this",
            CleverWarning,
            stacklevel=4,
        )
    failed: list[str] = []
    mutated = 0
    error: BaseException | None = None
    try:
        for root, _ in moved:
            root.to(device)
        for root in roots:
            root.eval()
        for p in params:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            yield as_logits_model(model)
    except BaseException as exc:
        error = exc
        raise
    finally:
        # Each step on its own: one that fails (and is reported) must not stop the others,
        # nor replace the error that ended the computation.
        def attempt(what: str, step: Callable[[], Any]) -> Any:
            try:
                return step()
            except Exception as exc:  # noqa: BLE001 - reported below, never raised over the original
                failed.append(f"{what} ({type(exc).__name__}: {exc})")
                return 0

        mutated = attempt("buffers", lambda: _restore_buffers(buffers))
        for root, original in moved:
            attempt(f"device {original}", functools.partial(root.to, original))
        for m, flag in zip(modules, train_flags, strict=True):
            m.training = flag
        for p, flag, grad in zip(params, requires_grad, grads, strict=True):
            attempt("requires_grad", functools.partial(p.requires_grad_, flag))
            attempt(".grad", functools.partial(setattr, p, "grad", grad))
        if failed:
            message = "pytest-clever could not restore part of the model's state: " + "; ".join(sorted(set(failed)))
            if error is not None:
                warnings.warn(message, CleverWarning, stacklevel=3)
            else:
                raise CleverError(message + ". Reload the model before using it again")
    if mutated:
        warnings.warn(
            f"the model's forward pass changed {mutated} buffer(s) while it was scored in eval mode; "
            "pytest-clever restored them, but scores of a model whose output depends on hidden "
            "state are not reproducible. Make forward() free of side effects in eval mode",
            CleverWarning,
            stacklevel=4,
        )


def _restore_buffers(buffers: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """Put back every buffer that changed; return how many had."""
    changed = 0
    with torch.no_grad():
        for buffer, saved in buffers:
            if buffer.shape != saved.shape or not torch.equal(buffer, saved.to(buffer.device)):
                changed += 1
                if buffer.shape == saved.shape:
                    buffer.copy_(saved)
    return changed
