"""Which target classes a CLEVER score is the minimum over: parsing and per-input resolution.

A target specification is one of

- ``"all"``: every class other than the predicted one (the untargeted score);
- ``"top-k"``: the ``k`` most likely other classes, by the logits at ``x``;
- ``"random-k"``: ``k`` other classes drawn with the call's (per-input) seed;
- ``"least-likely"``: the other class with the lowest logit;
- an explicit list of class indices (or the text ``"3,5"`` from an ini file or
  the command line).

:func:`parse_targets` checks what can be checked without the model and gives
a :class:`TargetSpec` with a canonical text form (``str(spec)``) for records
and baseline comparisons; :func:`resolve_targets` turns it into the classes to
score for one input, once its logits and prediction are known. Pure Python:
the pytest settings layer parses targets without importing torch.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_clever.core.validation import as_class_index
from pytest_clever.errors import InvalidInputError

ALL = "all"
TOP = "top"
RANDOM = "random"
LEAST_LIKELY = "least-likely"
EXPLICIT = "explicit"

_RANKED = re.compile(r"^(top|random)-([0-9]+)$")  # ASCII digits: int() also reads other scripts' digits
_SYNTAX = '"all", "top-k", "random-k", "least-likely" or a list of class indices such as [3, 5] or "3,5"'


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target specification; ``str(spec)`` is its canonical text.

    ``kind`` is one of ``"all"``, ``"top"``, ``"random"``, ``"least-likely"``,
    ``"explicit"``; ``k`` is set for top/random, ``classes`` (sorted, distinct)
    for explicit specifications.
    """

    kind: str = ALL
    k: int = 0
    classes: tuple[int, ...] = ()

    def __str__(self) -> str:
        if self.kind in (TOP, RANDOM):
            return f"{self.kind}-{self.k}"
        if self.kind == EXPLICIT:
            return ",".join(map(str, self.classes))
        return self.kind

    @property
    def targeted(self) -> bool:
        """True for one explicit class: the score of that class alone (``target=j``)."""
        return self.kind == EXPLICIT and len(self.classes) == 1


def _class_index(value: Any, spec: Any) -> int:
    index = as_class_index(value)
    if index is None:
        raise InvalidInputError(f"targets {spec!r}: {value!r} is not a class index (an integer >= 0)")
    return index


def _explicit(values: Sequence[Any], spec: Any) -> TargetSpec:
    classes = [_class_index(v, spec) for v in values]
    if not classes:
        raise InvalidInputError(f"targets {spec!r} names no class; use {_SYNTAX}")
    duplicates = sorted({j for j in classes if classes.count(j) > 1})
    if duplicates:
        raise InvalidInputError(f"targets {spec!r} names class {duplicates[0]} more than once")
    return TargetSpec(EXPLICIT, classes=tuple(sorted(classes)))


def parse_targets(spec: Any) -> TargetSpec:
    """Validate a target specification (see the module docstring) and return its :class:`TargetSpec`.

    Raises :class:`~pytest_clever.errors.InvalidInputError` for an unknown
    string, ``k = 0``, a negative or duplicate class, or an empty list.
    Checks that need the model (class range, the predicted class, ``k`` below
    the number of classes) happen in :func:`resolve_targets`.
    """
    if isinstance(spec, TargetSpec):
        return spec
    if not isinstance(spec, (str, numbers.Number)) and hasattr(spec, "tolist") and hasattr(spec, "shape"):
        # A tensor or array, read without importing torch or numpy: 0-d is one class, 1-d a list of them.
        if len(spec.shape) > 1:
            raise InvalidInputError(f"targets must be {_SYNTAX}; got an array of shape {tuple(spec.shape)}")
        values = spec.tolist()
        return _explicit(values if isinstance(values, list) else [values], spec)
    if isinstance(spec, (list, tuple)):
        return _explicit(spec, spec)
    if isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        return _explicit([spec], spec)
    if not isinstance(spec, str):
        raise InvalidInputError(f"targets must be {_SYNTAX}; got {type(spec).__name__} {spec!r}")
    text = spec.strip().lower().replace("_", "-")
    if text in (ALL, LEAST_LIKELY):
        return TargetSpec(text)
    ranked = _RANKED.match(text)
    if ranked:
        k = int(ranked.group(2))
        if k == 0:
            raise InvalidInputError(f"targets {spec!r}: k must be >= 1")
        return TargetSpec(ranked.group(1), k=k)
    parts = [p.strip() for p in text.split(",")]
    if all(re.fullmatch(r"[0-9]+", p) for p in parts):
        return _explicit([int(p) for p in parts], spec)
    raise InvalidInputError(f"unknown targets {spec!r}: use {_SYNTAX}")


