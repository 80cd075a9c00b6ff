"""What a user's conftest looks like: the model under test and a few inputs it gets right.

Here the model is a small CNN trained on scikit-learn's 8x8 digits in a few
seconds on the first run and then loaded from ~/.cache/pytest-clever (set
PYTEST_CLEVER_CACHE_DIR to move it, or to "" to always train); in your repo
it would be loaded from a checkpoint.
"""

import os

import pytest
import torch

from pytest_clever.extras.digits import cached_digits_cnn, load_digits_data

#: Gaussian-noise augmentation used in training. The baseline walkthrough in the
#: README saves a baseline of the augmented (more robust) model with
#: DIGITS_NOISE=0.3, then compares the plain model (the default) against it.
DIGITS_NOISE = float(os.environ.get("DIGITS_NOISE", "0"))


@pytest.fixture(scope="session")
def digits_model() -> torch.nn.Module:
    return cached_digits_cnn(noise_std=DIGITS_NOISE)


@pytest.fixture(scope="session")
def digits_inputs(digits_model):
    """20 test digits the model classifies correctly, with their labels."""
    data = load_digits_data()
    with torch.no_grad():
        correct = digits_model(data.x_test).argmax(1) == data.y_test
    idx = torch.nonzero(correct).flatten()[:20]
    return data.x_test[idx], data.y_test[idx]
