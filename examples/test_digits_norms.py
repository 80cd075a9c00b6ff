"""One robustness bar per threat model: the same test parametrised over norms.

Each norm needs its own radius and threshold because distances differ in
scale (for 64 pixels, ||d||_1 <= 8 ||d||_2 <= 64 ||d||_inf).
"""

import math

import pytest

CASES = [
    # norm, radius, min mean score (measured mean on 10 digits / ~1.4)
    pytest.param(1, 8.0, 0.43, id="L1"),
    pytest.param(2, 2.0, 0.20, id="L2"),
    pytest.param(math.inf, 0.3, 0.035, id="Linf"),
]


@pytest.mark.clever(n_batches=50, batch_size=64)
@pytest.mark.parametrize("norm, radius, min_mean", CASES)
def test_robust_under_each_norm(clever, digits_model, digits_inputs, norm, radius, min_mean):
    xs, labels = digits_inputs
    clever.assert_robust(digits_model, xs[:10], labels[:10], norm=norm, radius=radius, min_score=min_mean)
