"""``device=``: explicit CPU works and hands the model back where it was; CUDA (when present) agrees with CPU."""

import pytest
import torch

from pytest_clever import InvalidInputError, clever_score, clever_scores
from pytest_clever.extras.digits import DIGITS_BOUNDS

from ..helpers import SMALL_SAMPLE, TANH_SETTINGS, TANH_X0, exact_linear_score, tanh_net

X0 = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.2])
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def test_explicit_cpu_device_matches_the_default_and_keeps_the_model_in_place(linear_model):
    model, weight, bias = linear_model
    params = [p.detach().clone() for p in model.parameters()]
    default = clever_score(model, X0, radius=10.0, seed=3, **SMALL_SAMPLE)
    explicit = clever_score(model, X0, radius=10.0, seed=3, device="cpu", **SMALL_SAMPLE)
    assert explicit.device == "cpu"
    assert explicit.score == default.score and explicit.batch_maxima == default.batch_maxima
    assert explicit.score == pytest.approx(exact_linear_score(weight, bias, X0, 2, 10.0), rel=0.01)
    assert _model_device(model) == torch.device("cpu")
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))


def test_explicit_cpu_device_on_a_cnn_is_deterministic(digits, digits_cnn):
    kw = dict(radius=2.0, bounds=DIGITS_BOUNDS, seed=7, device=torch.device("cpu"), **SMALL_SAMPLE)
    first = clever_scores(digits_cnn, digits.x_test[:2], **kw)
    second = clever_scores(digits_cnn, digits.x_test[:2], **kw)
    assert [r.score for r in first] == [r.score for r in second]
    assert _model_device(digits_cnn) == torch.device("cpu")


@needs_cuda
def test_cuda_score_matches_the_exact_cpu_one_and_the_model_goes_back_to_cpu(linear_model):
    model, weight, bias = linear_model
    on_cpu = clever_score(model, X0, radius=10.0, seed=0, device="cpu", **SMALL_SAMPLE)
    on_cuda = clever_score(model, X0, radius=10.0, seed=0, device="cuda", **SMALL_SAMPLE)
    assert on_cuda.device.startswith("cuda")
    # Different devices draw different random points, but a linear model's score does not depend on them.
    assert on_cuda.score == pytest.approx(on_cpu.score, rel=1e-4)
    assert on_cuda.score == pytest.approx(exact_linear_score(weight, bias, X0, 2, 10.0), rel=0.01)
    assert _model_device(model) == torch.device("cpu")
    # The fingerprint is of the input as given: the same on any scoring device, and for the input on CUDA.
    on_cuda_input = clever_score(model, X0.cuda(), radius=10.0, seed=0, device="cuda", **SMALL_SAMPLE)
    assert on_cpu.fingerprint == on_cuda.fingerprint == on_cuda_input.fingerprint is not None


@needs_cuda
def test_cuda_is_deterministic_and_close_to_cpu_on_a_cnn(digits, digits_cnn):
    kw = dict(radius=2.0, bounds=DIGITS_BOUNDS, seed=11, n_batches=20, batch_size=64)
    first = clever_scores(digits_cnn, digits.x_test[:2], device="cuda", **kw)
    second = clever_scores(digits_cnn, digits.x_test[:2], device="cuda", **kw)
    assert [r.score for r in first] == [r.score for r in second]
    assert [r.batch_maxima for r in first] == [r.batch_maxima for r in second]
    on_cpu = clever_scores(digits_cnn, digits.x_test[:2], device="cpu", **kw)
    # Same law, different random streams: the estimates agree up to sampling noise.
    for a, b in zip(first, on_cpu, strict=True):
        assert a.score == pytest.approx(b.score, rel=0.25)
    assert _model_device(digits_cnn) == torch.device("cpu")


@needs_cuda
def test_a_cuda_model_scored_on_cpu_goes_back_to_cuda(linear_model):
    model, weight, bias = linear_model
    model.to("cuda")
    result = clever_score(model, X0, radius=10.0, seed=0, device="cpu", **SMALL_SAMPLE)
    assert result.device == "cpu"
    assert _model_device(model).type == "cuda"
    assert result.score == pytest.approx(exact_linear_score(weight, bias, X0, 2, 10.0), rel=0.01)


# --- devices that cannot hold the computation: refused before the model moves --------------------


def test_device_meta_is_refused_before_the_model_moves():
    """Moving the model to meta would destroy its weights: refuse the device before the model moves."""
    net = tanh_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InvalidInputError, match="device='meta' holds no data"):
        clever_score(net, TANH_X0, device="meta", **TANH_SETTINGS)
    assert all(v.device.type == "cpu" and torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_an_unavailable_device_is_a_clear_error():
    """A device this torch cannot use is named, with the way out, not left to torch ('cuda:99' fails everywhere)."""
    net = tanh_net()
    with pytest.raises(InvalidInputError, match="device 'cuda:99' is not available") as info:
        clever_score(net, TANH_X0, device="cuda:99", **TANH_SETTINGS)
    assert "device='cpu'" in str(info.value)
    assert next(net.parameters()).device.type == "cpu"


def test_a_model_or_input_on_meta_is_a_clear_error():
    """A model or input on meta is named as such, not left to 'Tensor.item() cannot be called on meta tensors'."""
    with pytest.raises(InvalidInputError, match="weights are on the 'meta' device.*to_empty"):
        clever_score(tanh_net().to("meta"), TANH_X0, **TANH_SETTINGS)
    with pytest.raises(InvalidInputError, match="x is on the 'meta' device"):
        clever_score(tanh_net(), TANH_X0.to("meta"), **TANH_SETTINGS)
