"""Cross-check a CLEVER score with a PGD attack inside the sampling ball.

CLEVER estimates the smallest perturbation that changes a prediction; it is
not a certificate (docs/maths.md, "What the score does and does not
guarantee"; Goodfellow, arXiv 1804.07870). An adversarial example found
closer than the score *proves* that the score overestimates the true
minimal distortion. Finding none proves nothing, but a PGD
distortion close to the score says the score is not wildly optimistic.

The attack: projected gradient ascent on the margin loss
``max_{j != c} f_j(x) - f_c(x)`` (the max over the scored classes only when
the score covers a subset, ``targets=``),
from ``restarts`` starting points at once, inside the ``norm`` ball of radius
``eps`` intersected with the result's input bounds; a search over ``eps`` in
``(0, R]`` (several radii per batched run, then refined) shrinks the distortion. Norms:

- L2 and Linf: standard PGD (normalised gradient / sign steps, projection onto the ball).
- L1: a simple sparse variant: each step moves only the coordinates with the
  largest gradient magnitude (those that can still move inside the bounds),
  followed by an exact Euclidean projection onto the L1 ball. It is weaker
  than dedicated L1 attacks (EAD, SLIDE), so its distortions are looser
  upper bounds of the true minimum.

Under every norm, when several classes can be reached, one restart per
radius aims at the class CLEVER found easiest to reach; it and the first
restart start at x0, the others at random points of the ball.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from pytest_clever.errors import CleverError, InvalidInputError
from pytest_clever._engine.model_state import borrowed_model, model_device_and_dtype
from pytest_clever.core.norms import norm_label, norm_to_json
from pytest_clever.stats.results import CleverReport, CleverResult
from pytest_clever._engine.sampling import sample_ball_deltas
from pytest_clever._engine.inputs import as_input_tensor, resolve_single_input
from pytest_clever.core.seeds import derive_seed
from pytest_clever.core.validation import check_int, check_seed

DEFAULT_STEPS = 50
DEFAULT_RESTARTS = 4
DEFAULT_SEARCH_ROUNDS = 3
#: Attack radii tried at once in each round of the radius search.
RADII_PER_ROUND = 8
#: Closest candidates re-checked one by one before an example is reported.
CONFIRM_CANDIDATES = 8
#: Relative slack before a found distortion counts as below the score: float32
#: rounding of the score and of the distortion must not read as a contradiction.
CONTRADICTION_SLACK = 1e-3
#: Share of the coordinates an L1 step moves.
L1_SPARSITY = 0.05


@dataclass(frozen=True)
class AttackCheck:
    """The outcome of :func:`attack_check` for one input.

    ``distortion`` is the smallest ``norm`` distance to an adversarial example
    found (``None`` when the attack found none within the CLEVER radius).
    ``contradicts`` is True when ``distortion < score`` (beyond float
    rounding): the CLEVER score then provably overestimates the minimal
    adversarial distortion. ``adversarial_class`` is the class the example is
    classified as; ``example`` the adversarial input itself (not in the repr,
    not in :meth:`to_dict`).
    """

    distortion: float | None
    score: float
    norm: float
    radius: float
    contradicts: bool
    predicted: int
    adversarial_class: int | None
    targeted: bool
    steps: int
    restarts: int
    search_rounds: int
    seed: int
    elapsed: float = field(compare=False)
    example: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def found(self) -> bool:
        """Whether an adversarial example was found inside the radius."""
        return self.distortion is not None

    @property
    def ratio(self) -> float:
        """``distortion / score`` (inf when nothing was found): below 1 means a contradiction."""
        if self.distortion is None:
            return math.inf
        return self.distortion / self.score if self.score > 0 else math.inf

    def __repr__(self) -> str:
        found = "none within radius" if self.distortion is None else f"{self.distortion:.4g}"
        cls = "" if self.adversarial_class is None else f", adversarial_class={self.adversarial_class}"
        return (
            f"AttackCheck(distortion={found}, score={self.score:.4g}, norm={norm_label(self.norm)}, "
            f"contradicts={self.contradicts}, predicted={self.predicted}{cls}, radius={self.radius:g}, "
            f"steps={self.steps}, restarts={self.restarts}, seed={self.seed}, elapsed={self.elapsed:.2f}s)"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (without the example tensor)."""
        return {
            "distortion": self.distortion,
            "score": self.score,
            "norm": norm_to_json(self.norm),
            "radius": self.radius,
            "contradicts": self.contradicts,
            "predicted": self.predicted,
            "adversarial_class": self.adversarial_class,
            "targeted": self.targeted,
            "steps": self.steps,
            "restarts": self.restarts,
            "search_rounds": self.search_rounds,
            "seed": self.seed,
            "elapsed": self.elapsed,
        }


