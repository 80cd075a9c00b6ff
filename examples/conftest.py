"""What a user's conftest looks like: the model under test and a few inputs it gets right.

Here the model is a small CNN trained on scikit-learn's 8x8 digits in a few
seconds; in your repo it would be loaded from a checkpoint.
"""

import pytest
import torch

from pytest_clever.toy import cached_digits_cnn, load_digits_data


@pytest.fixture(scope="session")
def digits_model() -> torch.nn.Module:
    return cached_digits_cnn()


@pytest.fixture(scope="session")
def digits_inputs(digits_model):
    """20 test digits the model classifies correctly, with their labels."""
    data = load_digits_data()
    with torch.no_grad():
        correct = digits_model(data.x_test).argmax(1) == data.y_test
    idx = torch.nonzero(correct).flatten()[:20]
    return data.x_test[idx], data.y_test[idx]
