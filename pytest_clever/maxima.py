"""The one sampling loop of both orders: sample the ball in chunks -> per-chunk statistic -> batch maxima.

``n_batches * batch_size`` fresh points are drawn in chunks of ``chunk_size``,
so memory does not grow with the number of samples. An order supplies the
per-point statistic of a chunk (first order: margin gradient norms, see
``first_order.py``; second order: Hessian curvature, ``second_order.py``);
this loop keeps its batch maxima and what the masking check needs: the share
of points with all-zero or non-finite margin gradients, and the proven slope
of each margin. Statistics stay on the device until the end (no host
synchronisation inside the loop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .sampling import sample_ball
from .validation import Settings

#: Points per chunk on CPU (fastest measured for small nets).
CPU_CHUNK = 1024
#: Points per chunk on an accelerator, where larger batches pay off.
ACCELERATOR_CHUNK = 4096
#: Per-chunk working set on CPU (what each order measures as bytes per point, see ``memory.py``).
CHUNK_BYTES = 256 * 2**20
#: Share of the accelerator's free memory one chunk may use.
ACCELERATOR_MEMORY_SHARE = 0.25
#: Rounding allowance, in units of the dtype's epsilon times the size of the numbers
#: involved, that a difference must exceed to count as real (as proof of a slope or curvature).
ROUNDING_ULPS = 64


def chunk_budget(device: torch.device) -> int:
    """Bytes one chunk may use: ``CHUNK_BYTES`` on CPU, a share of the free memory on CUDA."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(ACCELERATOR_MEMORY_SHARE * free)
    return CHUNK_BYTES


def default_chunk_size(
    bytes_per_point: int, rows_per_point: int, device: torch.device, budget: int | None = None
) -> int:
    """Points per chunk: fast for the device, and small enough to bound memory.

    ``rows_per_point`` is how many batch rows one point becomes (second order
    repeats each point once per target); ``bytes_per_point`` the working set
    the order needs per point (measured from the model, ``memory.py``);
    ``budget`` the bytes a chunk may use (default :func:`chunk_budget`).
    """
    rows = ACCELERATOR_CHUNK if device.type != "cpu" else CPU_CHUNK
    budget = chunk_budget(device) if budget is None else budget
    by_memory = budget // max(1, bytes_per_point)
    return int(max(1, min(rows // max(1, rows_per_point), by_memory)))


def rounding(dtype: torch.dtype) -> float:
    """The relative rounding allowance of ``dtype``."""
    return ROUNDING_ULPS * torch.finfo(dtype).eps


def masked_max(ratio: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """Column maxima of ``ratio`` over rows with ``distance > 0``, ignoring NaN, at least 0."""
    ratio = torch.where(distance > 0, ratio, torch.zeros_like(ratio)).nan_to_num(nan=0.0)
    return ratio.amax(dim=0).clamp_min(0)


@dataclass
class ChunkValues:
    """An order's per-point statistic for one chunk of ``n`` points and ``T`` targets.

    ``values``: the quantity whose batch maxima are fitted; ``gradient_norms``:
    a norm of each margin gradient (only zero / non-finite matters);
    ``margins``: ``g_j(x)``; ``logit_scale``: ``|f_c(x)| + |f_j(x)|``, the size
    of the numbers whose rounding error the margin carries. All ``(n, T)``.
    """

    values: torch.Tensor
    gradient_norms: torch.Tensor
    margins: torch.Tensor
    logit_scale: torch.Tensor


ChunkStatistic = Callable[[torch.Tensor], ChunkValues]


@dataclass(frozen=True)
class Problem:
    """One input to score, as both orders' ``sample_targets`` take it.

    ``margins0[t]`` is ``f_predicted(x0) - f_targets[t](x0)``; ``chunk_size``
    None lets the order choose (:func:`default_chunk_size`).
    """

    model: Callable[[torch.Tensor], torch.Tensor]
    x0: torch.Tensor
    margins0: torch.Tensor
    predicted: int
    targets: Sequence[int]
    generator: torch.Generator
    chunk_size: int | None = None


@dataclass
class SampleMaxima:
    """What the loop keeps per target (index ``t`` of the targets).

    - ``maxima[i, t]``: largest statistic in batch ``i``;
    - ``slopes[t]``: largest ``|g(x) - g(x0)| / ||x - x0||_p`` beyond rounding,
      a proven lower bound on the local Lipschitz constant of margin ``t``;
    - ``zero_share``, ``nonfinite_share``: shares of points where every margin
      gradient was zero, or some was non-finite.
    """

    maxima: torch.Tensor
    slopes: torch.Tensor
    zero_share: float
    nonfinite_share: float

    @property
    def margin_varies(self) -> bool:
        """Whether some margin provably changes across the ball (beyond rounding)."""
        return bool((self.slopes > 0).any())

    @property
    def steepest_slope(self) -> float:
        """The largest proven slope of any margin."""
        return float(self.slopes.max())


def sample_maxima(
    statistic: ChunkStatistic,
    x0: torch.Tensor,
    margins0: torch.Tensor,
    settings: Settings,
    *,
    generator: torch.Generator,
    chunk_size: int,
) -> SampleMaxima:
    """Sample ``n_batches * batch_size`` points of the ball, chunk by chunk, and reduce ``statistic`` to batch maxima.

    ``statistic`` is called on each chunk of points right after they are
    drawn (it may draw from ``generator`` too, e.g. solver start vectors).
    """
    norm, n_batches, batch_size = settings.norm, settings.n_batches, settings.batch_size
    device, dtype = x0.device, x0.dtype
    n_targets = margins0.shape[0]
    total = n_batches * batch_size
    maxima = torch.full((n_batches, n_targets), -math.inf, dtype=dtype, device=device)
    slopes = torch.zeros(n_targets, dtype=dtype, device=device)
    zero_count = torch.zeros((), dtype=torch.long, device=device)
    nonfinite_count = torch.zeros((), dtype=torch.long, device=device)
    allowance = rounding(dtype)

    for start in range(0, total, chunk_size):
        n = min(chunk_size, total - start)
        points = sample_ball(x0, n, norm, settings.radius, generator, settings.bounds)
        chunk = statistic(points)

        nonfinite_count += (~torch.isfinite(chunk.gradient_norms)).any(dim=1).sum()
        zero_count += (chunk.gradient_norms == 0).all(dim=1).sum()
        batch_ids = torch.arange(start, start + n, device=device) // batch_size
        index = batch_ids.unsqueeze(1).expand(-1, n_targets)
        maxima.scatter_reduce_(0, index, chunk.values.nan_to_num(nan=math.inf), "amax")

        # Only what rounding cannot explain counts as proof: near x0 a few ulps of the
        # logits, divided by a tiny distance, would otherwise "prove" a steeper slope.
        scale = chunk.logit_scale + margins0.abs()
        change = ((chunk.margins - margins0).abs() - allowance * scale).clamp_min(0)
        distance = torch.linalg.vector_norm((points - x0).flatten(1), ord=norm, dim=1).unsqueeze(1)
        ratio = change / distance.clamp_min(torch.finfo(dtype).tiny)
        slopes = torch.maximum(slopes, masked_max(ratio, distance))

    return SampleMaxima(
        maxima=maxima,
        slopes=slopes,
        zero_share=float(zero_count) / total,
        nonfinite_share=float(nonfinite_count) / total,
    )


__all__ = [
    "ChunkStatistic",
    "ChunkValues",
    "Problem",
    "SampleMaxima",
    "chunk_budget",
    "default_chunk_size",
    "masked_max",
    "rounding",
    "sample_maxima",
]
