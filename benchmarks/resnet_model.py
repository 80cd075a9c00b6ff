"""A small ResNet for 3x32x32 inputs: the benchmarks' CIFAR-size model.

:class:`SmallResNet` with random weights is the model behind the cost tables (what a score costs
depends on the architecture, not the weights). :func:`trained_resnet` trains it, with softplus or
ReLU, on the scikit-learn digits upscaled to 3x32x32 (no network, no torchvision), so that scores
and margins vary between inputs as they do for a real classifier.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pytest_clever.extras.digits import cache_dir, load_digits_data


class ShiftedSoftplus(nn.Softplus):
    """``softplus(x) - log 2``: zero at zero. Plain softplus is positive everywhere, so through the
    residual sums every feature drifts upwards until the pooled features no longer depend on the input
    (the random-weight net gives the same logits for every input, and training does not start)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) - math.log(2.0)


def activation(name: str) -> nn.Module:
    """``softplus``, ``shifted-softplus`` (both smooth: second order applies) or ``relu``."""
    return {"softplus": nn.Softplus, "shifted-softplus": ShiftedSoftplus, "relu": nn.ReLU}[name]()


class Block(nn.Module):
    """A residual block: two 3x3 convolutions, a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, act: str = "softplus") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.act = activation(act)
        self.skip = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))) + self.skip(x))


class SmallResNet(nn.Module):
    """A ResNet for 3x32x32 inputs: a stem, three blocks (16, 32, 64 channels), pooling, a linear head."""

    def __init__(self, width: int = 16, classes: int = 10, act: str = "softplus", centre: bool = False) -> None:
        super().__init__()
        self.centre = centre  # inputs in [0, 1] enter as 2x - 1 (what training needs; the same cost)
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1), activation(act))
        self.blocks = nn.Sequential(
            Block(width, width, 1, act), Block(width, 2 * width, 2, act), Block(2 * width, 4 * width, 2, act)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(2 * x - 1 if self.centre else x)))


def upscale(x: torch.Tensor) -> torch.Tensor:
    """Digits ``(n, 1, 8, 8)`` in [0, 1] as CIFAR-size images ``(n, 3, 32, 32)`` in [0, 1]."""
    big = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    # Three channels that differ (a tint per channel), so the model cannot treat them as one.
    return torch.cat([big, 0.8 * big, 1 - 0.5 * big], dim=1)


def cifar_size_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_train, y_train, x_test, y_test`` of the digits at 3x32x32."""
    data = load_digits_data()
    return upscale(data.x_train), data.y_train, upscale(data.x_test), data.y_test


@functools.lru_cache(maxsize=2)
def trained_resnet(act: str = "shifted-softplus", epochs: int = 10, seed: int = 0) -> SmallResNet:
    """:class:`SmallResNet` (centred inputs) trained on :func:`cifar_size_digits` (one thread, so the weights do not
    depend on the thread count), cached on disk next to the digits CNN's weights."""
    folder = cache_dir()
    path = None if folder is None else Path(folder) / f"resnet-digits32-{act}-{epochs}-{seed}.pt"
    model = SmallResNet(act=act, centre=True)
    if path is not None and path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval().requires_grad_(False)
    x, y, _, _ = cifar_size_digits()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SmallResNet(act=act, centre=True)
            optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
            order = torch.Generator().manual_seed(seed)
            for _ in range(epochs):
                for idx in torch.randperm(len(x), generator=order).split(64):
                    optimiser.zero_grad()
                    F.cross_entropy(model(x[idx]), y[idx]).backward()
                    optimiser.step()
    finally:
        torch.set_num_threads(threads)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
    return model.eval().requires_grad_(False)
