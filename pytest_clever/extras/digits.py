"""Small real models for examples, tests and benchmarks: CNNs on scikit-learn's 8x8 digits.

Needs scikit-learn (``pip install pytest-clever[test]``); the data ship with
it, so nothing is downloaded. Training is deterministic for a given seed and
takes a few seconds on a laptop CPU. :func:`cached_digits_cnn` trains each
model once per process and keeps its weights on disk (see :func:`cache_dir`),
so later runs load instead of training.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pytest_clever.runs.files import atomic_write_bytes

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
        raise ImportError("the digits data need scikit-learn: pip install 'pytest-clever[test]'") from exc
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
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 64), act(), nn.Linear(64, 10))

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
    robustness-improving augmentation). The global RNG and torch's thread
    count are left untouched. Training runs on one intra-op thread: float
    sums depend on the thread count, and the weights must not (a cached model
    must equal a fresh one on any machine).
    """
    data = load_digits_data()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
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
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


#: Environment variable naming the folder of trained weights; set it empty to disable the disk cache.
CACHE_ENV = "PYTEST_CLEVER_CACHE_DIR"


def cache_dir() -> Path | None:
    """Where :func:`cached_digits_cnn` keeps trained weights, or None when disabled.

    ``$PYTEST_CLEVER_CACHE_DIR`` if set (empty: no disk cache), else
    ``$XDG_CACHE_HOME/pytest-clever`` (``~/.cache/pytest-clever`` by default).
    Deleting the folder is always safe: the models are retrained.
    """
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-clever"


def _cache_key(settings: dict) -> str:
    """Hash of everything the weights depend on: settings, torch version and the training code.

    Hashing the source of the model and the training loop means an edited
    recipe never loads stale weights, without a version number to remember.
    """
    try:
        code = "".join(inspect.getsource(f) for f in (load_digits_data, DigitsCNN, train_digits_cnn))
    except (OSError, TypeError):  # pragma: no cover - no source shipped: never reuse blindly
        code = repr(os.getpid())
    try:
        sklearn_version = importlib.metadata.version("scikit-learn")  # the data's source
    except importlib.metadata.PackageNotFoundError:
        sklearn_version = ""
    blob = json.dumps([settings, torch.__version__, sklearn_version, code], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_or_train_digits_cnn(folder: str | os.PathLike | None, **settings: Any) -> DigitsCNN:
    """:func:`train_digits_cnn` with its weights kept in ``folder`` (None: always train).

    A missing, unreadable or mismatched file means training (then the file is
    rewritten); a folder that cannot be written is ignored. Files are written
    atomically, so concurrent runs (e.g. pytest-xdist workers) never read a
    half-written one.
    """
    bound = inspect.signature(train_digits_cnn).bind(**settings)
    bound.apply_defaults()  # the key names every setting, given or default
    settings = dict(bound.arguments)
    if folder is None:
        return train_digits_cnn(**settings)
    path = Path(folder) / f"digits-cnn-{_cache_key(settings)}.pt"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["settings"] == settings:
            model = DigitsCNN(settings["activation"], settings["width"])
            model.load_state_dict(saved["state_dict"])
            return model.eval()
    except Exception:  # noqa: BLE001 - any unreadable cache file only costs a retraining
        pass
    model = train_digits_cnn(**settings)
    try:
        _save_atomically({"settings": settings, "state_dict": model.state_dict()}, path)
    except OSError:
        pass  # a read-only or full disk: the model is still correct, just not cached
    return model


def _save_atomically(obj: dict, path: Path) -> None:
    """``torch.save`` through :func:`~pytest_clever.runs.files.atomic_write_bytes` (no half-written file)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


@functools.lru_cache(maxsize=8)
def cached_digits_cnn(activation: str = "relu", noise_std: float = 0.0, seed: int = 0) -> DigitsCNN:
    """:func:`train_digits_cnn` memoised per process and on disk in :func:`cache_dir`.

    Callers share the returned model and must not modify it. Cached weights
    are bit-identical to a fresh training (training is deterministic).
    """
    return load_or_train_digits_cnn(cache_dir(), activation=activation, noise_std=noise_std, seed=seed)
