"""The seed paper's ImageNet experiment: CLEVER of a defended DenseNet-121 through BPDA.

The paper scores a 121-layer DenseNet (1000 classes, 3x224x224 inputs in
[0, 1]) behind JPEG compression (quality 75) and bit-depth reduction. Both
defences round, so the network's gradient is masked; BPDA keeps the defence
in the forward pass and passes the gradient straight through it, and CLEVER
then measures the network behind it. Like the authors' code it scores a few
target classes rather than all 999: the two most likely other classes
("top-2"), a random one and the least likely one, each one keyword away.

No weights can be downloaded here, so the net is randomly initialised from a
seed; its "correct label" is its own prediction. The default run is CI-sized
(10 batches of 2 samples, one image: well under a minute on 2 CPU cores);
the paper-sized run (500 x 1024 samples) is marked slow and is left out
unless asked for with ``-m slow`` (it takes hours on a CPU; use a GPU).
"""

import math

import pytest
import torch

from pytest_clever import clever_score
from pytest_clever.extras.densenet import IMAGE_SHAPE, defended_densenet121, densenet121

RADIUS = 10.0  # L2 over 3x224x224 pixels in [0, 1]: about 0.026 per pixel (RMS)
CI = dict(radius=RADIUS, bounds=(0.0, 1.0), norm=2, n_batches=10, batch_size=2, seed=0)
PAPER = dict(CI, n_batches=500, batch_size=1024)


@pytest.fixture(scope="module")
def net():
    return densenet121(num_classes=1000, seed=0)


@pytest.fixture(scope="module")
def image():
    """A smooth image (upsampled 7x7 noise): JPEG at quality 75 changes it by a few grey levels only."""
    coarse = torch.rand(1, *IMAGE_SHAPE[:1], 7, 7, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(coarse, size=IMAGE_SHAPE[1:], mode="bicubic").clamp(0, 1)[0]


def _prediction(model, x):
    with torch.no_grad():
        return int(model(x[None]).argmax())


def _check(result, targets, n_classes):
    assert math.isfinite(result.score) and 0 < result.score <= RADIUS
    assert result.targets == targets and len(result.target_classes) == n_classes
    assert set(result.per_target) == set(result.target_classes) and result.predicted not in result.per_target


@pytest.mark.filterwarnings("ignore::pytest_clever.WeakFitWarning")  # 10 batch maxima fit weakly
def test_jpeg_defence_adds_no_robustness_to_the_top_2_targets(net, image):
    defended = defended_densenet121("jpeg", net=net)
    label = _prediction(net, image)
    plain = clever_score(net, image, targets="top-2", label=label, **CI)
    through_bpda = clever_score(defended, image, targets="top-2", label=_prediction(defended, image), **CI)
    _check(plain, "top-2", 2)
    _check(through_bpda, "top-2", 2)
    # The two most likely other classes are the net's, whether or not JPEG runs first.
    assert through_bpda.target_classes == plain.target_classes
    # Through BPDA the score is the network's at the compressed image: no robustness gained.
    assert plain.score < RADIUS  # not capped: the comparison below has teeth
    assert through_bpda.score == pytest.approx(plain.score, rel=0.15)
    for j in plain.target_classes:
        assert through_bpda.per_target[j].lipschitz == pytest.approx(plain.per_target[j].lipschitz, rel=0.15)


@pytest.mark.filterwarnings("ignore::pytest_clever.WeakFitWarning")
def test_bit_depth_defence_scored_at_a_random_and_the_least_likely_target(net, image):
    defended = defended_densenet121("bit-depth", net=net)
    label = _prediction(defended, image)
    random_target = clever_score(defended, image, targets="random-1", label=label, **CI)
    least = clever_score(defended, image, targets="least-likely", label=label, **CI)
    _check(random_target, "random-1", 1)
    _check(least, "least-likely", 1)
    with torch.no_grad():
        logits = defended(image[None])[0]
    assert least.target == int(logits.argmin())
    # The least likely class is the farthest: its margin is the largest of all.
    assert least.per_target[least.target].margin == pytest.approx(float(logits.max() - logits.min()), rel=1e-5)
    assert least.per_target[least.target].margin >= random_target.per_target[random_target.target].margin


@pytest.mark.slow
@pytest.mark.parametrize("defence", ["jpeg", "bit-depth"])
@pytest.mark.parametrize("targets", ["top-2", "random-1", "least-likely"])
def test_paper_sized_run(net, image, defence, targets):
    defended = defended_densenet121(defence, net=net)
    result = clever_score(defended, image, targets=targets, label=_prediction(defended, image), **PAPER)
    _check(result, targets, 2 if targets == "top-2" else 1)
    assert result.fit_method == "weibull" and not result.notes
