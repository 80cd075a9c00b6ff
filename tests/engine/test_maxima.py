"""The sampling loop both orders share: chunking changes no maximum and no score, one chunk sizer, one random stream."""

import pytest
import torch
from torch import nn

from pytest_clever import clever_score, clever_scores
from pytest_clever._engine import first_order, maxima, second_order
from pytest_clever.core.validation import check_settings

from ..helpers import TANH_SETTINGS, TANH_X0


class SmoothMLP(nn.Module):
    def __init__(self, d: int = 4, k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Linear(d, 16), nn.Softplus(), nn.Linear(16, k))

    def forward(self, x):
        return self.net(x)


def _run(order_module, monkeypatch, chunk_size, **extra):
    """Sample with ``chunk_size`` from a fixed pool of points (so the chunking is all that differs)."""
    model = SmoothMLP().double().eval().requires_grad_(False)
    x0 = torch.tensor([0.2, -0.1, 0.3, 0.05], dtype=torch.float64)
    settings = check_settings(norm=2, radius=0.5, n_batches=10, batch_size=6, bounds=None)
    pool = (
        x0
        + 0.5 * torch.rand(maxima.sample_block(x0), 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        - 0.25
    )
    drawn = []

    def fixed_points(x, n, norm, radius, generator, bounds):
        start = sum(drawn)
        drawn.append(n)
        return pool[start : start + n]

    monkeypatch.setattr(maxima, "sample_ball", fixed_points)
    with torch.no_grad():
        logits0 = model(x0.unsqueeze(0))[0]
    predicted = int(logits0.argmax())
    targets = [j for j in range(3) if j != predicted]
    problem = maxima.Problem(model, x0, logits0[predicted] - logits0[targets], predicted, targets, 0, chunk_size)
    samples = order_module.sample_targets(problem, settings, **extra)
    # The points come in blocks of the random stream, whatever the chunking: one block holds all 60.
    assert drawn == [maxima.sample_block(x0)]
    return samples


@pytest.mark.parametrize("order_module, extra", [(first_order, {}), (second_order, {"curvature": "spectral"})])
def test_both_orders_give_the_same_maxima_in_chunks_as_in_one_chunk(order_module, extra, monkeypatch):
    whole = _run(order_module, monkeypatch, 60, **extra)
    chunked = _run(order_module, monkeypatch, 7, **extra)  # chunks straddle batch boundaries
    assert whole.sampled.maxima.shape == (10, 2) and bool((whole.sampled.maxima > 0).all())
    # Lanczos start vectors are drawn per point, so they do not depend on the chunking either.
    torch.testing.assert_close(chunked.sampled.maxima, whole.sampled.maxima, rtol=1e-9, atol=0)
    torch.testing.assert_close(chunked.sampled.slopes, whole.sampled.slopes, rtol=1e-9, atol=0)
    assert whole.sampled.margin_varies and whole.sampled.zero_share == chunked.sampled.zero_share == 0.0
    if order_module is second_order:
        torch.testing.assert_close(chunked.curvature_lower_bound, whole.curvature_lower_bound, rtol=1e-9, atol=0)
        torch.testing.assert_close(chunked.gradient_change, whole.gradient_change, rtol=1e-9, atol=0)


def test_one_chunk_sizer_for_both_orders():
    cpu = torch.device("cpu")
    # First order: one row per point; second order: one row per point and target.
    assert maxima.default_chunk_size(100, 1, cpu) == maxima.CPU_CHUNK
    assert maxima.default_chunk_size(100, 9, cpu) == maxima.CPU_CHUNK // 9
    assert maxima.default_chunk_size(maxima.CHUNK_BYTES // 10, 1, cpu) == 10
    assert first_order.chunk_size_for(9, torch.zeros(1, 8, 8)) == 1024


# --- chunk_size is a memory setting: it changes no bit -------------------------------------------


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


@pytest.mark.filterwarnings("ignore::pytest_clever.WeakFitWarning")  # tiny settings; the bits are what is tested
@pytest.mark.parametrize(("order", "norm"), [(1, 2), (1, "inf"), (1, 1), pytest.param(2, 2, marks=pytest.mark.slow)])
def test_chunk_size_does_not_change_the_score(order, norm):
    """chunk_size only bounds memory: no chunking may change a bit of the score or of the batch maxima."""
    model = Rowwise().eval()
    results = [
        clever_score(model, TANH_X0, norm=norm, order=order, chunk_size=chunk, **TANH_SETTINGS)
        for chunk in (None, 64, 7, 1)
    ]
    assert len({r.score for r in results}) == 1, [r.score for r in results]
    assert len({r.batch_maxima for r in results}) == 1
    assert 0 < results[0].score < TANH_SETTINGS["radius"]
    xs = TANH_X0.repeat(2, 1)
    report = [clever_scores(model, xs, norm=norm, order=order, chunk_size=c, **TANH_SETTINGS) for c in (None, 5)]
    assert report[0].scores.tolist() == report[1].scores.tolist()


def test_the_sampled_points_do_not_depend_on_the_chunking():
    """For any model: the random stream is drawn in blocks seeded per (seed, block), whatever the chunks."""
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
