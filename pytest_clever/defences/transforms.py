"""Input-transformation defences, as plain tensor functions on batches in [0, 1].

Each factory returns a parameter-free ``nn.Module``: call it on a batch
``(N, C, H, W)`` (or ``(N, ...)`` where noted) like a function, or put it in
front of a classifier in ``nn.Sequential`` (picklable, with a readable
repr). They are the preprocessing defences of Xu et al. (feature squeezing), Guo et al.
(JPEG) and Buckman et al. (thermometer encoding). Rounding makes most of
them piecewise constant, so their gradients are zero almost everywhere:
score a model defended with them through :class:`~pytest_clever.BPDA`::

    defended = nn.Sequential(BPDA(jpeg(75)), net)
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from pytest_clever.errors import InvalidInputError


def _check_batch(x: torch.Tensor, min_dims: int, what: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{what} needs a floating-point tensor, got {type(x).__name__}")
    if x.dim() < min_dims:
        raise ValueError(f"{what} needs a batch with at least {min_dims} dimensions, got shape {tuple(x.shape)}")


class Quantize(nn.Module):
    """Round to ``levels`` evenly spaced values spanning ``[lo, hi]`` (clipping first)."""

    def __init__(self, levels: int, lo: float = 0.0, hi: float = 1.0) -> None:
        super().__init__()
        if int(levels) != levels or levels < 2:
            raise ValueError(f"levels must be an integer >= 2, got {levels}")
        if not lo < hi:
            raise ValueError(f"quantisation range needs lo < hi, got ({lo}, {hi})")
        self.levels, self.lo, self.hi = int(levels), float(lo), float(hi)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, lo={self.lo:g}, hi={self.hi:g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x, 1, "quantize")
        steps = self.levels - 1
        unit = (x.clamp(self.lo, self.hi) - self.lo) / (self.hi - self.lo)
        return torch.round(unit * steps) / steps * (self.hi - self.lo) + self.lo


def quantize(levels: int, bounds: tuple[float, float] = (0.0, 1.0)) -> Quantize:
    """Uniform quantisation to ``levels`` values from ``bounds[0]`` to ``bounds[1]``."""
    return Quantize(levels, bounds[0], bounds[1])


def bit_depth(bits: int) -> Quantize:
    """Bit-depth reduction of [0, 1] pixels to ``bits`` bits (``2**bits`` grey levels).

    ``bit_depth(1)`` gives binary images (threshold 0.5); ``bit_depth(8)``
    rounds to the 256 levels of an 8-bit image.
    """
    if int(bits) != bits or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an integer from 1 to 16, got {bits}")
    return Quantize(2 ** int(bits))


class MedianFilter(nn.Module):
    """``k x k`` median filter over the last two dimensions, edges padded by replication.

    For even ``k`` the upper of the two middle values is taken and the window
    is anchored like scipy's ``median_filter`` (one more pixel after the
    centre than before).
    """

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        if int(k) != k or k < 1:
            raise ValueError(f"median filter size k must be an integer >= 1, got {k}")
        self.k = int(k)

    def extra_repr(self) -> str:
        return f"k={self.k}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x, 2, "median_filter")
        k = self.k
        before, after = k // 2, (k - 1) // 2
        shape = x.shape
        planes = x.reshape(-1, 1, shape[-2], shape[-1])
        padded = F.pad(planes, (before, after, before, after), mode="replicate")
        windows = F.unfold(padded, k)  # (B, k*k, H*W)
        median = windows.kthvalue(k * k // 2 + 1, dim=1).values
        return median.reshape(shape)


def median_filter(k: int = 3) -> MedianFilter:
    """A ``k x k`` median filter (feature squeezing's spatial smoothing)."""
    return MedianFilter(k)


# Annex K of the JPEG standard (ITU T.81): quality-50 quantisation tables.
_LUMINANCE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMINANCE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
)
# JFIF RGB <-> YCbCr (offsets of 128 on the chroma channels applied separately).
_RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)