def _check_settings(steps: Any, restarts: Any, search_rounds: Any, seed: Any) -> tuple[int, int, int, int]:
    return (
        check_int("steps", steps, 1),
        check_int("restarts", restarts, 1),
        check_int("search_rounds", search_rounds, 0),
        check_seed(seed),
    )


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


def _step_direction(grad: torch.Tensor, x: torch.Tensor, norm: float, bounds) -> torch.Tensor:
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


class _Attacker:
    """PGD on one input over several attack radii at once (one batch of ``len(eps) * restarts`` rows)."""

    def __init__(self, model, x0, predicted, classes, norm, bounds, steps, restarts, generator, hint=None):
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
        kw = {"dtype": self.x0.dtype, "device": self.x0.device}
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
        failed = [r for r, ok in zip(radii, done.tolist()) if not ok]
        if not hits:
            return [], failed
        candidates = torch.cat(hits)
        distances = _flat_norm(candidates - self.flat0, self.norm)
        order = distances.argsort().tolist()
        return [(candidates[i], float(distances[i])) for i in order], failed


def _check_one(
    model: Callable,
    x: torch.Tensor,
    result: CleverResult,
    *,
    steps: int,
    restarts: int,
    search_rounds: int,
    seed: int,
    device: torch.device | None,
    dtype: torch.dtype | None,
) -> AttackCheck:
    started = time.perf_counter()
    x = as_input_tensor(x)
    x = x.to(device=device or x.device, dtype=dtype or x.dtype)
    x0, logits0 = resolve_single_input(model, x)
    predicted = int(logits0.argmax())
    if predicted != result.predicted:
        raise InvalidInputError(
            f"the model predicts class {predicted} for x but the CLEVER result was computed for a "
            f"prediction of class {result.predicted}: pass the input the result belongs to"
        )
    if result.bounds is not None and (float(x0.min()) < result.bounds[0] or float(x0.max()) > result.bounds[1]):
        raise InvalidInputError(f"x lies outside the result's bounds {result.bounds}")
    generator = torch.Generator(device=x0.device).manual_seed(seed)
    attacker = _Attacker(
        model, x0.detach(), predicted, None if result.targets == "all" else list(result.target_classes or (result.target,)),
        result.norm, result.bounds, steps, restarts, generator, hint=result.target,
    )
    # A search over the attack radius, RADII_PER_ROUND radii per batched PGD run: first on
    # (0, R], then between the largest radius that failed and the smallest distortion found.
    def confirmed(found):
        # The closest example that a fresh single forward pass confirms: right at the boundary
        # a batched pass can round the margin across zero.
        for example, distance in found[:CONFIRM_CANDIDATES]:
            with torch.no_grad():
                logits = attacker.logits(example.unsqueeze(0))
            if float(attacker.loss_terms(logits)[0]) > 0:
                return example, distance, attacker.reached(logits[0])
        return None

    radii = [result.radius * k / RADII_PER_ROUND for k in range(1, RADII_PER_ROUND + 1)]
    found, failed = attacker.run(radii)
    best = confirmed(found)
    lo = 0.0
    for _ in range(search_rounds):
        if best is None:
            break
        lo = max([r for r in failed if r < best[1]], default=lo)
        if best[1] - lo <= 1e-4 * best[1]:
            break
        radii = [lo + (best[1] - lo) * k / (RADII_PER_ROUND + 1) for k in range(1, RADII_PER_ROUND + 1)]
        found, failed = attacker.run(radii)
        candidate = confirmed(found)
        if candidate is not None and candidate[1] < best[1]:
            best = candidate
    example, distortion, adversarial_class = None, None, None
    if best is not None:
        example, distortion, adversarial_class = best[0].reshape(x0.shape).detach(), best[1], best[2]
    contradicts = distortion is not None and distortion < result.score * (1 - CONTRADICTION_SLACK)
    return AttackCheck(
        distortion=distortion,
        score=result.score,
        norm=result.norm,
        radius=result.radius,
        contradicts=contradicts,
        predicted=predicted,
        adversarial_class=adversarial_class,
        targeted=result.targeted,
        steps=steps,
        restarts=restarts,
        search_rounds=search_rounds,
        seed=seed,
        elapsed=time.perf_counter() - started,
        example=example,
    )


