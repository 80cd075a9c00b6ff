"""Models that misbehave away from x: a ModelError or InvalidInputError that names the problem, never torch's raw error.

Non-finite logits at sampled points, a model that fails only on batches, changes its input
in place, ignores or mixes the rows of a batch, or is in half precision where order 2 needs
float32 or float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from pytest_clever import InvalidInputError, ModelError, clever_score

from ..helpers import TANH_SETTINGS, TANH_X0, tanh_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _far_from_x0(out, x, value):
    far = torch.linalg.vector_norm(x - TANH_X0, dim=1, keepdim=True) > 0.3
    return torch.where(far, out * value, out)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_logits_at_sampled_points_are_a_model_error(value):
    """NaN logits at sampled points, not only at x, are the model's error, with where they start."""
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
        clever_score(
            lambda x: (
                _far_from_x0(net(x), x, 1.0)
                + torch.where(torch.linalg.vector_norm(x - TANH_X0, dim=1, keepdim=True) > 0.3, math.inf, 0.0)
            ),
            TANH_X0,
            **TANH_SETTINGS,
        )


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


@pytest.mark.parametrize("dtype", [torch.int64, torch.complex64])
def test_logits_that_are_not_real_floats_are_named_not_a_torch_error(dtype):
    net = tanh_net()

    def model(x):
        return net(x).to(dtype)

    with pytest.raises(InvalidInputError, match=rf"real floating-point logits, got dtype {dtype}"):
        clever_score(model, TANH_X0, **TANH_SETTINGS)


def test_a_float32_model_returning_float64_logits_scores_like_the_bare_model():
    # Batch-size rounding of the float32 computation (~1e-6 here) is not a model that mixes its batch.
    from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data

    model, x = cached_digits_cnn(), load_digits_data().x_test[0]
    settings = dict(radius=2.0, bounds=DIGITS_BOUNDS, n_batches=10, batch_size=16, seed=0)
    bare = clever_score(model, x, **settings)
    widened = clever_score(lambda batch: model(batch).double(), x, **settings)
    assert widened.target == bare.target
    assert widened.score == pytest.approx(bare.score, rel=1e-5)
