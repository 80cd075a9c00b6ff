"""The bad-input matrix: one row per way a user can hand us something odd.

Each row says what must happen: a clear error (type and the words that name
the problem), a warning (and still a score), or a plain valid score. Every
row also checks that the model comes back exactly as it was.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from pytest_clever import (
    CleverWarning,
    GradientMaskingError,
    InvalidInputError,
    MisclassifiedInputError,
    ModelError,
    NotTwiceDifferentiableError,
    attack_check,
    clever_score,
    clever_scores,
)

from ..helpers import TANH_SETTINGS, TANH_X0, tanh_net


def relu_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x):
        return self.body(x)


class Counting(nn.Module):
    """A forward pass with a side effect: it counts its calls in a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tanh_net()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def _prediction(model, x=TANH_X0) -> int:
    with torch.no_grad():
        return int(model(x.unsqueeze(0)).argmax())


def _raise(x):
    raise RuntimeError("boom inside the model")


@dataclass
class Case:
    """What to call and what must happen: 'raises' / 'warns' (with type and message) or 'valid'."""

    id: str
    outcome: str
    model: Callable[[], Any] = tanh_net
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: type | None = None
    message: str = ""
    x: Callable[[], Any] = lambda: TANH_X0
    context: Callable[[], Any] | None = None


def _single_only(net):
    def model(x):
        if x.shape[0] > 2:
            raise RuntimeError("only small batches")
        return net(x)

    return model


def _nan_far(net):
    def model(x):
        out = net(x)
        return torch.where(torch.linalg.vector_norm(x - TANH_X0, dim=1, keepdim=True) > 0.3, out * math.nan, out)

    return model


def _in_place(net):
    def model(x):
        with torch.no_grad():
            x.mul_(0.5)
        return net(x)

    return model


def _first_row_only(net):
    def model(x):
        return net(x[:1])

    return model


def _rows_mixed(net):
    def model(x):
        return net(x[:1]).expand(x.shape[0], -1)

    return model


def _rounded(net):
    def model(x):
        return net(torch.round(x * 4) / 4)

    return model


def _inference_weights():
    with torch.inference_mode():
        return tanh_net()


def _frozen_first_layer():
    model = tanh_net()
    model[0].weight.requires_grad_(False)
    return model


def _bn_in_train_mode():
    model = BatchNormNet()
    model.train()
    return model


