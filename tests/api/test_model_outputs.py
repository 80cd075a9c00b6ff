"""Models as users write them: Hugging Face-style outputs are scored as their logits; others get a usable hint."""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch import nn

from pytest_clever import InvalidInputError, attack_check, clever_score, clever_scores

from ..helpers import TANH_SETTINGS, TANH_X0, tanh_net

ROOT = Path(__file__).resolve().parents[2]
XS = torch.stack([TANH_X0, TANH_X0.flip(0)])


class FakeModelOutput(OrderedDict):
    """What transformers' ``ModelOutput`` is: an ``OrderedDict`` whose fields are also attributes."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Attribute:
    """An output object with a ``.logits`` attribute and nothing else."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class Wrapped(nn.Module):
    """``tanh_net`` returning its logits inside a container of kind ``kind``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net = tanh_net()
        self.kind = kind

    def forward(self, x: torch.Tensor):
        logits = self.net(x)
        if self.kind == "dict":
            return {"hidden": x, "logits": logits}
        if self.kind == "model_output":
            return FakeModelOutput(logits=logits, hidden_states=None)
        if self.kind == "attribute":
            return Attribute(logits)
        if self.kind == "dict_without_logits":
            return {"scores": logits, "hidden": x}
        if self.kind == "none_logits":
            return Attribute(None)  # type: ignore[arg-type]
        return (logits, x)  # "tuple"


def _same(a, b) -> None:
    assert a.score == b.score
    assert a.batch_maxima == b.batch_maxima
    assert {j: s.score for j, s in a.per_target.items()} == {j: s.score for j, s in b.per_target.items()}


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize(
    ("kind", "type_name"), [("dict", "dict"), ("model_output", "FakeModelOutput"), ("attribute", "Attribute")]
)
def test_logits_inside_an_output_score_bit_for_bit_as_the_bare_model(kind, type_name, order):
    bare = clever_scores(tanh_net(), XS, order=order, **TANH_SETTINGS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the note is recorded, not warned about
        wrapped = clever_scores(Wrapped(kind), XS, order=order, **TANH_SETTINGS)
    for a, b in zip(bare, wrapped, strict=True):
        _same(a, b)
        assert not any("logits taken from" in n for n in a.notes)
        assert b.notes[0] == (
            f"logits taken from the model's output: the model returns {type_name} objects, and their logits were scored"
        )


def test_a_callable_returning_a_model_output_and_an_executor_unwrap_too():
    bare = clever_score(tanh_net(), TANH_X0, **TANH_SETTINGS)
    net = tanh_net()
    via_lambda = clever_score(lambda x: FakeModelOutput(logits=net(x)), TANH_X0, **TANH_SETTINGS)
    _same(bare, via_lambda)
    with ThreadPoolExecutor(2) as pool:
        on_pool = clever_scores(Wrapped("model_output"), XS, executor=pool, **TANH_SETTINGS)
    for a, b in zip(clever_scores(tanh_net(), XS, **TANH_SETTINGS), on_pool, strict=True):
        _same(a, b)
        assert "FakeModelOutput" in b.notes[0]


def test_the_attack_check_unwraps_the_logits():
    result = clever_score(tanh_net(), TANH_X0, **TANH_SETTINGS)
    bare = attack_check(tanh_net(), TANH_X0, result, steps=10, restarts=2, seed=0)
    wrapped = attack_check(Wrapped("model_output"), TANH_X0, result, steps=10, restarts=2, seed=0)
    assert (bare.distortion, bare.adversarial_class) == (wrapped.distortion, wrapped.adversarial_class)


@pytest.mark.parametrize(
    ("kind", "hint"),
    [
        (
            "dict_without_logits",
            "tensor entries ['scores', 'hidden'] and no tensor under 'logits': pass a callable "
            "that returns the logits, e.g. lambda x: model(x)['scores']",
        ),
        ("none_logits", "its .logits is a NoneType, not a tensor"),
        (
            "tuple",
            "it returned a tuple of 2 whose first item is a tensor: if that item holds the logits, "
            "pass lambda x: model(x)[0]",
        ),
    ],
)
def test_other_outputs_are_an_error_with_a_hint_that_works(kind, hint):
    with pytest.raises(InvalidInputError) as caught:
        clever_score(Wrapped(kind), TANH_X0, **TANH_SETTINGS)
    message = str(caught.value)
    assert message.startswith("the model must return a tensor of logits, or a mapping or object holding")
    assert hint in message
    page = re.search(r"see the documentation page (docs/[\w/.-]+\.md)", message)
    assert page is not None
    if (ROOT / "docs").is_dir():  # the wheel suite runs without docs/; tests/docs checks every pointer's page
        assert "Hugging Face models and outputs that are not a tensor" in (ROOT / page.group(1)).read_text()
    if kind == "dict_without_logits":  # the hint's own lambda scores the model, as the bare one
        model = Wrapped(kind)
        _same(
            clever_score(lambda x: model(x)["scores"], TANH_X0, **TANH_SETTINGS),
            clever_score(tanh_net(), TANH_X0, **TANH_SETTINGS),
        )


def test_the_fixture_scores_a_model_output_as_the_bare_model(pytester):
    pytester.makepyfile(
        """
from collections import OrderedDict

import torch
from torch import nn

from pytest_clever import clever_score


class Output(OrderedDict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).eval()


class HF(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = net()

    def forward(self, x):
        return Output(logits=self.net(x))


def test_same(clever):
    xs = torch.rand(3, 6, generator=torch.Generator().manual_seed(0))
    kw = dict(radius=0.5, n_batches=10, batch_size=16)
    hf = clever.scores(HF(), xs, **kw)
    # Each result's seed reproduces it: the bare model scored with it gives the same numbers.
    bare = [clever_score(net(), x, seed=r.seed, **kw) for x, r in zip(xs, hf)]
    assert [r.score for r in hf] == [r.score for r in bare]
    assert [r.batch_maxima for r in hf] == [r.batch_maxima for r in bare]
    assert all(r.notes[0].endswith("returns Output objects, and their logits were scored") for r in hf)
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error::pytest_clever.CleverWarning")
    result.assert_outcomes(passed=1)
