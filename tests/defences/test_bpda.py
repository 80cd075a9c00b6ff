"""BPDA, gradient-masking detection and the consistency check.

The seed's experiment at our scale: a digits CNN behind a non-differentiable
defence has masked gradients (CLEVER cannot score it naively); with BPDA its
score is close to the undefended net's -- the defence adds no intrinsic
robustness.
"""

import math
import warnings

import pytest
import scipy.ndimage
import torch
from torch import nn

from pytest_clever import BPDA, CleverWarning, GradientMaskingError, clever_score, clever_scores
from pytest_clever.defences.transforms import bit_depth, jpeg, median_filter
from pytest_clever.extras.digits import DIGITS_BOUNDS

from ..helpers import Linear

# Small settings keep the module fast; 20 inputs make the mean steady.
KW = dict(radius=2.0, bounds=DIGITS_BOUNDS, seed=0, n_batches=20, batch_size=32)
DEFENCES = {"bit depth 4": bit_depth(4), "jpeg 75": jpeg(75), "median 3x3": median_filter(3)}


def smooth(z):
    """A smooth, monotone input transform (derivative 1 + 0.6 cos 6z >= 0.4)."""
    return z + 0.1 * torch.sin(6 * z)


def _double():
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3), nn.Softplus()).double()
    x = torch.rand(4, 5, generator=gen, dtype=torch.float64)
    v = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    return net, x, v


