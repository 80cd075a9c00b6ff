"""The in-repo DenseNet-121 and the seed paper's defended models."""

import pytest
import torch
from torch import nn

from pytest_clever import BPDA
from pytest_clever.defences.transforms import JPEG, Quantize
from pytest_clever.extras.densenet import DenseNet, defended_densenet121, densenet121


@pytest.fixture(scope="module")
def net():
    return densenet121(implementation="in-repo")


def test_in_repo_densenet121_has_torchvisions_parameter_count_and_layout(net):
    assert isinstance(net, DenseNet) and not net.training
    assert sum(p.numel() for p in net.parameters()) == 7_978_856  # torchvision's densenet121
    assert sum(p.numel() for p in densenet121(10, implementation="in-repo").parameters()) == 6_964_106
    layers = [name for name, m in net.named_modules() if name.endswith(".conv2")]
    assert len(layers) == 6 + 12 + 24 + 16
    state = net.state_dict()
    # torchvision's names, so its checkpoints load; channels: 64 + 6*32 -> 128 after compression 0.5.
    assert state["features.denseblock1.denselayer1.conv1.weight"].shape == (128, 64, 1, 1)
    assert state["features.transition1.conv.weight"].shape == (128, 256, 1, 1)
    assert state["features.denseblock4.denselayer16.conv2.weight"].shape == (32, 128, 3, 3)
    assert state["classifier.weight"].shape == (1000, 1024)
    # BN-ReLU-conv order inside a layer.
    layer = net.features.denseblock2.denselayer1
    assert [name for name, _ in layer.named_children()] == ["norm1", "relu1", "conv1", "norm2", "relu2", "conv2"]


def test_weights_are_a_function_of_the_seed_and_leave_the_global_rng_alone(net):
    state = torch.random.get_rng_state()
    same = densenet121(implementation="in-repo", seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    other = densenet121(implementation="in-repo", seed=1)
    w = "features.conv0.weight"
    assert torch.equal(same.state_dict()[w], net.state_dict()[w])
    assert not torch.equal(other.state_dict()[w], net.state_dict()[w])
    # torchvision's init: Kaiming normal (fan_in 3*7*7), BN at (1, 0), zero classifier bias.
    assert net.features.conv0.weight.std().item() == pytest.approx((2 / 147) ** 0.5, rel=0.05)
    assert torch.equal(net.features.norm5.weight, torch.ones(1024))
    assert torch.equal(net.classifier.bias, torch.zeros(1000))


def test_forward_gives_1000_logits_and_the_stem_downsamples_32x(net):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net(x)
        features = net.features(x)
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    assert features.shape == (2, 1024, 2, 2)


def test_defended_models_put_bpda_of_the_seed_papers_transforms_in_front(net):
    jpeg_model = defended_densenet121("jpeg", net=net)
    bits_model = defended_densenet121("bit-depth", net=net)
    assert defended_densenet121("none", net=net) is net
    for model, transform in ((jpeg_model, JPEG), (bits_model, Quantize)):
        assert isinstance(model, nn.Sequential) and isinstance(model[0], BPDA) and model[1] is net
        assert isinstance(model[0].transform, transform)
    assert jpeg_model[0].transform.quality == 75 and bits_model[0].transform.levels == 2**5
    with pytest.raises(ValueError, match="defence must be one of"):
        defended_densenet121("blur", net=net)
    # Forward: the transform is applied; backward: the gradient passes straight through.
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = bits_model(x)
    assert torch.equal(out.detach(), net(bits_model[0].transform(x.detach())).detach())
    (g_defended,) = torch.autograd.grad(out[0, 0], x)
    squeezed = bits_model[0].transform(x.detach()).requires_grad_(True)
    (g_net,) = torch.autograd.grad(net(squeezed)[0, 0], squeezed)
    assert g_defended.abs().sum() > 0 and torch.equal(g_defended, g_net)  # the net's gradient at T(x)


def test_unknown_implementation_is_rejected():
    with pytest.raises(ValueError, match="implementation must be"):
        densenet121(implementation="keras")
