"""PGD inside the CLEVER ball: the machinery behind :func:`pytest_clever.attack.attack_check`.

Projected gradient ascent on the margin loss from several starting points at
once, over several attack radii per batched run (:class:`Attacker`), and the
search over the radius that shrinks the distortion (:func:`smallest_distortion`).
The norms, the starting points and the sparse L1 step are described in
:mod:`pytest_clever.attack`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from pytest_clever._engine.sampling import sample_ball_deltas

#: Attack radii tried at once in each round of the radius search.
RADII_PER_ROUND = 8
#: Closest candidates re-checked one by one before an example is reported.
CONFIRM_CANDIDATES = 8
#: Share of the coordinates an L1 step moves.
L1_SPARSITY = 0.05

#: An adversarial example (shaped like the flat input), its distortion and the class it reaches.
Example = tuple[torch.Tensor, float, int]


def _flat_norm(delta: torch.Tensor, norm: float) -> torch.Tensor:
    return torch.linalg.vector_norm(delta.flatten(1), ord=norm, dim=1)


def _project_l1(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row onto the L1 ball of radius ``eps[row]`` (Duchi et al., 2008)."""
    magnitude = delta.abs()
    inside = magnitude.sum(1, keepdim=True) <= eps
    mu = magnitude.sort(1, descending=True).values
    cumsum = mu.cumsum(1)
    ranks = torch.arange(1, delta.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    rho = ((mu - (cumsum - eps) / ranks) > 0).sum(1, keepdim=True).clamp(min=1)
    theta = (cumsum.gather(1, rho - 1) - eps) / rho.to(delta.dtype)
    projected = delta.sign() * (magnitude - theta).clamp(min=0)
    return torch.where(inside, delta, projected)


def _project(delta: torch.Tensor, norm: float, eps: torch.Tensor) -> torch.Tensor:
    """Project flat perturbations ``(n, d)`` onto the ``norm`` balls of radii ``eps`` ``(n, 1)``."""
    if math.isinf(norm):
        return torch.minimum(torch.maximum(delta, -eps), eps)
    if norm == 2.0:
        length = torch.linalg.vector_norm(delta, dim=1, keepdim=True)
        return delta * (eps / length.clamp(min=eps))
    return _project_l1(delta, eps)


def _step_direction(
    grad: torch.Tensor, x: torch.Tensor, norm: float, bounds: tuple[float, float] | None
) -> torch.Tensor:
    """Steepest-ascent direction of unit ``norm`` for flat gradients ``(n, d)``."""
    if math.isinf(norm):
        return grad.sign()
    if norm == 2.0:
        return grad / torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp(min=1e-12)
    # L1: move only the steepest coordinates that can still move inside the bounds.
    if bounds is not None:
        stuck = ((x >= bounds[1]) & (grad > 0)) | ((x <= bounds[0]) & (grad < 0))
        grad = grad.masked_fill(stuck, 0.0)
    k = max(1, math.ceil(L1_SPARSITY * grad.shape[1]))
    top = grad.abs().topk(k, dim=1)
    direction = torch.zeros_like(grad).scatter_(1, top.indices, 1.0) * grad.sign()
    return direction / direction.abs().sum(1, keepdim=True).clamp(min=1.0)


class Attacker:
    """PGD on one input over several attack radii at once (one batch of ``len(eps) * restarts`` rows)."""

    def __init__(
        self,
        model: Callable,
        x0: torch.Tensor,
        predicted: int,
        classes: list[int] | None,
        norm: float,
        bounds: tuple[float, float] | None,
        steps: int,
        restarts: int,
        generator: torch.Generator,
        hint: int | None = None,
    ) -> None:
        # ``classes``: the classes the attack may reach (those the CLEVER score is the minimum
        # over), or None for every other class.
        self.model, self.x0, self.c, self.classes = model, x0, predicted, classes
        # PGD follows the currently largest attacked logit, which need not be the nearest
        # boundary; one restart per radius aims at ``hint`` (CLEVER's deciding class).
        several = classes is None or len(classes) > 1
        self.hint = hint if several and restarts > 1 else None
        self.norm, self.bounds, self.steps, self.restarts = norm, bounds, steps, restarts
        self.generator = generator
        self.flat0 = x0.reshape(1, -1)

    def logits(self, flat: torch.Tensor) -> torch.Tensor:
        return self.model(flat.reshape(flat.shape[0], *self.x0.shape))

    def loss_terms(self, logits: torch.Tensor) -> torch.Tensor:
        """Per row: the attacked margin's negative; > 0 means the prediction left class c."""
        own = logits[:, self.c]
        if self.classes is not None:
            return logits[:, self.classes].max(1).values - own
        others = logits.clone()
        others[:, self.c] = -math.inf
        return others.max(1).values - own

    def reached(self, logits: torch.Tensor) -> int:
        """The attacked class an adversarial row's logits (1-D) now favour most."""
        if self.classes is None:
            return int(logits.argmax())
        return self.classes[int(logits[self.classes].argmax())]

    def ascent_terms(self, logits: torch.Tensor, success: torch.Tensor) -> torch.Tensor:
        """What each row climbs: ``success`` terms, except on hint rows (towards the hint class)."""
        if self.hint is None:
            return success
        towards_hint = logits[:, self.hint] - logits[:, self.c]
        hint_rows = torch.arange(logits.shape[0], device=logits.device) % self.restarts == 1
        return torch.where(hint_rows, towards_hint, success)

    def _clip(self, flat: torch.Tensor) -> torch.Tensor:
        # x0 lies inside the bounds, so clipping only moves points towards it: they stay in the ball.
        return flat if self.bounds is None else flat.clamp(self.bounds[0], self.bounds[1])

    def run(self, radii: list[float]) -> tuple[list[tuple[torch.Tensor, float]], list[float]]:
        """Adversarial examples found (with their distortions), closest first, and the radii that failed."""
        n, d = self.restarts, self.flat0.shape[1]
        kw: dict[str, Any] = {"dtype": self.x0.dtype, "device": self.x0.device}
        eps = torch.tensor(radii, **kw).repeat_interleave(n).unsqueeze(1)
        unit = sample_ball_deltas(len(radii) * n, (d,), self.norm, 1.0, self.generator, **kw)
        unit[::n] = 0.0  # the first restart of every radius starts at x0 itself
        if self.hint is not None:
            # So does the one aimed at the hint: from x0 it climbs straight towards that boundary
            # (exactly so on a linear margin), where a random start spends its steps turning.
            unit[1::n] = 0.0
        x = self._clip(self.flat0 + unit * eps)
        alpha = 2.5 * eps / self.steps
        hits: list[torch.Tensor] = []
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        done = torch.zeros(len(radii), dtype=torch.bool, device=x.device)
        for _ in range(self.steps + 1):
            x = x.detach().requires_grad_(True)
            logits = self.logits(x)
            terms = self.loss_terms(logits)
            hit = (terms.detach() > 0) & active
            if bool(hit.any()):
                hits.append(x.detach()[hit])
                active &= ~hit
                # A radius is done once one of its restarts succeeded.
                done |= hit.reshape(len(radii), n).any(1)
                active &= ~done.repeat_interleave(n)
                if not bool(active.any()):
                    break
            (grad,) = torch.autograd.grad(self.ascent_terms(logits, terms).sum(), x)
            with torch.no_grad():
                step = alpha * _step_direction(grad, x, self.norm, self.bounds) * active.unsqueeze(1)
                x = self._clip(self.flat0 + _project(x + step - self.flat0, self.norm, eps))
        failed = [r for r, ok in zip(radii, done.tolist(), strict=True) if not ok]
        if not hits:
            return [], failed
        candidates = torch.cat(hits)
        distances = _flat_norm(candidates - self.flat0, self.norm)
        order = distances.argsort().tolist()
        return [(candidates[i], float(distances[i])) for i in order], failed

    def confirmed(self, found: list[tuple[torch.Tensor, float]]) -> Example | None:
        """The closest example that a fresh single forward pass confirms.

        Right at the boundary a batched pass can round the margin across zero.
        """
        for example, distance in found[:CONFIRM_CANDIDATES]:
            with torch.no_grad():
                logits = self.logits(example.unsqueeze(0))
            if float(self.loss_terms(logits)[0]) > 0:
                return example, distance, self.reached(logits[0])
        return None


def smallest_distortion(attacker: Attacker, radius: float, search_rounds: int) -> Example | None:
    """The closest confirmed adversarial example within ``radius``, its distortion and class; None if none was found.

    A search over the attack radius, RADII_PER_ROUND radii per batched PGD run: first on
    (0, R], then ``search_rounds`` times between the largest radius that failed and the
    smallest distortion found.
    """
    radii = [radius * k / RADII_PER_ROUND for k in range(1, RADII_PER_ROUND + 1)]
    found, failed = attacker.run(radii)
    best = attacker.confirmed(found)
    lo = 0.0
    for _ in range(search_rounds):
        if best is None:
            break
        lo = max([r for r in failed if r < best[1]], default=lo)
        if best[1] - lo <= 1e-4 * best[1]:
            break
        radii = [lo + (best[1] - lo) * k / (RADII_PER_ROUND + 1) for k in range(1, RADII_PER_ROUND + 1)]
        found, failed = attacker.run(radii)
        candidate = attacker.confirmed(found)
        if candidate is not None and candidate[1] < best[1]:
            best = candidate
    return best


__all__ = ["Attacker", "smallest_distortion"]