def _grad_and_hvp(fn, x, v):
    """Gradient of ``fn(x).sum()`` and its Hessian-vector product with ``v`` (double backward)."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    return g.detach(), hv


# --- BPDA itself -----------------------------------------------------------------------------


def test_identity_bpda_keeps_the_forward_and_passes_the_gradient_straight_through():
    x = torch.rand(3, 6, requires_grad=True)
    w = torch.randn(3, 6)
    out = BPDA(torch.round)(x)
    assert torch.equal(out, torch.round(x))
    (grad,) = torch.autograd.grad((w * out).sum(), x)
    assert torch.equal(grad, w)  # torch.round itself would give 0


def test_exact_backward_of_a_smooth_transform_equals_autograd_first_and_second_order():
    net, x, v = _double()
    g_ref, hv_ref = _grad_and_hvp(lambda z: net(smooth(z)), x, v)
    g, hv = _grad_and_hvp(lambda z: net(BPDA(smooth, backward=smooth)(z)), x, v)
    assert torch.allclose(g, g_ref, rtol=0, atol=1e-14)
    assert torch.allclose(hv, hv_ref, rtol=0, atol=1e-13)
    assert hv_ref.abs().max() > 1e-3  # the check has teeth: the curvature is not zero
    # The same through torch.func: a full Hessian by reverse over reverse.
    f_ref = lambda z: net(smooth(z)).sum()  # noqa: E731
    f = lambda z: net(BPDA(smooth, backward=smooth)(z)).sum()  # noqa: E731
    h_ref = torch.func.jacrev(torch.func.grad(f_ref))(x[0])
    assert torch.allclose(torch.func.jacrev(torch.func.grad(f))(x[0]), h_ref, rtol=0, atol=1e-13)


def test_bpda_passes_gradcheck_and_gradgradcheck():
    x = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    layer = BPDA(smooth, backward=smooth)
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))


def test_identity_surrogate_second_order_is_the_network_curvature_at_the_transformed_input():
    net, x, v = _double()
    g, hv = _grad_and_hvp(lambda z: net(BPDA(smooth)(z)), x, v)
    g_ref, hv_ref = _grad_and_hvp(net, smooth(x), v)  # derivatives of f at T(x)
    assert torch.allclose(g, g_ref, rtol=0, atol=1e-14)
    assert torch.allclose(hv, hv_ref, rtol=0, atol=1e-14)


def test_a_surrogate_backward_gives_its_vector_jacobian_product_at_the_transformed_input():
    net, x, v = _double()
    quantise = lambda z: torch.round(z * 4) / 4  # noqa: E731
    g, _ = _grad_and_hvp(lambda z: net(BPDA(quantise, backward=smooth)(z)), x, v)
    y = quantise(x).requires_grad_(True)
    (df,) = torch.autograd.grad(net(y).sum(), y)
    assert torch.allclose(g, df * (1 + 0.6 * torch.cos(6 * x)), rtol=0, atol=1e-14)  # J_h^T grad f(T(x))


def test_bpda_runs_numpy_transforms_and_identity_transforms():
    x = torch.rand(2, 1, 6, 6, requires_grad=True)

    def numpy_median(z):
        return torch.from_numpy(scipy.ndimage.median_filter(z.numpy(), size=(1, 1, 3, 3), mode="nearest"))

    out = BPDA(numpy_median)(x)
    assert torch.equal(out, median_filter(3)(x.detach()))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, torch.ones_like(x))
    same = BPDA(lambda z: z)(x)  # returns its input: must still be a fresh node in the graph
    (grad,) = torch.autograd.grad((3 * same).sum(), x)
    assert torch.equal(grad, torch.full_like(x, 3.0))


def test_bpda_with_exact_backward_leaves_the_clever_score_unchanged(digits_cnn, digits):
    kw = dict(KW, n_batches=10)
    xs, ys = digits.x_test[:2], digits.y_test[:2]
    plain = clever_scores(nn.Sequential(_Lambda(smooth), digits_cnn), xs, ys, **kw)
    wrapped = clever_scores(nn.Sequential(BPDA(smooth, backward=smooth), digits_cnn), xs, ys, **kw)
    assert wrapped.scores.tolist() == pytest.approx(plain.scores.tolist(), rel=1e-5)


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


# --- the seed's experiment on the digits CNN -------------------------------------------------


@pytest.fixture(scope="module")
def inputs(digits_cnn, digits):
    """The first 20 test digits that the net classifies correctly with and without every defence."""
    x, y = digits.x_test[:100], digits.y_test[:100]
    with torch.no_grad():
        ok = digits_cnn(x).argmax(1) == y
        for transform in DEFENCES.values():
            ok &= digits_cnn(transform(x)).argmax(1) == y
    idx = torch.nonzero(ok).flatten()[:20]
    assert len(idx) == 20
    return x[idx], y[idx]


@pytest.fixture(scope="module")
def undefended(digits_cnn, inputs):
    return clever_scores(digits_cnn, *inputs, **KW)


@pytest.fixture(scope="module")
def with_bpda(digits_cnn, inputs):
    """BPDA reports per defence, computed once for the module."""
    cache = {}

    def report(name):
        if name not in cache:
            cache[name] = clever_scores(nn.Sequential(BPDA(DEFENCES[name]), digits_cnn), *inputs, **KW)
        return cache[name]

    return report


@pytest.mark.parametrize("name", ["bit depth 4", "jpeg 75"])
def test_rounding_defences_mask_gradients_without_bpda(digits_cnn, inputs, name):
    defended = nn.Sequential(DEFENCES[name], digits_cnn)
    with pytest.raises(GradientMaskingError) as info:
        clever_score(defended, inputs[0][0], label=int(inputs[1][0]), **KW)
    message = str(info.value)
    assert "exactly zero at 100%" in message and "piecewise-constant" in message
    assert "nn.Sequential(BPDA(T), net)" in message


def test_a_median_filter_computed_outside_autograd_is_reported_as_a_cut_graph(digits_cnn, inputs):
    # As feature squeezing deploys it: scipy on numpy arrays.
    def scipy_median(z):
        filtered = scipy.ndimage.median_filter(z.detach().numpy(), size=(1, 1, 3, 3), mode="nearest")
        return torch.from_numpy(filtered)

    with pytest.raises(GradientMaskingError, match="cut off from its input") as info:
        clever_scores(lambda z: digits_cnn(scipy_median(z)), inputs[0][:1], inputs[1][:1], **KW)
    assert str(info.value).startswith("input 0: ") and "BPDA(T)" in str(info.value)


def test_torch_median_filter_is_differentiable_almost_everywhere(digits_cnn, inputs):
    # The torch median is a selection: its gradient is honest almost everywhere, so it is
    # not masked, and the naive score is finite, below R and consistent.
    naive = clever_scores(nn.Sequential(median_filter(3), digits_cnn), inputs[0][:3], inputs[1][:3], **KW)
    assert all(0 < s < KW["radius"] for s in naive.scores)
    assert naive.consistent


@pytest.mark.slow  # two 20-input reports and the undefended one (test_bpda_with_exact_backward covers BPDA scoring)
@pytest.mark.parametrize("name", ["bit depth 4", "jpeg 75"])
def test_with_bpda_a_rounding_defence_scores_like_the_undefended_net(undefended, with_bpda, name):
    report = with_bpda(name)
    assert all(math.isfinite(s) and 0 < s < KW["radius"] for s in report.scores)
    ratio = report.mean / undefended.mean
    # Measured (20 inputs, 20 x 32 samples): bit depth 0.98, JPEG 0.95.
    assert 0.5 < ratio < 2.0
    assert ratio < 1.1  # the seed's point: no intrinsic robustness gained


@pytest.mark.slow  # two more 20-input reports, through the slow median filter
def test_with_bpda_the_median_defence_is_less_robust_than_the_undefended_net(digits_cnn, inputs, undefended, with_bpda):
    # A 3x3 median wipes out much of an 8x8 digit's strokes (accuracy 98.9% -> 81.7%):
    # the net behind it sees low-margin inputs. Measured ratio 0.48, i.e. *less* robust.
    report = with_bpda("median 3x3")
    assert all(math.isfinite(s) and 0 < s < KW["radius"] for s in report.scores)
    assert 0.3 < report.mean / undefended.mean < 1.0
    # BPDA scores the network behind the transform: the plain net scored at the
    # filtered inputs agrees (measured 0.163 vs 0.165).
    behind = clever_scores(digits_cnn, median_filter(3)(inputs[0]), inputs[1], **KW)
    assert report.mean == pytest.approx(behind.mean, rel=0.15)


# --- masking and consistency checks -----------------------------------------------------------


def test_infinite_gradients_raise_and_point_to_bpda(digits_cnn, digits):
    # sqrt has an infinite derivative at the pixels that are (or are clipped to) 0.
    with pytest.raises(GradientMaskingError, match="NaN or infinite") as info:
        clever_score(lambda z: digits_cnn(torch.sqrt(z)), digits.x_test[0], **dict(KW, n_batches=10))
    assert "nn.Sequential(BPDA(T), net)" in str(info.value)


class NarrowCliff(nn.Module):
    """Two classes; the margin 1 + 0.1 x_0 drops by 10 across a cliff 1e-5 wide at x_0 = 0.05.

    Random points almost never land on the cliff, so every sampled gradient
    has norm 0.1 and the EVT estimate is 0.1; but points past the cliff show
    a margin change of 10 over a distance of about 0.05 or more.
    """

    def forward(self, x):
        cliff = 5 * (1 + torch.tanh((x[:, 0] - 0.05) / 1e-5))
        margin = 1 + 0.1 * x[:, 0] - cliff
        return torch.stack([margin, torch.zeros_like(margin)], dim=1)


def test_a_provably_too_low_estimate_is_flagged_with_its_overestimate():
    model, x0 = NarrowCliff(), torch.zeros(2)
    with pytest.warns(CleverWarning) as record:
        result = clever_score(model, x0, radius=1.0, seed=0, n_batches=10, batch_size=32)
    t = result.per_target[1]
    assert t.lipschitz == pytest.approx(0.1, rel=1e-4)  # the cliff was never sampled
    assert t.lipschitz_lower_bound > 50  # but points past it prove L >= 10 / 0.2
    assert result.score == 1.0 and not result.consistent
    # An actual adversarial point at distance 0.051: the score 1.0 is a gross overestimate.
    assert model(torch.tensor([[0.051, 0.0]])).argmax(1).item() == 1
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and messages[0] == f"CLEVER {result.notes[0]}"
    corrected = 1.0 / t.lipschitz_lower_bound
    assert "the score 1 is an overestimate" in messages[0]
    assert f"puts it at {corrected:.4g} or lower, at least {1.0 / corrected:.2f}x lower" in messages[0]
    assert f"{t.lipschitz_lower_bound / 0.1:.2f}x the estimate 0.1" in messages[0]


@pytest.mark.slow  # builds the 20-input undefended report (test_rounding_near_x0 checks the note in the default run)
def test_consistent_runs_carry_no_consistency_note(undefended):
    assert undefended.consistent
    assert not any("inconsistent" in note for r in undefended for note in r.notes)


def test_rounding_near_x0_does_not_fake_an_inconsistency():
    # Linear models: |g(x) - g(x0)| / ||x - x0|| never exceeds ||w||_q, but in float32 a
    # few ulps of the logits over a tiny distance did (a fifth of random cases, up to 2%).
    flagged = []
    for seed in range(40):
        gen = torch.Generator().manual_seed(seed)
        d = 1 + seed % 3
        model = Linear(torch.randn(3, d, generator=gen), 10 * torch.randn(3, generator=gen))
        x0 = torch.randn(d, generator=gen)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            norm = [1, 2, math.inf][seed % 3]
            result = clever_score(model, x0, norm=norm, radius=0.05, seed=seed, n_batches=10, batch_size=32)
        flagged += [seed] if not result.consistent else []
    assert flagged == []