def attack_check(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    result: CleverResult,
    *,
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    search_rounds: int = DEFAULT_SEARCH_ROUNDS,
    seed: int = 0,
) -> AttackCheck:
    """Attack ``x`` inside the CLEVER ball of ``result`` and compare the distortion found with the score.

    Runs PGD (``steps`` iterations from ``restarts`` starting points: the first
    at ``x`` itself, and so the one aimed at CLEVER's deciding class when there
    are several classes, the rest random) in ``result.norm`` within ``result.radius`` and
    ``result.bounds``. The attack radius is searched in batches: 8 radii
    spread over ``(0, R]``, then ``search_rounds`` refinements between the
    largest radius that failed and the smallest distortion found (each round
    narrows the interval ninefold). A result over a subset of classes (``targets=``,
    ``target=``) is attacked towards those classes only.
    The model is used in eval mode without parameter gradients and handed
    back unchanged; the global RNG is not touched; the same ``seed`` gives
    the same outcome on the same device.

    Returns an :class:`AttackCheck`; ``check.contradicts`` is True when an
    adversarial example lies closer than the score, which proves the score
    too high. Raises :class:`~pytest_clever.errors.InvalidInputError` when
    the model's prediction for ``x`` is not ``result.predicted``.
    """
    if not isinstance(result, CleverResult):
        raise InvalidInputError(f"result must be a CleverResult, got {type(result).__name__}")
    steps, restarts, search_rounds, seed = _check_settings(steps, restarts, search_rounds, seed)
    device, dtype = model_device_and_dtype(model)
    with borrowed_model(model, device) as prepared:
        return _check_one(
            prepared, x, result, steps=steps, restarts=restarts, search_rounds=search_rounds,
            seed=seed, device=device, dtype=dtype,
        )


def attack_checks(
    model: Callable[[torch.Tensor], torch.Tensor],
    xs: torch.Tensor | Sequence[torch.Tensor],
    report: CleverReport | Sequence[CleverResult],
    *,
    steps: int = DEFAULT_STEPS,
    restarts: int = DEFAULT_RESTARTS,
    search_rounds: int = DEFAULT_SEARCH_ROUNDS,
    seed: int = 0,
) -> tuple[AttackCheck, ...]:
    """:func:`attack_check` for every input of a :class:`CleverReport`.

    Input ``i`` uses the seed ``derive_seed(seed, i)`` (:mod:`pytest_clever.core.seeds`).
    """
    inputs = list(xs.unbind(0)) if isinstance(xs, torch.Tensor) else list(xs)
    results = list(report)
    if len(inputs) != len(results):
        raise InvalidInputError(f"got {len(inputs)} inputs for {len(results)} results")
    steps, restarts, search_rounds, seed = _check_settings(steps, restarts, search_rounds, seed)
    device, dtype = model_device_and_dtype(model)
    checks = []
    with borrowed_model(model, device) as prepared:
        for i, (x, result) in enumerate(zip(inputs, results)):
            try:
                checks.append(
                    _check_one(
                        prepared, x, result, steps=steps, restarts=restarts,
                        search_rounds=search_rounds, seed=derive_seed(seed, i), device=device, dtype=dtype,
                    )
                )
            except CleverError as exc:
                raise type(exc)(f"input {i}: {exc}") from exc
    return tuple(checks)


__all__ = ["AttackCheck", "attack_check", "attack_checks", "CONTRADICTION_SLACK"]
