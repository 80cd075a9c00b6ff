"""Shared fixtures: one torch thread for tiny models, small exact models and trained digits CNNs."""

from __future__ import annotations

import pytest
import scipy.stats  # noqa: F401  (loaded up front with the engine's stack: see below)
import torch

# In-process pytester runs (``pytester.runpytest``) drop the modules first imported inside
# them, and numpy's C extensions cannot be imported twice in one process: load the whole
# engine's stack before any test runs.
import pytest_clever.api
import pytest_clever.attack
import pytest_clever.cli
import pytest_clever.plugin  # noqa: F401

from .helpers import Linear
from .runs.records import GIT


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a busy shared CPU run several times faster on one intra-op thread.

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; the previous
    thread count is restored after the module.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def no_git(monkeypatch):
    """Saved runs must not depend on running inside a git checkout: git_info returns GIT."""
    from pytest_clever.runs import files

    monkeypatch.setattr(files, "git_info", lambda cwd=None: dict(GIT))


@pytest.fixture
def linear_model():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 6, generator=gen)
    bias = torch.randn(4, generator=gen)
    return Linear(weight, bias), weight, bias


@pytest.fixture(scope="session")
def digits():
    from pytest_clever.extras.digits import load_digits_data

    return load_digits_data()


@pytest.fixture(scope="session")
def digits_cnn():
    from pytest_clever.extras.digits import cached_digits_cnn

    return cached_digits_cnn()
