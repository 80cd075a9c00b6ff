"""torch_compile=True: the sampled first-order passes through torch.compile, within COMPILED_TOLERANCE of eager."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_clever import clever_score, clever_scores
from pytest_clever._engine import compiled
from pytest_clever._engine.compiled import COMPILED_TOLERANCE
from pytest_clever.errors import InvalidInputError
from tests.helpers import TANH_X0, tanh_net

KW = dict(radius=0.5, seed=3, n_batches=10, batch_size=16)


def small_conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Softplus(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_torch_compile_takes_a_bool(value):
    with pytest.raises(InvalidInputError, match="torch_compile must be True or False"):
        clever_score(tanh_net(), TANH_X0, torch_compile=value, **KW)


def test_second_order_cannot_be_compiled():
    with pytest.raises(InvalidInputError, match="torch_compile=True compiles the first-order passes"):
        clever_score(tanh_net(), TANH_X0, order=2, torch_compile=True, **KW)


def test_a_model_that_only_fails_compiled_gets_an_error_naming_torch_compile(monkeypatch):
    def broken(model):
        def call(x):
            raise RuntimeError("backend said no")

        return call

    monkeypatch.setattr(compiled, "torch", type("T", (), {"compile": staticmethod(broken)}))
    with pytest.raises(
        InvalidInputError,
        match=r"torch_compile=True: torch.compile could not run this model "
        r"\(RuntimeError: backend said no\).*torch_compile=False",
    ):
        clever_score(tanh_net(), TANH_X0, torch_compile=True, **KW)


@pytest.mark.slow  # compiles (seconds)
def test_compiled_scores_are_eagers_within_the_tolerance_and_repeat_bit_for_bit():
    model = small_conv()
    xs = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    eager = clever_scores(model, xs, targets="all", **KW)
    fast = clever_scores(model, xs, targets="all", torch_compile=True, **KW)
    again = clever_scores(model, xs, targets="all", torch_compile=True, **KW)
    for e, f, a in zip(eager, fast, again, strict=True):
        assert f.torch_compile and not e.torch_compile and f.to_dict()["torch_compile"] is True
        assert f.target == e.target
        assert f.score == pytest.approx(e.score, rel=COMPILED_TOLERANCE)
        assert f.batch_maxima == pytest.approx(e.batch_maxima, rel=COMPILED_TOLERANCE)
        assert (a.score, a.batch_maxima) == (f.score, f.batch_maxima)
    # The model comes back as it was: not replaced by its compiled wrapper.
    assert type(model) is nn.Sequential


@pytest.mark.slow  # compiles (seconds)
def test_compiled_passes_follow_the_screening_to_the_surviving_classes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 120)).eval()
    x = torch.rand(16, generator=torch.Generator().manual_seed(2))
    kw = dict(radius=0.5, seed=1, n_batches=10, batch_size=64)
    eager = clever_score(model, x, screen="on", **kw)
    fast = clever_score(model, x, screen="on", torch_compile=True, **kw)
    assert fast.screened == eager.screened > 100 and fast.screened_after == 128
    assert fast.target == eager.target
    assert fast.score == pytest.approx(eager.score, rel=COMPILED_TOLERANCE)
    assert fast.batch_maxima == pytest.approx(eager.batch_maxima, rel=COMPILED_TOLERANCE)