def quality_table(base: tuple[tuple[int, ...], ...], quality: int) -> torch.Tensor:
    """The IJG (libjpeg) scaling of a quality-50 table to ``quality`` in 1..100."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = torch.floor((torch.tensor(base, dtype=torch.float64) * scale + 50) / 100)
    return table.clamp(1, 255)


@functools.lru_cache(maxsize=1)
def dct_matrix() -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix ``D`` (``D @ D.T == I``), float64."""
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos(math.pi * (2 * n[None, :] + 1) * n[:, None] / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d


class JPEG(nn.Module):
    """Lossy JPEG round trip of a batch ``(N, C, H, W)`` in [0, 1], in torch.

    Pixels go to 8-bit levels, three channels are taken as RGB and converted
    to YCbCr (no chroma subsampling), every 8x8 block (edges padded by
    replication) is transformed by the 2-D DCT, divided by the quality-scaled
    standard table (luminance for Y and grey channels, chrominance for Cb and
    Cr), rounded, and transformed back. Entropy coding is lossless and so
    skipped. Computed in float64, returned in the input's dtype.
    """

    def __init__(self, quality: int = 75) -> None:
        super().__init__()
        if int(quality) != quality or not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be an integer from 1 to 100, got {quality}")
        self.quality = int(quality)

    def extra_repr(self) -> str:
        return f"quality={self.quality}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x, 4, "jpeg")
        _check_jpeg_input(x)
        n, c, h, w = x.shape
        pixels = torch.round(x.double().clamp(0, 1) * 255)
        colour = c == 3
        planes = _to_ycbcr(pixels) if colour else pixels - 128
        tables = self._tables(c, colour, x.device)
        planes = _blockwise_quantise(planes, tables)
        out = _from_ycbcr(planes) if colour else planes + 128
        return (torch.round(out).clamp(0, 255) / 255).to(x.dtype)

    def _tables(self, channels: int, colour: bool, device: torch.device) -> torch.Tensor:
        luma = quality_table(_LUMINANCE, self.quality)
        if not colour:
            return luma.expand(channels, 8, 8).to(device)
        chroma = quality_table(_CHROMINANCE, self.quality)
        return torch.stack([luma, chroma, chroma]).to(device)


def _check_jpeg_input(x: torch.Tensor) -> None:
    """JPEG codes grey or RGB images of [0, 1] pixels; anything else would be silently mangled."""
    channels = x.shape[1]
    if channels not in (1, 3):
        raise InvalidInputError(
            f"jpeg needs images with 1 (grey) or 3 (RGB) channels, got {channels} channels in a "
            f"batch of shape {tuple(x.shape)} (layout (N, C, H, W))"
        )
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if lo < 0 or hi > 1:
        raise InvalidInputError(
            f"jpeg needs pixels in [0, 1], got values in [{lo:.4g}, {hi:.4g}]: scale the images to "
            "[0, 1] (and score them with bounds=(0, 1), so sampled points stay there)"
        )


def _to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """0..255 RGB -> YCbCr centred on 0 (the JPEG level shift of 128 is applied to Y)."""
    m = torch.tensor(_RGB_TO_YCBCR, dtype=rgb.dtype, device=rgb.device)
    ycc = torch.einsum("oc,nchw->nohw", m, rgb)
    ycc[:, 0] -= 128
    return ycc


def _from_ycbcr(ycc: torch.Tensor) -> torch.Tensor:
    m = torch.linalg.inv(torch.tensor(_RGB_TO_YCBCR, dtype=ycc.dtype, device=ycc.device))
    ycc = ycc.clone()
    ycc[:, 0] += 128
    return torch.einsum("oc,nchw->nohw", m, ycc)


def _blockwise_quantise(planes: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """DCT every 8x8 block of each channel, quantise with that channel's table, invert."""
    n, c, h, w = planes.shape
    ph, pw = -h % 8, -w % 8
    if ph or pw:
        planes = F.pad(planes, (0, pw, 0, ph), mode="replicate")
    hb, wb = planes.shape[-2] // 8, planes.shape[-1] // 8
    blocks = planes.reshape(n, c, hb, 8, wb, 8).permute(0, 1, 2, 4, 3, 5)  # (n, c, hb, wb, 8, 8)
    d = dct_matrix().to(planes.device)
    q = tables[None, :, None, None]
    coefficients = torch.round(d @ blocks @ d.T / q) * q
    restored = (d.T @ coefficients @ d).permute(0, 1, 2, 4, 3, 5).reshape(n, c, hb * 8, wb * 8)
    return restored[..., :h, :w]


def jpeg(quality: int = 75) -> JPEG:
    """JPEG compression at ``quality`` (1..100; 100 is nearly lossless) as a tensor function."""
    return JPEG(quality)


class Thermometer(nn.Module):
    """Thermometer encoding (Buckman et al. 2018) of a batch ``(N, C, ...)`` in [0, 1].

    Channel ``C * levels`` output: for input channel ``c`` and level ``k``
    (``0 <= k < levels``), output channel ``c * levels + k`` is 1 where
    ``x > k / levels``, else 0; the channels of a pixel sum to
    ``ceil(levels * x)``. With ``soft=True`` it is the piecewise-linear ramp
    ``clip(levels * x - k, 0, 1)`` instead: continuous, equal to the hard
    code on the grid ``x = i / levels``, and summing to ``levels * x`` -- a
    differentiable surrogate for BPDA::

        BPDA(thermometer(16), backward=thermometer(16, soft=True))
    """

    def __init__(self, levels: int = 16, soft: bool = False) -> None:
        super().__init__()
        if int(levels) != levels or levels < 1:
            raise ValueError(f"thermometer levels must be an integer >= 1, got {levels}")
        self.levels, self.soft = int(levels), bool(soft)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, soft={self.soft}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x, 2, "thermometer")
        k = torch.arange(self.levels, dtype=x.dtype, device=x.device)
        k = k.reshape(1, 1, -1, *([1] * (x.dim() - 2)))
        scaled = x.unsqueeze(2) * self.levels
        code = (scaled - k).clamp(0, 1) if self.soft else (scaled > k).to(x.dtype)
        return code.flatten(1, 2)


def thermometer(levels: int = 16, soft: bool = False) -> Thermometer:
    """Thermometer encoding with ``levels`` channels per input channel (see :class:`Thermometer`)."""
    return Thermometer(levels, soft)


__all__ = [
    "JPEG",
    "MedianFilter",
    "Quantize",
    "Thermometer",
    "bit_depth",
    "dct_matrix",
    "jpeg",
    "median_filter",
    "quality_table",
    "quantize",
    "thermometer",
]