CASES = [
    # -- the model's output ---------------------------------------------------------------
    Case(
        "probabilities instead of logits",
        "warns",
        lambda: nn.Sequential(tanh_net(), nn.Softmax(-1)),
        error=CleverWarning,
        message="look like probabilities",
    ),
    Case("1-D output", "raises", lambda: lambda x: x.sum(-1), error=InvalidInputError, message="2-D logits"),
    Case(
        "3-D output",
        "raises",
        lambda: lambda x: x.unsqueeze(-1).repeat(1, 1, 2),
        error=InvalidInputError,
        message="2-D logits",
    ),
    Case(
        "single class",
        "raises",
        lambda: lambda x: x.sum(-1, keepdim=True),
        error=InvalidInputError,
        message="at least 2 classes",
    ),
    Case(
        "output not a tensor",
        "raises",
        lambda: lambda x: x.tolist(),
        error=InvalidInputError,
        message="tensor of logits",
    ),
    Case(
        "NaN logits",
        "raises",
        lambda: lambda x: x[:, :3] * math.nan,
        error=InvalidInputError,
        message="NaN or infinite logits",
    ),
    Case("model raises", "raises", lambda: _raise, error=ModelError, message="boom inside the model"),
    Case(
        "model fails only on sampled batches",
        "raises",
        lambda: _single_only(tanh_net()),
        error=ModelError,
        message="although it worked on x itself",
    ),
    Case(
        "NaN logits at sampled points only",
        "raises",
        lambda: _nan_far(tanh_net()),
        error=ModelError,
        message="NaN or infinite logits at",
    ),
    Case(
        "model changes its input in place",
        "raises",
        lambda: _in_place(tanh_net()),
        error=ModelError,
        message="changed its input in place",
    ),
    Case(
        "model ignores the batch dimension",
        "raises",
        lambda: _first_row_only(tanh_net()),
        error=InvalidInputError,
        message="one row of logits per input row",
    ),
    Case(
        "model mixes the rows of a batch",
        "raises",
        lambda: _rows_mixed(tanh_net()),
        error=InvalidInputError,
        message="depend on the other inputs of its batch",
    ),
    Case(
        "tie between top classes",
        "raises",
        lambda: lambda x: torch.zeros(x.shape[0], 3) + 0 * x.sum(),
        error=MisclassifiedInputError,
        message="tie at the top",
    ),
    # -- the input ------------------------------------------------------------------------
    Case(
        "NaN input",
        "raises",
        x=lambda: torch.tensor([math.nan] + [0.5] * 5),
        error=InvalidInputError,
        message="contains 1 NaN or infinite",
    ),
    Case(
        "inf input",
        "raises",
        x=lambda: torch.tensor([math.inf] + [0.5] * 5),
        error=InvalidInputError,
        message="NaN or infinite",
    ),
    Case(
        "input outside bounds",
        "raises",
        kwargs={"bounds": (0.0, 0.5)},
        error=InvalidInputError,
        message="outside bounds (0.0, 0.5)",
    ),
    Case("integer input", "raises", x=lambda: torch.arange(6), error=InvalidInputError, message="floating-point"),
    Case("empty input", "raises", x=lambda: torch.zeros(0), error=InvalidInputError, message="empty"),
    Case(
        "batch of inputs to clever_score",
        "raises",
        x=lambda: TANH_X0.repeat(4, 1),
        error=InvalidInputError,
        message="use clever_scores",
    ),
    Case("numpy input", "valid", x=lambda: TANH_X0.numpy().astype(np.float32)),
    Case("float64 input to a float32 model", "valid", x=lambda: TANH_X0.double()),
    Case("float64 model", "valid", lambda: tanh_net(torch.float64)),
    Case("explicit batch dimension of 1", "valid", x=lambda: TANH_X0.unsqueeze(0)),
    # -- labels and targets ---------------------------------------------------------------
    Case(
        "misclassified input with label",
        "raises",
        kwargs={"label": (_prediction(tanh_net()) + 1) % 3},
        error=MisclassifiedInputError,
        message="misclassified",
    ),
    Case(
        "label out of range",
        "raises",
        kwargs={"label": 9},
        error=InvalidInputError,
        message="label must be a class index in [0, 3)",
    ),
    Case(
        "target is the predicted class",
        "raises",
        kwargs={"target": _prediction(tanh_net())},
        error=InvalidInputError,
        message="is the predicted class",
    ),
    Case(
        "target out of range",
        "raises",
        kwargs={"target": 3},
        error=InvalidInputError,
        message="target must be a class index in [0, 3)",
    ),
    Case("float target", "raises", kwargs={"target": 2.0}, error=InvalidInputError, message="not a class index"),
    Case("0-d integer tensor as target", "valid", kwargs={"target": torch.tensor((_prediction(tanh_net()) + 1) % 3)}),
    Case("numpy integer as label", "valid", kwargs={"label": np.int64(_prediction(tanh_net()))}),
    # -- settings -------------------------------------------------------------------------
    Case("radius zero", "raises", kwargs={"radius": 0.0}, error=InvalidInputError, message="radius must be"),
    Case("radius negative", "raises", kwargs={"radius": -1.0}, error=InvalidInputError, message="radius must be"),
    Case("radius NaN", "raises", kwargs={"radius": math.nan}, error=InvalidInputError, message="radius must be"),
    Case(
        "too few batches for an EVT fit",
        "raises",
        kwargs={"n_batches": 9},
        error=InvalidInputError,
        message="n_batches must be an integer >= 10",
    ),
    Case(
        "batch_size 0",
        "raises",
        kwargs={"batch_size": 0},
        error=InvalidInputError,
        message="batch_size must be an integer >= 1",
    ),
    Case("unknown norm", "raises", kwargs={"norm": 3}, error=InvalidInputError, message="unknown norm 3"),
    Case("bounds reversed", "raises", kwargs={"bounds": (1.0, 0.0)}, error=InvalidInputError, message="lo < hi"),
    Case("order 3", "raises", kwargs={"order": 3}, error=InvalidInputError, message="order must be 1 or 2"),
    Case(
        "unknown curvature method",
        "raises",
        kwargs={"order": 2, "curvature": "max"},
        error=InvalidInputError,
        message="curvature must be one of",
    ),
    Case("chunk_size 0", "raises", kwargs={"chunk_size": 0}, error=InvalidInputError, message="chunk_size"),
    Case(
        "unknown device", "raises", kwargs={"device": "warp-drive"}, error=InvalidInputError, message="unknown device"
    ),
    Case("meta device", "raises", kwargs={"device": "meta"}, error=InvalidInputError, message="holds no data"),
    Case(
        "unavailable device",
        "raises",
        kwargs={"device": "cuda:99"},
        error=InvalidInputError,
        message="is not available",
    ),
    Case("chunk_size negative", "raises", kwargs={"chunk_size": -1}, error=InvalidInputError, message="chunk_size"),
    Case("seed above 2**64", "raises", kwargs={"seed": 2**64 + 5}, error=InvalidInputError, message="seed must be"),
    Case("float seed", "raises", kwargs={"seed": 1.7}, error=InvalidInputError, message="seed must be"),
    Case("bool radius", "raises", kwargs={"radius": True}, error=InvalidInputError, message="radius must be"),
    Case(
        "order 2 on a float16 model",
        "raises",
        lambda: tanh_net(torch.float16),
        kwargs={"order": 2},
        error=InvalidInputError,
        message="order=2 needs a float32 or float64 model",
    ),
    # -- gradients ------------------------------------------------------------------------
    Case(
        "masked gradients (rounding in forward)",
        "raises",
        lambda: _rounded(tanh_net()),
        kwargs={"bounds": (0.0, 1.0)},
        error=GradientMaskingError,
        message="BPDA",
    ),
    Case(
        "order 2 on a ReLU model",
        "raises",
        relu_net,
        kwargs={"order": 2},
        error=NotTwiceDifferentiableError,
        message="twice-differentiable",
    ),
    # -- model state ----------------------------------------------------------------------
    Case(
        "BatchNorm left in train mode",
        "warns",
        _bn_in_train_mode,
        error=CleverWarning,
        message="training mode with BatchNorm1d",
    ),
    Case("forward mutates a buffer", "warns", Counting, error=CleverWarning, message="changed 1 buffer(s)"),
    Case(
        "model on the meta device",
        "raises",
        lambda: tanh_net().to("meta"),
        error=InvalidInputError,
        message="'meta' device",
    ),
    Case(
        "weights created under inference_mode",
        "raises",
        lambda: _inference_weights(),
        error=InvalidInputError,
        message="inference tensors cannot be used in autograd",
    ),
    Case("float16 model", "valid", lambda: tanh_net(torch.float16)),
    Case("parameters with requires_grad=False", "valid", _frozen_first_layer),
    Case("called under torch.no_grad()", "valid", context=torch.no_grad),
    Case("called under torch.inference_mode()", "valid", context=torch.inference_mode),
    Case("torch.jit.script model", "valid", lambda: torch.jit.script(tanh_net())),
    Case(
        "channels-last image input",
        "valid",
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval(),
        x=lambda: torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(0)).contiguous(
            memory_format=torch.channels_last
        )[0],
    ),
]


