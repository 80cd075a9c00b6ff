"""The one sampling loop of both orders: sample the ball in chunks -> per-chunk statistic -> batch maxima.

``n_batches * batch_size`` fresh points are processed in chunks of
``chunk_size``, so memory does not grow with the number of samples. The
points come in fixed blocks (:func:`sample_block`: a size set by the input's
size alone), each drawn from its own generator seeded from ``(seed, block index)``, and an order that draws random
numbers per point does so from ``sampling.point_generators`` (seeded from
``(seed, point index)``): the random stream does not depend on the chunking,
so ``chunk_size`` changes memory use, never the points. An order supplies the
per-point statistic of a chunk (first order: margin gradient norms, see
``first_order.py``; second order: Hessian curvature, ``second_order.py``);
this loop keeps its batch maxima and what the masking check needs: the share
of points with all-zero or non-finite margin gradients, and the proven slope
of each margin. Statistics stay on the device until the end (no host
synchronisation inside the loop).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pytest_clever._engine.sampling import sample_ball
from pytest_clever.core.seeds import derive_seed
from pytest_clever.core.validation import Settings
from pytest_clever.errors import CleverError, ModelError
from pytest_clever.stats.screening import ScreenResult

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
#: Bytes of points per block of the random stream (each block has its own generator): small
#: enough that a block of large inputs costs little memory, large enough that drawing is vectorised.
SAMPLE_BLOCK_BYTES = 16 * 2**20
#: Most points per block (small inputs).
SAMPLE_BLOCK_MAX = 1024


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


#: ``statistic(points, first)``: the values of a chunk of points whose first has the index ``first``
#: in the run's stream (for per-point random draws that do not depend on the chunking).
ChunkStatistic = Callable[[torch.Tensor, int], ChunkValues]


@dataclass(frozen=True)
class Screen:
    """A screening round (``stats.screening``): after the first ``points`` points of every target, ``decide``
    maps their values ``(points, T)`` to a :class:`~pytest_clever.stats.screening.ScreenResult`, and
    ``narrow(survivors)`` makes the statistic return ``values`` and ``gradient_norms`` for those columns
    only (``margins`` and ``logit_scale`` stay whole: the logits hold every class at no cost)."""

    points: int
    decide: Callable[[torch.Tensor], ScreenResult]
    narrow: Callable[[Sequence[int]], None]


@dataclass(frozen=True)
class Problem:
    """One input to score, as both orders' ``sample_targets`` take it.

    ``margins0[t]`` is ``f_predicted(x0) - f_targets[t](x0)``; ``seed`` fixes
    every random draw; ``chunk_size`` None lets the order choose
    (:func:`default_chunk_size`); ``torch_compile`` runs the first-order passes compiled (``compiled.py``).
    """

    model: Callable[[torch.Tensor], torch.Tensor]
    x0: torch.Tensor
    margins0: torch.Tensor
    predicted: int
    targets: Sequence[int]
    seed: int
    chunk_size: int | None = None
    torch_compile: bool = False


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


def sample_block(x0: torch.Tensor) -> int:
    """Points per block of the random stream of ``x0``: set by its size and dtype, never by the chunking."""
    return int(max(1, min(SAMPLE_BLOCK_MAX, SAMPLE_BLOCK_BYTES // (x0.numel() * x0.element_size()))))


class _BallStream:
    """The sampled points of one input by index: point ``k`` is the same whatever the chunks asked for."""

    def __init__(self, x0: torch.Tensor, settings: Settings, seed: int) -> None:
        self.x0, self.settings, self.seed, self.size = x0, settings, seed, sample_block(x0)
        self.index, self.block = -1, x0.new_empty(0)

    def _block(self, b: int) -> torch.Tensor:
        if b != self.index:
            generator = torch.Generator(device=self.x0.device).manual_seed(derive_seed(self.seed, "ball", b))
            s = self.settings
            self.index, self.block = b, sample_ball(self.x0, self.size, s.norm, s.radius, generator, s.bounds)
        return self.block

    def release(self) -> None:
        """Drop the cached block (between rounds: many inputs may wait for their next round at once)."""
        self.index, self.block = -1, self.x0.new_empty(0)

    def take(self, start: int, n: int) -> torch.Tensor:
        pieces = []
        while n > 0:
            b, offset = divmod(start, self.size)
            piece = self._block(b)[offset : offset + n]
            pieces.append(piece)
            start, n = start + len(piece), n - len(piece)
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def _model_failed(exc: Exception, n: int, shape: tuple[int, ...]) -> ModelError:
    """A ModelError for a model that worked on x but failed on a chunk of sampled points."""
    if "in-place" in str(exc) or "inplace" in str(exc):
        hint = (
            "the model seems to change its input in place (x.mul_(), x.clamp_(), ReLU(inplace=True) "
            "as first layer, ...): start forward() with x = x.clone(), or use the out-of-place ops"
        )
    elif isinstance(exc, torch.OutOfMemoryError):
        hint = "the chunk does not fit in memory: pass a smaller chunk_size"
    else:
        hint = "check that it accepts batches of any size and inputs anywhere in the ball around x"
    return ModelError(
        f"the model raised {type(exc).__name__} on a chunk of {n} sampled points (batch shape {shape}), "
        f"although it worked on x itself: {str(exc).rstrip('.')}. {hint[0].upper()}{hint[1:]}"
    )


class MaximaRounds:
    """The loop of :func:`sample_maxima`, resumable: :meth:`extend` samples the next batches of the same stream.

    Batch ``i`` holds points ``i * batch_size`` to ``(i + 1) * batch_size - 1`` of the input's stream
    (``_BallStream``), whatever the rounds, so a run stopped after ``n`` batches sampled exactly the
    points of a fixed run of ``n`` batches (its chunks may split differently, which changes only the
    BLAS rounding of a model whose kernels depend on the batch size). Statistics stay on the device
    within a round; the checks for in-place changes and non-finite logits run after each round.

    With ``screen``, a chunk ends at ``screen.points``; there the screening decides (``screened``) and
    later points are sampled for the survivors only, whose batch maxima are those of a run without
    screening, point for point. Screened targets' columns are not used afterwards.
    """

    def __init__(
        self,
        statistic: ChunkStatistic,
        x0: torch.Tensor,
        margins0: torch.Tensor,
        settings: Settings,
        *,
        seed: int,
        chunk_size: int,
        screen: Screen | None = None,
    ) -> None:
        self.statistic, self.x0, self.margins0, self.settings = statistic, x0, margins0, settings
        self.chunk_size, self.screen = chunk_size, screen
        self.screened: ScreenResult | None = None
        self.columns: torch.Tensor | None = None  # the targets sampled after the screening (None: all)
        self._screen_rows: list[torch.Tensor] = []
        device, dtype = x0.device, x0.dtype
        self.n_targets = margins0.shape[0]
        self.rounds: list[torch.Tensor] = []
        self.batches = 0
        self.slopes = torch.zeros(self.n_targets, dtype=dtype, device=device)
        self.zero_count = torch.zeros((), dtype=torch.long, device=device)
        self.nonfinite_count = torch.zeros((), dtype=torch.long, device=device)
        # Points with NaN/Inf logits: count, nearest and farthest distance, first batch (on the device).
        self.bad_count = torch.zeros((), dtype=torch.long, device=device)
        self.bad_near = torch.full((), math.inf, dtype=dtype, device=device)
        self.bad_far = torch.zeros((), dtype=dtype, device=device)
        self.bad_batch = torch.full((), 2**62, dtype=torch.long, device=device)
        self.original_x0 = x0.clone()
        self.stream = _BallStream(x0, settings, seed)

    @property
    def points(self) -> int:
        """Points sampled so far."""
        return self.batches * self.settings.batch_size

    def extend(self, total_batches: int) -> None:
        """Sample batches ``self.batches`` to ``total_batches - 1``; raise ModelError as :func:`sample_maxima`."""
        norm, batch_size, x0, margins0 = self.settings.norm, self.settings.batch_size, self.x0, self.margins0
        device, dtype = x0.device, x0.dtype
        first, total = self.points, total_batches * batch_size
        maxima = torch.full((total_batches - self.batches, self.n_targets), -math.inf, dtype=dtype, device=device)
        mutated = torch.zeros((), dtype=torch.bool, device=device)
        allowance = rounding(dtype)
        starts = set(range(first, total, self.chunk_size))
        screen_at = None if self.screen is None or self.screened is not None else self.screen.points
        if screen_at is not None and first < screen_at < total:
            starts.add(screen_at)
        bounds = sorted(starts) + [total]
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            n = end - start
            points = self.stream.take(start, n)
            drawn = points.clone()
            try:
                chunk = self.statistic(points, start)
            except CleverError:
                raise
            except Exception as exc:  # any failure of the user's model, named with its batch
                raise _model_failed(exc, n, tuple(points.shape)) from exc
            mutated |= (points != drawn).any()
            points = drawn

            batch_ids = torch.arange(start, start + n, device=device) // batch_size
            distance = torch.linalg.vector_norm((points - x0).flatten(1), ord=norm, dim=1).unsqueeze(1)
            bad = ~(torch.isfinite(chunk.margins) & torch.isfinite(chunk.logit_scale)).all(dim=1)
            self.bad_count += bad.sum()
            self.bad_near = torch.minimum(self.bad_near, torch.where(bad, distance[:, 0], math.inf).min())
            self.bad_far = torch.maximum(self.bad_far, torch.where(bad, distance[:, 0], 0.0).max())
            self.bad_batch = torch.minimum(self.bad_batch, torch.where(bad, batch_ids, 2**62).min())

            self.nonfinite_count += (~torch.isfinite(chunk.gradient_norms)).any(dim=1).sum()
            self.zero_count += (chunk.gradient_norms == 0).all(dim=1).sum()
            values = chunk.values.nan_to_num(nan=math.inf)
            index = (batch_ids - self.batches).unsqueeze(1).expand(-1, values.shape[1])
            if self.columns is None:
                maxima.scatter_reduce_(0, index, values, "amax")
            else:
                maxima[:, self.columns] = maxima[:, self.columns].scatter_reduce(0, index, values, "amax")
            if screen_at is not None and start < screen_at:
                self._screen_rows.append(chunk.values)

            # Only what rounding cannot explain counts as proof: near x0 a few ulps of the
            # logits, divided by a tiny distance, would otherwise "prove" a steeper slope.
            scale = chunk.logit_scale + margins0.abs()
            change = ((chunk.margins - margins0).abs() - allowance * scale).clamp_min(0)
            ratio = change / distance.clamp_min(torch.finfo(dtype).tiny)
            self.slopes = torch.maximum(self.slopes, masked_max(ratio, distance))
            if screen_at is not None and end == screen_at:
                self._screen(torch.cat(self._screen_rows))
        self.rounds.append(maxima)
        self.batches = total_batches
        self.stream.release()
        self._check(bool(mutated))

    def _screen(self, values: torch.Tensor) -> None:
        assert self.screen is not None
        self.screened = self.screen.decide(values)
        self._screen_rows = []
        self.columns = torch.as_tensor(self.screened.survivors, dtype=torch.long, device=self.x0.device)
        self.screen.narrow(self.screened.survivors)

    def _check(self, mutated: bool) -> None:
        total, settings = self.points, self.settings
        if mutated or not torch.equal(self.x0, self.original_x0):
            raise ModelError(
                "the model changed its input in place (the sampled points, or x itself, differ after the forward "
                "pass), so the gradients belong to other points: start forward() with x = x.clone(), or replace "
                "in-place ops on the input (x.mul_(), x.clamp_(), ReLU(inplace=True) as first layer)"
            )
        bad_count = int(self.bad_count)
        if bad_count:
            raise ModelError(
                f"the model returned NaN or infinite logits at {bad_count} of {total} sampled points "
                f"({bad_count / total:.1%}), at distances {float(self.bad_near):.4g} to {float(self.bad_far):.4g} "
                f"from x (radius {settings.radius:g}, norm {settings.norm:g}; first in batch {int(self.bad_batch)}), "
                "although x itself gives finite logits: the model overflows or leaves its domain near x (log or "
                "sqrt of a negative, a division by 0, half precision). Pass bounds= to keep samples in the model's "
                "domain, a smaller radius, or fix the model"
            )

    def sampled(self) -> SampleMaxima:
        """What the loop kept over every round so far."""
        total = self.points
        maxima = self.rounds[0] if len(self.rounds) == 1 else torch.cat(self.rounds)
        return SampleMaxima(
            maxima=maxima,
            slopes=self.slopes,
            zero_share=float(self.zero_count) / total,
            nonfinite_share=float(self.nonfinite_count) / total,
        )


def sample_maxima(
    statistic: ChunkStatistic,
    x0: torch.Tensor,
    margins0: torch.Tensor,
    settings: Settings,
    *,
    seed: int,
    chunk_size: int,
) -> SampleMaxima:
    """Sample ``n_batches * batch_size`` points of the ball, chunk by chunk, and reduce ``statistic`` to batch maxima.

    ``statistic`` is called on each chunk of points right after they are
    drawn, with the index of the chunk's first point. Raises
    :class:`~pytest_clever.errors.ModelError` when the model fails on a chunk,
    changes the points in place, or returns NaN or infinite logits at some
    sampled point (how many, how far from ``x0``, the first batch).
    """
    rounds = MaximaRounds(statistic, x0, margins0, settings, seed=seed, chunk_size=chunk_size)
    rounds.extend(settings.n_batches)
    return rounds.sampled()


__all__ = [
    "SAMPLE_BLOCK_BYTES",
    "SAMPLE_BLOCK_MAX",
    "ChunkStatistic",
    "ChunkValues",
    "MaximaRounds",
    "Problem",
    "SampleMaxima",
    "Screen",
    "chunk_budget",
    "default_chunk_size",
    "masked_max",
    "rounding",
    "sample_block",
    "sample_maxima",
]
