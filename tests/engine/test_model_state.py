"""Regression tests for the engine findings of issue 14: wrapped models, chunking, broken models, devices, values.

Each test failed before its fix (the issue's finding number is in the name's docstring).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from pytest_clever import CleverError, CleverWarning, InvalidInputError, ModelError, attack_check, clever_score, clever_scores
from pytest_clever._engine import model_state
from pytest_clever.runs.compare import DropRule

from ..helpers import TANH_SETTINGS, TANH_X0, tanh_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")

def dropout_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Tanh(), nn.Linear(16, 3)).train()


class Rowwise(nn.Module):
    """A tanh MLP whose products are elementwise multiplications summed per row.

    No BLAS kernel is involved, so a row's logits (and gradients) are the same
    bits whatever the batch size -- unlike nn.Linear on CPU, whose kernels
    round differently for batches of 1, 2, 7 and 64 rows.
    """

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(16, 6, generator=gen))
        self.w2 = nn.Parameter(torch.randn(3, 16, generator=gen) / 4)

    def forward(self, x):
        hidden = torch.tanh((x.unsqueeze(1) * self.w1).sum(-1))
        return (hidden.unsqueeze(1) * self.w2).sum(-1)


# -- finding 2: models wrapped in lambda / partial / methods are scored in eval mode ------------


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
        lambda net: (lambda x: net(x)),
        lambda net: functools.partial(_call_net, net),
        lambda net: net.forward,
        lambda net: Holder(net),
        lambda net: (lambda x, f=functools.partial(_call_net, net): f(x)),  # a default argument, nested
    ],
    ids=["lambda", "partial", "bound method", "callable object", "lambda over partial"],
)
def test_wrapped_dropout_model_is_scored_in_eval_mode_and_restored(wrap):
    """Finding 2: dropout in train mode made wrapped scores random (0.019 / 0.13 / 0.028 against 0.25)."""
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
    """Finding 2: BatchNorm in train mode behind a lambda doubled the score and changed running stats."""
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
    """Finding 2: failing to find the modules, say that train mode cannot be checked."""
    net = tanh_net()
    pipeline = Pipeline(net)
    with pytest.warns(CleverWarning, match="cannot check that the model is in eval mode"):
        clever_score(lambda x: pipeline.model(x), TANH_X0, **TANH_SETTINGS)


def test_a_plain_function_of_tensors_does_not_warn(recwarn):
    weight = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    clever_score(lambda x: torch.tanh(x) @ weight.T, TANH_X0, **TANH_SETTINGS)
    assert not [w for w in recwarn if issubclass(w.category, CleverWarning)]


# -- finding 4: chunk_size is a memory setting -----------------------------------------------


@pytest.mark.filterwarnings("ignore::pytest_clever.WeakFitWarning")  # tiny settings; the bits are what is tested
@pytest.mark.parametrize(("order", "norm"), [(1, 2), (1, "inf"), (1, 1), pytest.param(2, 2, marks=pytest.mark.slow)])
def test_chunk_size_does_not_change_the_score(order, norm):
    """Finding 4: L2 scores were 0.4015 / 0.4012 / 0.3926 for chunks None / 64 / 7."""
    model = Rowwise().eval()
    results = [
        clever_score(model, TANH_X0, norm=norm, order=order, chunk_size=chunk, **TANH_SETTINGS) for chunk in (None, 64, 7, 1)
    ]
    assert len({r.score for r in results}) == 1, [r.score for r in results]
    assert len({r.batch_maxima for r in results}) == 1
    assert 0 < results[0].score < TANH_SETTINGS["radius"]
    report = [clever_scores(model, TANH_X0.repeat(2, 1), norm=norm, order=order, chunk_size=c, **TANH_SETTINGS) for c in (None, 5)]
    assert report[0].scores.tolist() == report[1].scores.tolist()


def test_the_sampled_points_do_not_depend_on_the_chunking():
    """Finding 4, for any model: the random stream is drawn in blocks seeded per (seed, block)."""
    from pytest_clever._engine.maxima import _BallStream, sample_block
    from pytest_clever.core.validation import check_settings

    settings = check_settings(norm=2, radius=0.5, n_batches=10, batch_size=16, bounds=(0.0, 1.0))
    whole = _BallStream(TANH_X0, settings, 3).take(0, 3000)
    block = sample_block(TANH_X0)
    assert block == 1024  # small inputs: large blocks; images: a few MiB of points per block
    assert sample_block(torch.zeros(3, 224, 224)) == 27
    for chunk in (1, 7, 64, block, 1500):
        stream = _BallStream(TANH_X0, settings, 3)
        pieces = torch.cat([stream.take(start, min(chunk, 3000 - start)) for start in range(0, 3000, chunk)])
        assert torch.equal(pieces, whole)
    assert not torch.equal(_BallStream(TANH_X0, settings, 4).take(0, 3000), whole)


# -- finding 5: NaN / Inf logits at sampled points --------------------------------------------


def _far_from_x0(out, x, value):
    far = torch.linalg.vector_norm(x - TANH_X0, dim=1, keepdim=True) > 0.3
    return torch.where(far, out * value, out)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_logits_at_sampled_points_are_a_model_error(value):
    """Finding 5: NaN logits at sampled points were accepted silently (only x was checked)."""
    net = tanh_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ModelError, match=r"NaN or infinite logits at \d+ of 160 sampled points") as info:
        clever_score(lambda x: _far_from_x0(net(x), x, value), TANH_X0, **TANH_SETTINGS)
    message = str(info.value)
    low, high = (float(v) for v in message.split("at distances ")[1].split(" from x")[0].split(" to "))
    assert 0.3 < low <= high <= 0.5 and "first in batch 0" in message and "bounds=" in message
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_inf_logits_with_finite_gradients_are_a_model_error():
    net = tanh_net()
    # The constant branch has a zero gradient: only the logits show the problem.
    with pytest.raises(ModelError, match="NaN or infinite logits"):
        clever_score(lambda x: _far_from_x0(net(x), x, 1.0) + torch.where(
            torch.linalg.vector_norm(x - TANH_X0, dim=1, keepdim=True) > 0.3, math.inf, 0.0), TANH_X0, **TANH_SETTINGS)


# -- finding 6: weights created under inference_mode ------------------------------------------


def test_inference_mode_weights_give_a_clear_error_and_stay_as_they_were():
    """Finding 6: a second error hid the real one and every parameter was left with requires_grad=False."""
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
    """Finding 6: restore every part it can and let the error that ended the computation through."""
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


# -- finding 7: devices -----------------------------------------------------------------------


def test_device_meta_is_refused_before_the_model_moves():
    """Finding 7: device='meta' destroyed the model's weights."""
    net = tanh_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InvalidInputError, match="device='meta' holds no data"):
        clever_score(net, TANH_X0, device="meta", **TANH_SETTINGS)
    assert all(v.device.type == "cpu" and torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_an_unavailable_device_is_a_clear_error():
    """Finding 7: device='cuda' on a CPU-only torch gave a raw AssertionError ('cuda:99' fails everywhere)."""
    net = tanh_net()
    with pytest.raises(InvalidInputError, match="device 'cuda:99' is not available") as info:
        clever_score(net, TANH_X0, device="cuda:99", **TANH_SETTINGS)
    assert "device='cpu'" in str(info.value)
    assert next(net.parameters()).device.type == "cpu"


def test_a_model_or_input_on_meta_is_a_clear_error():
    """Finding 14: a model on meta gave 'Tensor.item() cannot be called on meta tensors'."""
    with pytest.raises(InvalidInputError, match="weights are on the 'meta' device.*to_empty"):
        clever_score(tanh_net().to("meta"), TANH_X0, **TANH_SETTINGS)
    with pytest.raises(InvalidInputError, match="x is on the 'meta' device"):
        clever_score(tanh_net(), TANH_X0.to("meta"), **TANH_SETTINGS)


# -- finding 14: raw torch errors from odd models -----------------------------------------------


def test_a_model_failing_only_on_sampled_batches_is_a_model_error():
    net = tanh_net()

    def single_only(x):
        if x.shape[0] > 2:
            raise RuntimeError("batch boom")
        return net(x)

    with pytest.raises(ModelError, match=r"on a chunk of 160 sampled points.*worked on x itself: batch boom"):
        clever_score(single_only, TANH_X0, **TANH_SETTINGS)
    with pytest.raises(ModelError, match=r"chunk of 7 sampled points"):
        clever_score(single_only, TANH_X0, chunk_size=7, **TANH_SETTINGS)


def _in_place_under_no_grad(net):
    def model(x):
        with torch.no_grad():
            x.mul_(0.5)
        return net(x)

    return model


def _in_place_with_autograd(net):
    def model(x):
        x.clamp_(0.0, 0.65)
        return net(x)

    return model


@pytest.mark.parametrize("make", [_in_place_under_no_grad, _in_place_with_autograd])
def test_a_model_changing_its_input_in_place_is_a_model_error_and_x_is_kept(make):
    x = TANH_X0.clone()
    with pytest.raises(ModelError, match="changed its input in place|change its input in place") as info:
        clever_score(make(tanh_net()), x, **TANH_SETTINGS)
    assert "x = x.clone()" in str(info.value)
    assert torch.equal(x, TANH_X0)


def test_a_model_ignoring_the_batch_dimension_is_a_clear_error():
    net = tanh_net()
    with pytest.raises(InvalidInputError, match="one row of logits per input row"):
        clever_score(lambda x: net(x[:1]), TANH_X0, **TANH_SETTINGS)
    with pytest.raises(InvalidInputError, match="depend on the other inputs of its batch"):
        clever_score(lambda x: net(x[:1]).expand(x.shape[0], -1), TANH_X0, **TANH_SETTINGS)
    with pytest.raises(InvalidInputError, match="depend on the other inputs of its batch"):
        clever_score(lambda x: net(x - x.mean(0) + TANH_X0), TANH_X0, **TANH_SETTINGS)


def test_order_2_with_a_half_precision_model_is_a_clear_error():
    with pytest.raises(InvalidInputError, match=r"order=2 needs a float32 or float64 model.*\.float\(\)"):
        clever_score(tanh_net(torch.float16), TANH_X0, order=2, **TANH_SETTINGS)
    # First order works in half precision.
    assert 0 < clever_score(tanh_net(torch.float16), TANH_X0, **TANH_SETTINGS).score <= TANH_SETTINGS["radius"]


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


def test_the_fixture_takes_numpy_inputs(pytester):
    pytester.makepyfile(
        """
import numpy as np
import torch
from torch import nn


def test_numpy(clever):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    xs = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    report = clever.scores(model, xs, radius=0.5, n_batches=10, batch_size=16)
    assert len(report.scores) == 2 and report.min > 0
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


# -- finding 15: silent coercion ---------------------------------------------------------------


def test_class_indices_as_integer_scalars_are_accepted_and_floats_refused():
    net = tanh_net()
    predicted = int(net(TANH_X0.unsqueeze(0)).argmax())
    other = (predicted + 1) % 3
    expected = clever_score(net, TANH_X0, target=other, **TANH_SETTINGS).score
    for target in (torch.tensor(other), np.int64(other), np.array(other)):
        assert clever_score(net, TANH_X0, target=target, **TANH_SETTINGS).score == expected
    assert clever_score(net, TANH_X0, label=torch.tensor(predicted), **TANH_SETTINGS).score == clever_score(net, TANH_X0, **TANH_SETTINGS).score
    assert clever_score(net, TANH_X0, label=np.int32(predicted), **TANH_SETTINGS).score == clever_score(net, TANH_X0, **TANH_SETTINGS).score
    for bad in (float(other), torch.tensor(float(other)), torch.tensor(True), True, np.float64(other)):
        with pytest.raises(InvalidInputError, match="not a class index"):
            clever_score(net, TANH_X0, target=bad, **TANH_SETTINGS)
        with pytest.raises(InvalidInputError, match="label must be a class index"):
            clever_score(net, TANH_X0, label=bad, **TANH_SETTINGS)


@pytest.mark.parametrize("name, value", [("radius", True), ("n_batches", 10.0), ("batch_size", True)])
def test_bools_and_floats_are_not_coerced(name, value):
    with pytest.raises(InvalidInputError, match=f"{name} must be"):
        clever_score(tanh_net(), TANH_X0, **{**TANH_SETTINGS, name: value})


@pytest.mark.parametrize("rule", ["mean:nan", "mean:nan%", "min:inf", "mean:-1"])
def test_a_drop_rule_that_could_never_fire_is_refused(rule):
    with pytest.raises(ValueError, match="drop must be a finite number >= 0"):
        DropRule.parse(rule)
