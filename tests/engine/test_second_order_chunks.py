"""Second order's results do not depend on the chunking, and show their cost (HVPs per point, steps per row)."""

import json

import pytest
import torch
from torch import nn

from pytest_clever import CleverResult, clever_score
from pytest_clever._engine import maxima, second_order
from pytest_clever._engine.curvature import SolverOptions, ritz_vectors_at
from pytest_clever._engine.lanczos import lanczos
from pytest_clever._engine.maxima import Problem
from pytest_clever.core.validation import Settings
from pytest_clever.runs.record_settings import RecordSettings

from .test_second_order import _quadratic


class SoftplusNet(nn.Module):
    """A small softplus MLP on 24 inputs with 6 classes (random weights)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.net = nn.Sequential(nn.Linear(24, 48), nn.Softplus(), nn.Linear(48, 32), nn.Softplus(), nn.Linear(32, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE = dict(radius=20.0, order=2, seed=3, n_batches=10, batch_size=8)


@pytest.mark.parametrize("curvature", ["spectral", "negative"])
def test_the_chunk_size_does_not_move_second_order_scores(curvature):
    model = SoftplusNet().eval()
    x0 = torch.randn(24, generator=torch.Generator().manual_seed(2))
    by_chunk = {c: clever_score(model, x0, curvature=curvature, chunk_size=c, **SAMPLE) for c in (1, 6, None)}
    default = by_chunk[None]
    assert default.chunk_size >= 80  # the CPU default: every point in one chunk
    for chunk in (1, 6):
        result = by_chunk[chunk]
        assert result.chunk_size == chunk
        assert result.score == pytest.approx(default.score, rel=1e-6)
        assert result.batch_maxima == pytest.approx(default.batch_maxima, rel=1e-6)
        # A row whose Ritz values change by just the tolerance can take one step more or less when batched
        # kernels round differently; its maximum (and the score) stays within 1e-6, as asserted above.
        assert result.steps_per_row == pytest.approx(default.steps_per_row, rel=1e-2)
    again = clever_score(model, x0, curvature=curvature, chunk_size=None, **SAMPLE)
    assert again.score == default.score and again.batch_maxima == default.batch_maxima  # bit-identical


def test_a_lanczos_row_does_not_wait_for_its_batch():
    gen = torch.Generator().manual_seed(0)
    rows, d = 6, 40
    a = torch.randn(rows, d, d, generator=gen, dtype=torch.float64)
    # Rows whose spectra converge at very different speeds (clustered vs spread extremes).
    h = (a + a.transpose(1, 2)) / 2 * torch.logspace(-1, 1, rows, dtype=torch.float64).view(-1, 1, 1)
    h[0] = torch.diag(torch.linspace(1.0, 2.0, d, dtype=torch.float64))
    start = torch.randn(rows, d, generator=gen, dtype=torch.float64)

    def hvp_of(matrices):
        return lambda v: torch.einsum("rij,rj->ri", matrices, v)

    together = lanczos(hvp_of(h), start)
    assert len(set(together.row_steps.tolist())) > 1  # the rows really stop at different steps
    for row in range(rows):
        alone = lanczos(hvp_of(h[row : row + 1]), start[row : row + 1])
        assert together.row_steps[row] == alone.row_steps[0]
        assert together.lambda_max[row] == pytest.approx(float(alone.lambda_max[0]), rel=1e-12)
        assert together.lambda_min[row] == pytest.approx(float(alone.lambda_min[0]), rel=1e-12)
    # Every product was counted: the operator's rows per step, until all stopped (no restriction here).
    assert together.products == rows * together.steps


def test_results_carry_the_cost_and_a_quadratic_oracle_counts_exactly():
    """A 6-dimensional quadratic: each row's Krylov space is exhausted after exactly 6 products."""
    model, *_ = _quadratic(sign=-1.0, d=6)
    result = clever_score(model.eval(), torch.zeros(6), radius=0.5, order=2, seed=0, n_batches=10, batch_size=2)
    assert result.steps_per_row == 6.0
    assert result.hvp_per_point == 6.0  # one target
    assert result.chunk_size == maxima.CPU_CHUNK  # the CPU default for one target
    loaded = CleverResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert (loaded.chunk_size, loaded.hvp_per_point, loaded.steps_per_row) == (maxima.CPU_CHUNK, 6.0, 6.0)
    old = {k: v for k, v in result.to_dict().items() if k not in ("chunk_size", "hvp_per_point", "steps_per_row")}
    assert CleverResult.from_dict(old).hvp_per_point is None
    first = clever_score(model.eval(), torch.zeros(6), radius=0.5, seed=0, n_batches=10, batch_size=2)
    assert (first.chunk_size, first.hvp_per_point, first.steps_per_row) == (None, None, None)