def _state(model) -> Any:
    if not isinstance(model, nn.Module):
        return None
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [p.grad for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def _same_state(before, after) -> bool:
    if before is None:
        return True
    flags, req, grads, tensors = before
    return (
        flags == after[0]
        and req == after[1]
        and all(a is b for a, b in zip(grads, after[2], strict=True))
        # Meta tensors hold no values to compare: they must still be on meta.
        and all(after[3][k].is_meta if tensors[k].is_meta else torch.equal(tensors[k], after[3][k]) for k in tensors)
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_matrix(case: Case) -> None:
    model = case.model()
    before = _state(model)
    call = lambda: clever_score(model, case.x(), **{**TANH_SETTINGS, **case.kwargs})  # noqa: E731
    context = case.context() if case.context else torch.enable_grad()
    with context:
        if case.outcome == "raises":
            with pytest.raises(case.error, match=re.escape(case.message)) as info:
                call()
            # The message must stand on its own: no bare torch internals.
            assert len(str(info.value)) > 20
        elif case.outcome == "warns":
            with pytest.warns(case.error, match=re.escape(case.message)):
                result = call()
            assert 0 < result.score <= TANH_SETTINGS["radius"]
        else:
            result = call()
            assert 0 < result.score <= TANH_SETTINGS["radius"] and math.isfinite(result.score)
    assert _same_state(before, _state(model)), "the model did not come back as it was"


def test_the_matrix_covers_errors_warnings_and_valid_models():
    outcomes = [c.outcome for c in CASES]
    assert len(CASES) >= 40
    assert outcomes.count("valid") >= 8 and outcomes.count("warns") >= 3


# --- the same checks at every entry point, and no silent coercion -------------------------------


@pytest.mark.parametrize("seed", [2**64 + 5, -1, 1.7, 1.9, True, 2**63])
def test_bad_seeds_are_refused_by_every_entry_point(seed):
    net = tanh_net()
    with pytest.raises(InvalidInputError, match="seed must be an integer"):
        clever_score(net, TANH_X0, **{**TANH_SETTINGS, "seed": seed})
    with pytest.raises(InvalidInputError, match="seed must be an integer"):
        clever_scores(net, TANH_X0.repeat(2, 1), **{**TANH_SETTINGS, "seed": seed})
    result = clever_score(net, TANH_X0, **TANH_SETTINGS)
    with pytest.raises(InvalidInputError, match="seed must be an integer"):
        attack_check(net, TANH_X0, result, seed=seed)


@pytest.mark.parametrize("chunk_size", [-1, 0, 1.5, True])
def test_bad_chunk_sizes_are_refused(chunk_size):
    with pytest.raises(InvalidInputError, match="chunk_size must be an integer >= 1"):
        clever_scores(tanh_net(), TANH_X0.repeat(2, 1), chunk_size=chunk_size, **TANH_SETTINGS)


def test_class_indices_as_integer_scalars_are_accepted_and_floats_refused():
    net = tanh_net()
    predicted = int(net(TANH_X0.unsqueeze(0)).argmax())
    other = (predicted + 1) % 3
    expected = clever_score(net, TANH_X0, target=other, **TANH_SETTINGS).score
    for target in (torch.tensor(other), np.int64(other), np.array(other)):
        assert clever_score(net, TANH_X0, target=target, **TANH_SETTINGS).score == expected
    unlabelled = clever_score(net, TANH_X0, **TANH_SETTINGS).score
    assert clever_score(net, TANH_X0, label=torch.tensor(predicted), **TANH_SETTINGS).score == unlabelled
    assert clever_score(net, TANH_X0, label=np.int32(predicted), **TANH_SETTINGS).score == unlabelled
    for bad in (float(other), torch.tensor(float(other)), torch.tensor(True), True, np.float64(other)):
        with pytest.raises(InvalidInputError, match="not a class index"):
            clever_score(net, TANH_X0, target=bad, **TANH_SETTINGS)
        with pytest.raises(InvalidInputError, match="label must be a class index"):
            clever_score(net, TANH_X0, label=bad, **TANH_SETTINGS)


@pytest.mark.parametrize("name, value", [("radius", True), ("n_batches", 10.0), ("batch_size", True)])
def test_bools_and_floats_are_not_coerced(name, value):
    with pytest.raises(InvalidInputError, match=f"{name} must be"):
        clever_score(tanh_net(), TANH_X0, **{**TANH_SETTINGS, name: value})
