"""Shared fixtures: small exact models and trained digits CNNs."""

from __future__ import annotations

import pytest
import torch

from .helpers import Linear


@pytest.fixture
def linear_model():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 6, generator=gen)
    bias = torch.randn(4, generator=gen)
    return Linear(weight, bias), weight, bias


@pytest.fixture(scope="session")
def digits():
    from pytest_clever.toy import load_digits_data

    return load_digits_data()


@pytest.fixture(scope="session")
def digits_cnn():
    from pytest_clever.toy import cached_digits_cnn

    return cached_digits_cnn()
