"""Testing a model defended by an input transformation, with CLEVER and BPDA.

The defence: JPEG-compress (or bit-depth-reduce) every input before the
classifier, ``nn.Sequential(jpeg(75), net)``. Rounding makes the gradient of
the defended model zero almost everywhere, so a naive CLEVER run cannot
estimate a Lipschitz constant: pytest-clever refuses with a
``GradientMaskingError`` instead of reporting a huge, meaningless score.

Wrapping the transform in ``BPDA`` keeps it in the forward pass and lets the
gradient pass straight through, so CLEVER scores the network behind the
transform. The tests below assert the seed paper's point: the defended model
is not intrinsically more robust than the undefended one.

Run with ``pytest examples/test_bpda_defence.py`` (about half a minute on a
laptop CPU; the digits CNN trains in a few seconds and needs scikit-learn).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_clever import BPDA, GradientMaskingError, clever_scores
from pytest_clever.defences.transforms import bit_depth, jpeg
from pytest_clever.extras.digits import DIGITS_BOUNDS, cached_digits_cnn, load_digits_data

# L2 perturbations of [0, 1] pixels; small sampling settings keep the example fast.
SETTINGS = dict(norm=2, radius=2.0, bounds=DIGITS_BOUNDS, n_batches=20, batch_size=32, seed=0)
DEFENCES = {"jpeg 75": jpeg(75), "bit depth 4": bit_depth(4)}


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return cached_digits_cnn()


@pytest.fixture(scope="module")
def inputs(net):
    """20 test digits that the net gets right with and without every defence (CLEVER needs that)."""
    data = load_digits_data()
    x, y = data.x_test[:100], data.y_test[:100]
    with torch.no_grad():
        correct = net(x).argmax(1) == y
        for defence in DEFENCES.values():
            correct &= net(defence(x)).argmax(1) == y
    keep = torch.nonzero(correct).flatten()[:20]
    return x[keep], y[keep]


@pytest.mark.parametrize("name", DEFENCES)
def test_without_bpda_the_defended_model_cannot_be_scored(net, inputs, name):
    defended = nn.Sequential(DEFENCES[name], net)
    # Zero gradients everywhere while the margin changes: the error explains and shows BPDA.
    with pytest.raises(GradientMaskingError, match=r"nn\.Sequential\(BPDA\(T\), net\)"):
        clever_scores(defended, *inputs, **SETTINGS)


@pytest.mark.clever(n_batches=20, batch_size=32)  # radius and bounds come from pytest.ini
@pytest.mark.parametrize("name", DEFENCES)
def test_the_defence_adds_no_intrinsic_robustness(clever, net, inputs, name):
    undefended = clever.scores(net, *inputs, name="undefended")
    defended = clever.scores(nn.Sequential(BPDA(DEFENCES[name]), net), *inputs, name=f"{name} + BPDA")
    assert defended.consistent  # no sampled margin contradicts the Lipschitz estimates
    # The defended model is not more robust than the bare network (10% slack for sampling
    # noise); measured mean-score ratios: JPEG 0.95, bit depth 0.98.
    assert defended.mean <= 1.1 * undefended.mean
    # ... and BPDA really scores the network behind the transform: same order of magnitude.
    assert defended.mean >= 0.5 * undefended.mean
