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

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pytest_clever._engine.inputs import as_input_tensor, resolve_single_input
from pytest_clever._engine.model_state import borrowed_model, model_device_and_dtype
from pytest_clever._engine.pgd import Attacker, smallest_distortion
from pytest_clever.core.norms import norm_label, norm_to_json
from pytest_clever.core.seeds import derive_seed
from pytest_clever.core.validation import check_int, check_seed
from pytest_clever.errors import CleverError, InvalidInputError
from pytest_clever.stats.report import CleverReport
from pytest_clever.stats.results import CleverResult

DEFAULT_STEPS = 50
DEFAULT_RESTARTS = 4
DEFAULT_SEARCH_ROUNDS = 3
#: Relative slack before a found distortion counts as below the score: float32
#: rounding of the score and of the distortion must not read as a contradiction.
CONTRADICTION_SLACK = 1e-3


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
    classes = None if result.targets == "all" else list(result.target_classes or (result.target,))
    attacker = Attacker(
        model, x0.detach(), predicted, classes, result.norm, result.bounds, steps, restarts, generator, result.target
    )
    best = smallest_distortion(attacker, result.radius, search_rounds)
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


def _checker(
    model: Callable, steps: Any, restarts: Any, search_rounds: Any, seed: Any
) -> tuple[Callable[..., AttackCheck], torch.device | None, int]:
    """The validated settings bound to one input's check, the device the model is borrowed on, and the seed."""
    steps, restarts, search_rounds, seed = _check_settings(steps, restarts, search_rounds, seed)
    device, dtype = model_device_and_dtype(model)
    check = functools.partial(
        _check_one, steps=steps, restarts=restarts, search_rounds=search_rounds, device=device, dtype=dtype
    )
    return check, device, seed


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
    check, device, seed = _checker(model, steps, restarts, search_rounds, seed)
    with borrowed_model(model, device) as prepared:
        return check(prepared, x, result, seed=seed)


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
    check, device, seed = _checker(model, steps, restarts, search_rounds, seed)
    checks = []
    with borrowed_model(model, device) as prepared:
        for i, (x, result) in enumerate(zip(inputs, results, strict=True)):
            try:
                checks.append(check(prepared, x, result, seed=derive_seed(seed, i)))
            except CleverError as exc:
                raise type(exc)(f"input {i}: {exc}") from exc
    return tuple(checks)


__all__ = ["CONTRADICTION_SLACK", "AttackCheck", "attack_check", "attack_checks"]
