"""Plugin settings: typed parsers and the marker > CLI > ini > default resolution.

Pure Python (no torch, no numpy): pytest imports this for every run.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable

from .norms import parse_norm

#: The marker's name, as in ``@pytest.mark.clever(...)``.
MARKER = "clever"
#: Statistics a threshold can apply to, besides "qNN" quantiles.
STATISTICS = ("min", "mean", "median", "max")


def parse_statistic(value: Any) -> str:
    """"min", "mean", "median", "max" or "qNN" with 0 <= NN <= 100."""
    text = str(value).strip().lower()
    if text in STATISTICS or (text.startswith("q") and text[1:].isdigit() and 0 <= int(text[1:]) <= 100):
        return text
    raise ValueError(f"unknown statistic {value!r}: use min, mean, median, max or qNN (e.g. q10)")


def _positive_float(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"must be a finite number > 0, got {value!r}")
    return number


def _non_negative_float(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"must be a finite number >= 0, got {value!r}")
    return number


def _int_at_least(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"must be an integer >= {minimum}, got {value!r}")
        number = int(value)
        if number < minimum:
            raise ValueError(f"must be an integer >= {minimum}, got {value!r}")
        return number

    return parse


def _order(value: Any) -> int:
    if str(value).strip() not in ("1", "2"):
        raise ValueError(f"must be 1 or 2, got {value!r}")
    return int(value)


def _seed(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"must be an integer >= 0, got {value!r}")
    return number


def _bounds(value: Any) -> tuple[float, float]:
    parts = [p for p in value.replace(",", " ").split()] if isinstance(value, str) else list(value)
    if len(parts) != 2:
        raise ValueError(f"must be two numbers lo, hi, got {value!r}")
    lo, hi = float(parts[0]), float(parts[1])
    if not lo < hi:
        raise ValueError(f"must satisfy lo < hi, got {value!r}")
    return lo, hi


def _device(value: Any) -> str:
    return str(value).strip()


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"must be true or false, got {value!r}")


def _target(value: Any) -> int:
    return _int_at_least(0)(value)


def _executor(value: Any) -> Any:
    """``module:factory``, ``dask://HOST:PORT``, or (as a fixture argument) an executor object."""
    if hasattr(value, "submit"):
        return value
    text = str(value).strip()
    module, sep, name = text.partition(":")
    if (text.startswith("dask://") and len(text) > len("dask://")) or (
        sep and name.isidentifier() and all(part.isidentifier() for part in module.split("."))
    ):
        return text
    raise ValueError(f"must be module:factory (e.g. mypkg.cluster:make_executor) or dask://HOST:PORT, got {value!r}")


@dataclass(frozen=True)
class Option:
    """One setting: its parser, built-in default and where it can be set."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    cli: bool = False  # also a --clever-NAME command-line option
    ini: bool = True  # also a clever_NAME ini key
    marker: bool = True  # also a @pytest.mark.clever(NAME=...) argument
    shown: str | None = None  # how --help shows the default, when not just the value

    @property
    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        return "none" if self.default is None else f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    @property
    def flag(self) -> str:
        return "--clever-" + self.name.replace("_", "-")

    @property
    def ini_key(self) -> str:
        return "clever_" + self.name

    def check(self, value: Any, where: str) -> Any:
        """Parse ``value``, or raise ValueError naming the setting and where it came from."""
        try:
            return self.parse(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {self.name} {exc}") from None


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in [
        Option("norm", lambda v: parse_norm(v), 2.0, "perturbation norm: 1, 2 or inf"),
        Option("radius", _positive_float, None, "radius of the sampling ball", shown="none, it depends on your data's scale"),
        Option("n_batches", _int_at_least(10), 100, "batches of samples (batch maxima for the EVT fit)", cli=True),
        Option("batch_size", _int_at_least(1), 128, "fresh sampled points per batch", cli=True),
        Option("order", _order, 1, "1 for first-order CLEVER, 2 for second order"),
        Option("seed", _seed, 0, "base seed; each test derives its own from it and its node id", cli=True),
        Option("device", _device, None, "device to compute on", cli=True, marker=False, shown="the model's device"),
        Option("bounds", _bounds, None, "valid input range 'lo, hi' (e.g. '0, 1'); samples are clipped to it"),
        Option("min_score", _non_negative_float, None, "fail a test whose recorded statistic is below this"),
        Option("statistic", parse_statistic, "mean", "statistic compared with min_score: min, mean, median, max, qNN"),
        Option("target", _target, None, "score against this class only", ini=False),
        Option(
            "executor", _executor, None,
            "score each input as a task on this concurrent.futures executor: module:factory (called once "
            "per process) or dask://HOST:PORT",
            cli=True, marker=False, shown="none, in the test's process",
        ),
        Option(
            "attack_check", _bool, False,
            "also run a PGD attack inside the radius; fail when it finds an adversarial example closer than the score",
        ),
    ]
}

#: Settings that are passed on to clever_score / clever_scores.
ENGINE_SETTINGS = ("norm", "radius", "n_batches", "batch_size", "order", "device", "bounds", "target")


def marker_settings(kwargs: dict[str, Any], args: tuple = (), where: str = "@pytest.mark.clever") -> dict[str, Any]:
    """Validate marker arguments; raise ValueError with a readable message."""
    if args:
        raise ValueError(f"{where} takes keyword arguments only, got positional {args!r}")
    unknown = sorted(k for k in kwargs if k not in OPTIONS or not OPTIONS[k].marker)
    if unknown:
        allowed = ", ".join(sorted(k for k, o in OPTIONS.items() if o.marker))
        raise ValueError(f"{where}: unknown argument(s) {', '.join(unknown)}; allowed: {allowed}")
    return {k: OPTIONS[k].check(v, where) for k, v in kwargs.items() if v is not None}


def resolve(
    marker: dict[str, Any], cli: dict[str, Any], ini: dict[str, Any]
) -> dict[str, Any]:
    """Merge layers with precedence marker > CLI > ini > built-in default (None = unset)."""
    merged = {name: option.default for name, option in OPTIONS.items()}
    for layer in (ini, cli, marker):
        merged.update({k: v for k, v in layer.items() if v is not None})
    return merged


def derive_seed(base: int, *parts: object) -> int:
    """A stable 63-bit seed from a base seed and identifiers (test id, name, call index).

    Independent of test order, process and xdist worker (unlike ``hash()``).
    """
    text = "\x1f".join([str(base), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def argparse_type(option: Option) -> Callable[[str], Any]:
    """Wrap a parser so argparse reports bad values as usage errors."""

    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"{option.flag}: {exc}") from None

    parse.__name__ = option.name
    return parse