def test_second_order_records_compare_their_chunk_size():
    base = dict(norm=2.0, radius=1.0, n_batches=10, batch_size=8, seed=0)
    second = RecordSettings(order=2, chunk_size=6, **base)
    assert second.differences(RecordSettings(order=2, chunk_size=1, **base)) == [
        "chunk_size 1 -> 6 (second-order results may round differently)"
    ]
    assert second.differences(RecordSettings(order=2, chunk_size=None, **base)) == []  # a record without it
    first = RecordSettings(order=1, chunk_size=6, **base)
    assert first.differences(RecordSettings(order=1, chunk_size=1, **base)) == []
    assert RecordSettings.from_dict(second.to_dict(), "r").chunk_size == 6


def test_warm_start_vectors_are_the_extreme_eigenvectors_at_x0():
    model = SoftplusNet().double().eval().requires_grad_(False)
    x0 = torch.randn(24, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    predicted = int(model(x0.unsqueeze(0)).argmax())
    targets = [j for j in range(6) if j != predicted][:2]
    vector_min, vector_max = ritz_vectors_at(model, x0, predicted, targets, torch.Generator().manual_seed(0))
    for t, j in enumerate(targets):
        hessian = torch.autograd.functional.hessian(
            lambda x: (lambda z: z[0, predicted] - z[0, j])(model(x.unsqueeze(0))),  # noqa: B023
            x0,
        )
        eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
        assert eigenvalues[-1] - eigenvalues[-2] > 1e-3 * eigenvalues.abs().max()  # a unique top vector
        assert abs(float(vector_max[t] @ eigenvectors[:, -1])) == pytest.approx(1.0, abs=1e-4)
        assert abs(float(vector_min[t] @ eigenvectors[:, 0])) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("curvature", ["spectral", "negative"])
def test_rows_that_stop_on_their_own_keep_the_converged_batch_maxima(curvature):
    """The reference iterates every row to 1e-7 without pruning (about twice the steps)."""
    model = SoftplusNet().eval()
    x0 = torch.randn(24, generator=torch.Generator().manual_seed(2))
    logits = model(x0.unsqueeze(0))[0].detach()
    predicted = int(logits.argmax())
    targets = [j for j in range(6) if j != predicted]
    problem = Problem(model, x0, logits[predicted] - logits[targets], predicted, targets, seed=3)
    settings = Settings(norm=2.0, radius=20.0, n_batches=10, batch_size=8, bounds=None, order=2)
    default = second_order.sample_targets(problem, settings, curvature=curvature)
    reference = SolverOptions(tol=1e-7, patience=3, patience_share=0.5, prune=False)
    converged = second_order.sample_targets(problem, settings, curvature=curvature, solver=reference)
    assert torch.allclose(default.sampled.maxima, converged.sampled.maxima, rtol=1e-5, atol=0)
    # The reference runs every row to the end of its 24-dimensional Krylov space (exact), the default stops earlier.
    assert converged.steps_per_row == 24 and default.steps_per_row < 20
