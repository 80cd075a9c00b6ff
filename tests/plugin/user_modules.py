"""Source text of the user test modules that the pytester runs write.

Most plugin tests score a linear model: CLEVER is exact on it and fast, so a run's outcome
depends on the plugin alone. One definition keeps every such module scoring the same model.
"""

from __future__ import annotations

#: Marker arguments for the smallest sample the fit accepts (10 batch maxima), in small batches.
SMALL_SAMPLE_ARGS = "n_batches=10, batch_size=16"

_LINEAR = """
import pytest
import torch
from torch import nn


def linear(factor=1.0):
    gen = torch.Generator().manual_seed(0)
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.copy_(torch.randn(3, 4, generator=gen))
        model.weight[:, 0] *= factor
        model.bias.copy_(torch.randn(3, generator=gen))
    return model.eval()


XS = torch.randn({n_inputs}, 4, generator=torch.Generator().manual_seed(1))
"""


def linear_module(n_inputs: int = 5, first_feature_zero: bool = False) -> str:
    """A module defining ``linear(factor=1.0)``, a seeded 4 -> 3 linear model, and ``n_inputs`` inputs ``XS``.

    With ``first_feature_zero``, feature 0 is 0 in every input: scaling the weights on it
    (``linear(factor)``) steepens the margins without moving them, so factor > 1 is a
    strictly less robust model.
    """
    source = _LINEAR.format(n_inputs=n_inputs)
    return source + "XS[:, 0] = 0.0\n" if first_feature_zero else source
