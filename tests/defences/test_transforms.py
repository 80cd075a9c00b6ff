"""The built-in input-transformation defences, each checked on its own behaviour."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from pytest_clever import BPDA
from pytest_clever.defences.transforms import (
    bit_depth,
    dct_matrix,
    jpeg,
    median_filter,
    quality_table,
    quantize,
    thermometer,
)


def _images(n=4, c=1, h=8, w=8, seed=0, dtype=torch.float32):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- bit depth and quantisation ------------------------------------------------------------


def test_bit_depth_1_gives_binary_images_thresholded_at_one_half():
    x = _images()
    out = bit_depth(1)(x)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(out, (x > 0.5).float())


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_bit_depth_rounds_to_2_to_the_bits_levels(bits):
    x = _images(n=64)
    out = bit_depth(bits)(x)
    steps = 2**bits - 1
    assert out.unique().numel() <= steps + 1
    assert torch.allclose(out * steps, torch.round(out * steps), atol=1e-4)  # on the grid
    assert (out - x).abs().max() <= 0.5 / steps + 1e-6  # the nearest grid value
    assert torch.equal(bit_depth(bits)(out), out)  # idempotent


def test_bit_depth_8_matches_a_numpy_8_bit_round_trip():
    x = _images(dtype=torch.float64)
    expected = np.round(x.numpy() * 255) / 255
    assert np.array_equal(bit_depth(8)(x).numpy(), expected)


def test_quantize_spans_any_range_and_clips():
    x = torch.tensor([[-3.0, -1.0, -0.4, 0.1, 0.35, 1.0, 7.0]])
    out = quantize(5, bounds=(-1.0, 1.0))(x)
    assert out.tolist() == [[-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0]]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: bit_depth(0), "bits"),
        (lambda: bit_depth(2.5), "bits"),
        (lambda: quantize(1), "levels"),
        (lambda: quantize(4, bounds=(1.0, 0.0)), "lo < hi"),
        (lambda: median_filter(0), "size k"),
        (lambda: jpeg(0), "quality"),
        (lambda: jpeg(101), "quality"),
        (lambda: thermometer(0), "levels"),
    ],
)
def test_bad_parameters_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --- median filter ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_median_filter_matches_scipy(k):
    x = _images(n=3, c=2, h=9, w=11, dtype=torch.float64)
    expected = scipy.ndimage.median_filter(x.numpy(), size=(1, 1, k, k), mode="nearest")
    assert np.array_equal(median_filter(k)(x).numpy(), expected)


def test_median_filter_removes_salt_noise():
    # A ramp plus isolated salt pixels, at most one in any 3x3 window: the 3x3 median
    # restores the ramp exactly (a mean filter would smear the salt instead).
    ramp = torch.linspace(0, 0.5, 16).expand(16, 16).clone()
    noisy = ramp.clone()
    noisy[2::3, 2::3] = 1.0
    out = median_filter(3)(noisy[None, None])[0, 0]
    assert (noisy - ramp).abs().max() > 0.4
    assert torch.allclose(out, ramp, atol=1e-7)


def test_median_filter_of_size_1_is_the_identity_and_keeps_shape():
    x = _images(n=2, c=3, h=5, w=7)
    assert torch.equal(median_filter(1)(x), x)
    assert median_filter(3)(x).shape == x.shape


# --- JPEG ------------------------------------------------------------------------------------


def test_dct_matrix_is_orthonormal_and_quality_50_is_the_standard_table():
    d = dct_matrix()
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    from pytest_clever.defences.transforms import _LUMINANCE

    assert quality_table(_LUMINANCE, 50).tolist() == [list(map(float, row)) for row in _LUMINANCE]
    assert torch.equal(quality_table(_LUMINANCE, 100), torch.ones(8, 8, dtype=torch.float64))
    assert quality_table(_LUMINANCE, 10).min() > quality_table(_LUMINANCE, 50).max() / 5


def test_jpeg_at_quality_100_is_close_to_identity(digits):
    x = digits.x_test[:64]
    out = jpeg(100)(x)
    # Quantisation by a table of ones only rounds the DCT coefficients: at most a
    # couple of 8-bit levels of error per pixel.
    assert (out - x).abs().max() <= 3 / 255
    assert (out - x).abs().mean() <= 1 / 255


def test_jpeg_error_grows_as_quality_drops(digits):
    x = digits.x_test[:64]
    errors = [float((jpeg(q)(x) - x).abs().mean()) for q in (95, 75, 50, 25, 5)]
    assert errors == sorted(errors)
    assert errors[-1] > 5 * errors[0]


def test_jpeg_output_is_8_bit_in_range_and_keeps_shape_and_dtype():
    x = _images(n=2, c=1, h=10, w=13, dtype=torch.float64)  # not a multiple of 8: padded blocks
    out = jpeg(50)(x)
    assert out.shape == x.shape and out.dtype == torch.float64
    assert 0 <= out.min() and out.max() <= 1
    assert torch.allclose(out * 255, torch.round(out * 255), atol=1e-9)


def test_jpeg_keeps_a_constant_image_constant():
    x = torch.full((1, 1, 16, 16), 0.3)
    out = jpeg(20)(x)
    assert out.unique().numel() == 1
    assert abs(float(out[0, 0, 0, 0]) - 0.3) <= 8 / 255  # the DC step at quality 20


def test_jpeg_of_a_grey_rgb_image_matches_the_grey_channel_path():
    # R = G = B gives zero chroma, so the RGB (YCbCr) path reduces to the luminance path.
    grey = _images(n=2, c=1, h=16, w=16)
    rgb = grey.expand(-1, 3, -1, -1)
    out = jpeg(60)(rgb)
    assert (out - jpeg(60)(grey).expand(-1, 3, -1, -1)).abs().max() <= 1 / 255


def test_jpeg_compresses_colour_more_than_luminance():
    # The same pattern in Y, Cb and Cr: the coarser chrominance table loses more of it.
    from pytest_clever.defences.transforms import _from_ycbcr, _to_ycbcr

    # Random low frequencies (DCT coefficients u, v < 4 of each 8x8 block), where the tables differ most.
    coefficients = torch.zeros(4, 1, 8, 8, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    coefficients[..., :4, :4] = 30 * torch.randn(4, 1, 4, 4, generator=gen, dtype=torch.float64)
    pattern = (dct_matrix().T @ coefficients @ dct_matrix()).clamp(-60, 60)
    x = _from_ycbcr(pattern.expand(-1, 3, -1, -1)) / 255  # Y centred on 0 here, i.e. mid grey
    assert 0 <= x.min() and x.max() <= 1
    error = (_to_ycbcr(jpeg(50)(x) * 255) - _to_ycbcr(x * 255)).abs().mean(dim=(0, 2, 3))
    assert error[1] > 2 * error[0] and error[2] > 2 * error[0]  # measured: 3.1x


def test_jpeg_has_zero_gradient_which_is_why_it_needs_bpda():
    x = _images().requires_grad_(True)
    (grad,) = torch.autograd.grad(jpeg(75)(x).sum(), x)
    assert torch.count_nonzero(grad) == 0
    (grad,) = torch.autograd.grad(BPDA(jpeg(75))(x).sum(), x)
    assert torch.equal(grad, torch.ones_like(x))


# --- thermometer encoding --------------------------------------------------------------------


def test_thermometer_encodes_each_pixel_as_a_monotone_code():
    x = _images(n=3, c=2, h=4, w=5)
    levels = 16
    code = thermometer(levels)(x)
    assert code.shape == (3, 2 * levels, 4, 5)
    per_channel = code.reshape(3, 2, levels, 4, 5)
    assert set(code.unique().tolist()) <= {0.0, 1.0}
    assert (per_channel[:, :, 1:] <= per_channel[:, :, :-1]).all()  # 1s first, then 0s
    assert torch.equal(per_channel.sum(2), torch.ceil(levels * x))


def test_thermometer_extremes_and_the_soft_version():
    levels = 8
    x = torch.tensor([[0.0, 0.125, 0.3, 1.0]])  # (N, C) batches work too
    hard, soft = thermometer(levels)(x), thermometer(levels, soft=True)(x)
    assert hard[:, :levels].sum() == 0 and hard[:, -levels:].sum() == levels
    assert torch.allclose(soft.reshape(1, 4, levels).sum(2), levels * x)
    grid = torch.arange(levels + 1, dtype=torch.float32).reshape(1, -1) / levels
    assert torch.equal(thermometer(levels)(grid), thermometer(levels, soft=True)(grid))


def test_thermometer_needs_a_surrogate_under_bpda():
    x = _images(n=2).requires_grad_(True)
    with pytest.raises(ValueError, match="backward="):
        BPDA(thermometer(16))(x)
    code = BPDA(thermometer(16), backward=thermometer(16, soft=True))(x)
    assert torch.equal(code, thermometer(16)(x))
    # Summed over the levels the soft code is 16 x, so its gradient is 16 per pixel.
    (grad,) = torch.autograd.grad(code.sum(), x)
    assert torch.allclose(grad, torch.full_like(x, 16.0))


def test_transforms_are_modules_that_compose_with_a_classifier():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = _images()
    for transform in (bit_depth(4), quantize(7), median_filter(3), jpeg(75)):
        assert nn.Sequential(transform, net)(x).shape == (4, 10)
        assert math.isfinite(float(transform(x).sum()))
    assert "quality=75" in repr(jpeg(75))


@pytest.mark.parametrize("channels", [2, 4])
def test_jpeg_rejects_other_than_1_or_3_channels(channels):
    from pytest_clever import CleverError

    with pytest.raises(CleverError, match=f"1 \\(grey\\) or 3 \\(RGB\\) channels, got {channels} channels"):
        jpeg(75)(_images(n=1, c=channels))


@pytest.mark.parametrize("low, high", [(-0.25, 1.0), (0.0, 1.5)])
def test_jpeg_rejects_pixels_outside_0_1(low, high):
    from pytest_clever import CleverError

    x = _images(n=1, c=3)
    x[0, 0, 0, 0], x[0, 1, 0, 0] = low, high
    with pytest.raises(CleverError, match=f"pixels in \\[0, 1\\], got values in \\[{low:g}, {high:g}\\]"):
        jpeg(75)(x)
    assert jpeg(75)(x.clamp(0, 1)).shape == x.shape  # the edges 0 and 1 themselves are fine


def test_clever_through_jpeg_without_bounds_names_the_problem():
    from pytest_clever import CleverError, clever_score

    net = nn.Sequential(BPDA(jpeg(75)), nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    x = _images(n=1, c=3)[0].clamp(0.3, 0.7)
    with pytest.raises(CleverError, match="jpeg needs pixels in \\[0, 1\\]"):
        clever_score(net, x, radius=2.0, n_batches=10, batch_size=8, seed=0)
    result = clever_score(net, x, radius=2.0, bounds=(0, 1), n_batches=10, batch_size=8, seed=0)
    assert 0 < result.score <= 2.0
