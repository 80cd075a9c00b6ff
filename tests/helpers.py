"""Reference models and settings shared by the tests: exact linear models, a small smooth net, sample sizes."""

from __future__ import annotations

import torch
from torch import nn


class Linear(nn.Module):
    """f(x) = W x + b on flat inputs: every margin gradient is constant, so CLEVER is exact."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def exact_linear_score(weight, bias, x0, norm, radius, target=None):
    """min_j (f_c - f_j)(x0) / ||w_c - w_j||_q, capped at R (the closed form)."""
    q = {1.0: float("inf"), 2.0: 2.0, float("inf"): 1.0}[float(norm)]
    logits = weight @ x0 + bias
    c = int(logits.argmax())
    targets = [target] if target is not None else [j for j in range(len(logits)) if j != c]
    scores = [float((logits[c] - logits[j]) / torch.linalg.vector_norm(weight[c] - weight[j], ord=q)) for j in targets]
    return min(min(scores), radius)


#: The smallest sample the extreme-value fit accepts (10 batch maxima), in small batches: enough
#: where the score does not depend on the sample (linear models) or only its kind is checked.
SMALL_SAMPLE = dict(n_batches=10, batch_size=16)

#: A 6-d input that ``tanh_net`` classifies with clear margins, and settings that score it quickly.
TANH_X0 = torch.tensor([0.3, 0.6, 0.2, 0.5, 0.4, 0.7])
TANH_SETTINGS = dict(SMALL_SAMPLE, radius=0.5, seed=0)


def tanh_net(dtype=torch.float32) -> nn.Module:
    """A seeded 6-16-3 tanh MLP in eval mode: smooth, so both orders score it."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype).eval()
