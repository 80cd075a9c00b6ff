"""DenseNet-121 (Huang et al. 2017) and the seed paper's defended ImageNet models.

:func:`densenet121` is torchvision's model when torchvision imports, otherwise
an in-repo definition with the same modules, names, parameters and
initialisation (so ``load_state_dict`` of torchvision weights works on it).
No weights are downloaded: the nets are randomly initialised from a seed.
:func:`defended_densenet121` puts one behind an input-transformation defence
scored through :class:`~pytest_clever.BPDA`, as in the seed paper (JPEG at
quality 75, bit-depth reduction). Inputs are ``(N, 3, 224, 224)`` in [0, 1].
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pytest_clever.defences.bpda import BPDA
from pytest_clever.defences.transforms import bit_depth, jpeg

#: DenseNet-121's architecture: growth rate, layers per dense block, bottleneck width, stem width.
GROWTH_RATE = 32
BLOCK_CONFIG = (6, 12, 24, 16)
BN_SIZE = 4
INIT_FEATURES = 64
#: The seed paper's defences: JPEG quality and the bits kept by bit-depth reduction
#: (feature squeezing's ImageNet setting).
JPEG_QUALITY = 75
BIT_DEPTH = 5
IMAGE_SHAPE = (3, 224, 224)


class _DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (bottleneck to ``bn_size * growth``) then BN-ReLU-conv3x3 (to ``growth``)."""

    def __init__(self, in_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_features, width, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        bottleneck = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(bottleneck)))


class _DenseBlock(nn.ModuleDict):
    """Each layer sees the concatenation of the block input and every earlier layer's output."""

    def __init__(self, n_layers: int, in_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        for i in range(n_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(in_features + i * growth_rate, growth_rate, bn_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-conv1x1 (compression to ``out_features``) then 2x2 average pooling."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC as torchvision defines it (module names and init included), without dropout."""

    def __init__(
        self,
        growth_rate: int = GROWTH_RATE,
        block_config: tuple[int, ...] = BLOCK_CONFIG,
        num_init_features: int = INIT_FEATURES,
        bn_size: int = BN_SIZE,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv0", nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ]
            )
        )
        n = num_init_features
        for i, n_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(n_layers, n, growth_rate, bn_size))
            n += n_layers * growth_rate
            if i != len(block_config) - 1:
                # Compression 0.5: each transition halves the channels.
                self.features.add_module(f"transition{i + 1}", _Transition(n, n // 2))
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.classifier = nn.Linear(n, num_classes)
        # torchvision's initialisation, in its order (so one seed gives the same weights).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x))
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))


def _torchvision_densenet121() -> Callable[..., nn.Module] | None:
    try:
        from torchvision.models import densenet121 as factory
    except Exception:  # noqa: BLE001 - absent, or a wheel built for another torch (fails with various errors)
        return None
    return factory


def densenet121(num_classes: int = 1000, seed: int = 0, implementation: str = "auto") -> nn.Module:
    """A randomly initialised DenseNet-121 in eval mode (7,978,856 parameters for 1000 classes).

    ``implementation`` is "auto" (torchvision's when it imports, else the
    in-repo one), "torchvision" or "in-repo". The weights are a function of
    ``seed``; the global torch RNG is left untouched.
    """
    if implementation not in ("auto", "torchvision", "in-repo"):
        raise ValueError(f"implementation must be 'auto', 'torchvision' or 'in-repo', got {implementation!r}")
    factory = None if implementation == "in-repo" else _torchvision_densenet121()
    if factory is None and implementation == "torchvision":
        raise ImportError("torchvision's densenet121 is not available (torchvision does not import)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if factory is not None:
            net = factory(weights=None, num_classes=num_classes)
        else:
            net = DenseNet(num_classes=num_classes)
    return net.eval()


def defended_densenet121(
    defence: str, num_classes: int = 1000, seed: int = 0, net: nn.Module | None = None
) -> nn.Module:
    """DenseNet-121 behind a defence, differentiated through BPDA (identity backward).

    ``defence`` is "jpeg" (JPEG at quality 75), "bit-depth" (5-bit
    reduction) or "none". Pass ``net`` to defend an existing network (shared,
    not copied), e.g. to compare the defended and undefended scores of one net.
    """
    transforms = {"jpeg": lambda: jpeg(JPEG_QUALITY), "bit-depth": lambda: bit_depth(BIT_DEPTH), "none": None}
    if defence not in transforms:
        raise ValueError(f"defence must be one of {', '.join(map(repr, transforms))}, got {defence!r}")
    net = densenet121(num_classes, seed) if net is None else net
    make = transforms[defence]
    if make is None:
        return net
    return nn.Sequential(BPDA(make()), net).eval()


__all__ = ["DenseNet", "defended_densenet121", "densenet121", "IMAGE_SHAPE"]