def combine_target_and_targets(target: Any, targets: Any) -> TargetSpec:
    """The spec of a call given ``target=`` and/or ``targets=`` (at most one of them; None is unset)."""
    if target is not None and targets is not None:
        raise InvalidInputError(
            f"pass either target={target!r} or targets={targets!r}, not both (target=j is the same as targets=[j])"
        )
    if target is not None:
        return parse_targets([target])
    return parse_targets(ALL if targets is None else targets)


_MASK64 = (1 << 64) - 1


def _splitmix64(state: int) -> tuple[int, int]:
    """One step of SplitMix64: ``(new_state, output)``; fixed forever, unlike library RNG streams."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def draw_classes(candidates: Sequence[int], k: int, seed: int) -> list[int]:
    """``k`` distinct members of ``candidates``, a pure function of ``(candidates, k, seed)``, sorted.

    A partial Fisher-Yates shuffle driven by SplitMix64 (seeded apart from the
    sampling generator, which gets the same seed), so the draw is the same on
    every platform and library version.
    """
    pool = list(candidates)
    state = (int(seed) ^ 0x7A26E7) & _MASK64  # decorrelate from torch's use of the same seed
    for i in range(k):
        state, r = _splitmix64(state)
        j = i + r % (len(pool) - i)  # modulo bias < K / 2**64: negligible
        pool[i], pool[j] = pool[j], pool[i]
    return sorted(pool[:k])


def resolve_targets(spec: Any, logits0: Any, predicted: int, seed: int) -> list[int]:
    """The classes to score for one input: its logits ``logits0`` (``K`` values), prediction and seed.

    top-k orders by decreasing logit (ties by class index), least-likely takes
    the lowest logit (ties: lowest index), random-k is sorted, explicit keeps
    the spec's (sorted) order. Raises
    :class:`~pytest_clever.errors.InvalidInputError` when ``k >= K`` or an
    explicit class is out of range or is the predicted class.
    """
    spec = parse_targets(spec)
    logits = [float(v) for v in (logits0.tolist() if hasattr(logits0, "tolist") else logits0)]
    n_classes = len(logits)
    others = [j for j in range(n_classes) if j != predicted]
    if spec.kind == ALL:
        return others
    if spec.kind == EXPLICIT:
        outside = [j for j in spec.classes if j >= n_classes]
        if outside:
            raise InvalidInputError(
                f"targets {spec}: class {outside[0]} is out of range; the model has {n_classes} "
                f"classes (0 to {n_classes - 1})"
            )
        if predicted in spec.classes:
            raise InvalidInputError(
                f"targets {spec} name class {predicted}, the predicted class: a margin against "
                "itself is 0; choose other classes"
            )
        return list(spec.classes)
    if spec.kind == LEAST_LIKELY:
        return [min(others, key=lambda j: (logits[j], j))]
    if spec.k >= n_classes:
        raise InvalidInputError(
            f"targets {spec}: k = {spec.k} must be below the number of classes K = {n_classes} "
            f'(at most {n_classes - 1} classes differ from the predicted one; "all" scores them all)'
        )
    if spec.kind == TOP:
        return sorted(others, key=lambda j: (-logits[j], j))[: spec.k]
    return draw_classes(others, spec.k, seed)


__all__ = ["TargetSpec", "combine_target_and_targets", "draw_classes", "parse_targets", "resolve_targets"]
