"""Small real models for examples, tests and benchmarks: CNNs on scikit-learn's 8x8 digits.

Needs scikit-learn (``pip install pytest-clever[test]``); the data ship with
it, so nothing is downloaded. Training is deterministic for a given seed,
takes a few seconds on a laptop CPU, and is cached per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

#: Pixel range of the digits tensors (the 0..16 grey levels scaled to [0, 1]).
DIGITS_BOUNDS = (0.0, 1.0)

_ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


@dataclass(frozen=True)
class DigitsData:
    """Train/test split of the digits as float tensors ``(N, 1, 8, 8)`` in [0, 1]."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@functools.lru_cache(maxsize=1)
def load_digits_data() -> DigitsData:
    """Load scikit-learn's digits, scaled to [0, 1], with a fixed 80/20 split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits data need scikit-learn: pip install 'pytest-clever[test]'"
        ) from exc
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    split = int(0.8 * len(y))
    return DigitsData(x[:split], y[:split], x[split:], y[split:])


class DigitsCNN(nn.Module):
    """A small CNN for 1x8x8 digits: two 3x3 convolutions, a max-pool, two linear layers."""

    def __init__(self, activation: str = "relu", width: int = 8) -> None:
        super().__init__()
        act = _ACTIVATIONS[activation]
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            act(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            act(),
            nn.MaxPool2d(2) if activation == "relu" else nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 16, 64), act(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train_digits_cnn(
    *,
    activation: str = "relu",
    noise_std: float = 0.0,
    epochs: int = 15,
    seed: int = 0,
    width: int = 8,
) -> DigitsCNN:
    """Train a :class:`DigitsCNN` and return it in eval mode.

    ``noise_std > 0`` adds Gaussian noise to every training batch (a cheap
    robustness-improving augmentation). The global RNG is left untouched.
    """
    data = load_digits_data()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN(activation, width)
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        loader_gen = torch.Generator().manual_seed(seed)
        n = len(data.y_train)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=loader_gen)
            for start in range(0, n, 64):
                idx = order[start : start + 64]
                xb, yb = data.x_train[idx], data.y_train[idx]
                if noise_std > 0:
                    xb = (xb + noise_std * torch.randn(xb.shape, generator=loader_gen)).clamp(0, 1)
                loss = nn.functional.cross_entropy(model(xb), yb)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


@functools.lru_cache(maxsize=8)
def cached_digits_cnn(activation: str = "relu", noise_std: float = 0.0, seed: int = 0) -> DigitsCNN:
    """:func:`train_digits_cnn` memoised per process (callers must not modify the model)."""
    return train_digits_cnn(activation=activation, noise_std=noise_std, seed=seed)

