"""Borrowing the model for a scoring call: eval mode found through wrappers, the state handed back, errors never hidden.

Whatever calls the model (a module, a lambda, a partial, a bound method, a callable object),
the modules behind it are scored in eval mode without gradients and come back exactly as
they were, also when the call fails or the restore itself fails.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from pytest_clever import CleverError, CleverWarning, InvalidInputError, ModelError, clever_score
from pytest_clever._engine import model_state

from ..helpers import TANH_SETTINGS, TANH_X0, tanh_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dropout_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Tanh(), nn.Linear(16, 3)).train()


# -- models wrapped in lambda / partial / methods are scored in eval mode -------------------


class Holder:
    """A callable object that keeps the model in an attribute."""

    def __init__(self, net):
        self.net = net

    def __call__(self, x):
        return self.net(x)


def _call_net(net, x):
    return net(x)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda net: lambda x: net(x),
        lambda net: functools.partial(_call_net, net),
        lambda net: net.forward,
        lambda net: Holder(net),
        # a default argument, nested: the call in the default is the case under test
        lambda net: lambda x, f=functools.partial(_call_net, net): f(x),  # noqa: B008
    ],
    ids=["lambda", "partial", "bound method", "callable object", "lambda over partial"],
)
def test_wrapped_dropout_model_is_scored_in_eval_mode_and_restored(wrap):
    """Dropout in train mode would make a wrapped model's scores random: the modules behind the wrapper go to eval."""
    net = dropout_net()
    with pytest.warns(CleverWarning, match="training mode with Dropout"):
        expected = clever_score(net, TANH_X0, **TANH_SETTINGS).score
    assert net.training and all(p.requires_grad for p in net.parameters())
    with pytest.warns(CleverWarning, match="training mode with Dropout"):
        got = [clever_score(wrap(net), TANH_X0, **TANH_SETTINGS).score for _ in range(2)]
    assert got == [expected, expected]
    assert net.training and all(m.training for m in net.modules())
    assert all(p.requires_grad and p.grad is None for p in net.parameters())


def test_wrapped_batchnorm_model_keeps_its_running_statistics():
    """BatchNorm in train mode behind a lambda would change the score and its running statistics."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        net(torch.randn(32, 6))  # non-trivial running statistics
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.warns(CleverWarning, match="training mode with BatchNorm1d"):
        wrapped = clever_score(lambda x: net(x), TANH_X0, **TANH_SETTINGS).score
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.warns(CleverWarning):
        assert wrapped == clever_score(net, TANH_X0, **TANH_SETTINGS).score


def test_model_state_finds_the_modules_a_callable_uses():
    net, other = tanh_net(), tanh_net()
    ensemble = lambda x: net(x) + other(x)  # noqa: E731
    found, complete = model_state.find_modules(ensemble)
    assert {id(m) for m in found} == {id(net), id(other)} and complete
    # A submodule found next to its parent is borrowed with the parent.
    found, _ = model_state.find_modules(functools.partial(_call_net, net, x=net[0]))
    assert [id(m) for m in found] == [id(net)]
    assert model_state.find_modules(lambda x: x.sum(-1, keepdim=True)) == ([], True)


class Pipeline:
    """Not callable, holds the model: a wrapper pytest-clever does not look into."""

    def __init__(self, net):
        self.model = net


def test_a_callable_hiding_its_module_warns_that_train_mode_cannot_be_checked():
    """When the modules cannot be found, say that train mode cannot be checked."""
    net = tanh_net()
    pipeline = Pipeline(net)
    with pytest.warns(CleverWarning, match="cannot check that the model is in eval mode"):
        clever_score(lambda x: pipeline.model(x), TANH_X0, **TANH_SETTINGS)


def test_a_plain_function_of_tensors_does_not_warn(recwarn):
    weight = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    clever_score(lambda x: torch.tanh(x) @ weight.T, TANH_X0, **TANH_SETTINGS)
    assert not [w for w in recwarn if issubclass(w.category, CleverWarning)]


# -- weights created under inference_mode, and a restore that fails ---------------------------


def test_inference_mode_weights_give_a_clear_error_and_stay_as_they_were():
    """The real error comes through (no second error hides it) and every parameter keeps requires_grad."""
    with torch.inference_mode():
        net = tanh_net()
    with pytest.raises(InvalidInputError, match="inference tensors cannot be used in autograd"):
        clever_score(net, TANH_X0, **TANH_SETTINGS)
    assert all(p.requires_grad for p in net.parameters())
    # The way out the message gives works.
    for m in net.modules():
        m._parameters.update({k: nn.Parameter(p.clone()) for k, p in m._parameters.items() if p is not None})
        m._buffers.update({k: b.clone() for k, b in m._buffers.items() if b is not None})
    assert clever_score(net, TANH_X0, **TANH_SETTINGS).score == clever_score(tanh_net(), TANH_X0, **TANH_SETTINGS).score


def test_a_failing_restore_never_hides_the_original_error(monkeypatch):
    """Restore every part it can and let the error that ended the computation through."""
    net = tanh_net().train()

    def broken_restore(buffers):
        raise RuntimeError("cannot restore")

    monkeypatch.setattr(model_state, "_restore_buffers", broken_restore)
    with pytest.warns(CleverWarning, match="could not restore part of the model's state: buffers"):
        with pytest.raises(ModelError, match="the original"):
            with model_state.borrowed_model(net):
                assert not net.training and not any(p.requires_grad for p in net.parameters())
                raise ModelError("the original")
    assert net.training and all(p.requires_grad for p in net.parameters())
    # Without an error in flight, a failed restore is an error itself (the model changed).
    with pytest.raises(CleverError, match="Reload the model"):
        with model_state.borrowed_model(net):
            pass
