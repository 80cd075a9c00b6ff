"""Plugin settings: typed parsers and the marker > CLI > ini > default resolution.

Pure Python (no torch, no numpy): pytest imports this for every run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_clever.core import parsers as parse
from pytest_clever.core.norms import parse_norm
from pytest_clever.core.validation import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONFIDENCE,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_EXECUTOR_TIMEOUT,
    DEFAULT_FIRST_ROUND,
    DEFAULT_MAX_BATCHES,
    DEFAULT_N_BATCHES,
    MIN_BATCHES,
    SCREEN_AUTO,
    check_screen,
    parse_statistic,
)

#: The marker's name, as in ``@pytest.mark.clever(...)``.
MARKER = "clever"


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
        return (
            "none"
            if self.default is None
            else f"{self.default:g}"
            if isinstance(self.default, float)
            else str(self.default)
        )

    @property
    def flag(self) -> str:
        return "--clever-" + self.name.replace("_", "-")

    @property
    def ini_key(self) -> str:
        return "clever_" + self.name

    def check(self, value: Any, where: str) -> Any:
        """Parse ``value``, or raise ValueError naming where it came from (the message names the setting)."""
        try:
            return self.parse(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in [
        Option("norm", lambda v: parse_norm(v), 2.0, "perturbation norm: 1, 2 or inf", cli=True),
        Option(
            "radius",
            parse.positive_float("radius"),
            None,
            "radius of the sampling ball",
            cli=True,
            shown="none, it depends on your data's scale",
        ),
        Option(
            "n_batches",
            parse.int_at_least("n_batches", MIN_BATCHES),
            None,
            "batches of samples (batch maxima for the EVT fit); with precision or budget, the first round",
            cli=True,
            shown=f"{DEFAULT_N_BATCHES}, or {DEFAULT_FIRST_ROUND} as the first round of precision/budget",
        ),
        Option(
            "batch_size",
            parse.int_at_least("batch_size", 1),
            DEFAULT_BATCH_SIZE,
            "fresh sampled points per batch",
            cli=True,
        ),
        Option(
            "precision",
            parse.fraction("precision"),
            None,
            "sample in rounds until the score's interval has this relative half-width (e.g. 0.1), or max_batches",
            cli=True,
        ),
        Option(
            "max_batches",
            parse.int_at_least("max_batches", MIN_BATCHES),
            None,
            "most batches one input gets with precision or budget",
            cli=True,
            shown=f"{DEFAULT_MAX_BATCHES} with precision or budget",
        ),
        Option(
            "budget",
            parse.positive_float("budget"),
            None,
            "seconds one scoring call may spend sampling in rounds; the result says the precision reached",
            cli=True,
        ),
        Option("order", parse.order, 1, "1 for first-order CLEVER, 2 for second order", cli=True),
        Option("seed", parse.seed, 0, "base seed; each test derives its own from it and its node id", cli=True),
        Option(
            "device", parse.device, None, "device to compute on", cli=True, marker=False, shown="the model's device"
        ),
        Option("bounds", parse.bounds, None, "valid input range 'lo, hi' (e.g. '0, 1'); samples are clipped to it"),
        Option(
            "min_score",
            parse.non_negative_float("min_score"),
            None,
            "fail a test whose recorded statistic is below this",
        ),
        Option("statistic", parse_statistic, "mean", "statistic compared with min_score: min, mean, median, max, qNN"),
        Option(
            "confidence",
            parse.confidence,
            DEFAULT_CONFIDENCE,
            "level of the scores' and statistics' confidence intervals, strictly between 0 and 1",
            cli=True,
        ),
        Option(
            "gate",
            parse.gate,
            "point",
            "evidence min_score needs: point (the statistic itself), significant-fail (fail only if its "
            "interval lies below min_score) or significant-pass (pass only if its interval lies at or above it)",
            cli=True,
        ),
        Option(
            "interval",
            parse.interval_kind,
            "estimator",
            "interval of the statistic that gate and the summary use: estimator (estimator noise: the inputs "
            "fixed, each score's own interval) or inputs (input sampling: the inputs as a sample of a "
            "population, a bootstrap over them as well; much wider)",
            cli=True,
        ),
        Option(
            "target",
            parse.int_at_least("target", 0),
            None,
            "score against this class only (the same as targets='j')",
            ini=False,
        ),
        Option(
            "targets",
            parse.targets,
            None,
            "classes the score is the minimum over: all, top-k, random-k, least-likely or a list 'i,j'",
            cli=True,
            shown="all",
        ),
        Option(
            "executor",
            parse.executor,
            None,
            "score each input as a task on this concurrent.futures executor: module:factory (called once "
            "per process), dask://HOST:PORT or ray://HOST:PORT",
            cli=True,
            marker=False,
            shown="none, in the test's process",
        ),
        Option(
            "executor_timeout",
            parse.seconds("executor_timeout"),
            DEFAULT_EXECUTOR_TIMEOUT,
            "seconds an executor run may go with no input coming back before it fails naming the pending inputs",
            cli=True,
            marker=False,
        ),
        Option(
            "executor_connect_timeout",
            parse.seconds("executor_connect_timeout"),
            DEFAULT_CONNECT_TIMEOUT,
            "seconds a dask:// or ray:// executor address is given to answer (one try per pytest process)",
            cli=True,
            marker=False,
        ),
        Option(
            "torch_compile",
            parse.boolean("torch_compile"),
            False,
            "run the sampled first-order passes through torch.compile (faster on conv nets after a compile; "
            "scores within 1e-5)",
            cli=True,
        ),
        Option(
            "screen",
            lambda v: check_screen(v),
            SCREEN_AUTO,
            "screen out target classes that cannot decide a first-order score after 128 points of each: auto "
            "(from 100 classes), on or off",
            cli=True,
        ),
        Option(
            "attack_check",
            parse.boolean("attack_check"),
            False,
            "also run a PGD attack inside the radius; fail when it finds an adversarial example closer than the score",
        ),
    ]
}

#: Torch threads per test process: a process-wide plugin setting (CLI and ini only), not a
#: fixture setting. Unset, an xdist worker shares the cores (``cpu_count // workers``).
THREADS = Option(
    "threads",
    parse.int_at_least("threads", 1),
    None,
    "torch intra-op threads per test process",
    cli=True,
    marker=False,
    shown="torch's own under plain pytest, cores // workers under xdist, unless OMP_NUM_THREADS is set",
)

#: Settings that are passed on to clever_score / clever_scores: the sampling's, then the stopping rule's.
SAMPLED = (
    "norm",
    "radius",
    "n_batches",
    "batch_size",
    "order",
    "device",
    "bounds",
    "targets",
    "confidence",
    "torch_compile",
    "screen",
)
STOPPING = ("precision", "max_batches", "budget")
ENGINE_SETTINGS = SAMPLED + STOPPING
#: The gate's settings, passed on to clever_scores with precision or budget so that the rounds stop once
#: the gate's decision is settled.
DECISION_SETTINGS = ("min_score", "statistic", "gate", "interval")


def marker_settings(kwargs: dict[str, Any], args: tuple = (), where: str = "@pytest.mark.clever") -> dict[str, Any]:
    """Validate marker arguments; raise ValueError with a readable message."""
    if args:
        raise ValueError(f"{where} takes keyword arguments only, got positional {args!r}")
    unknown = sorted(k for k in kwargs if k not in OPTIONS or not OPTIONS[k].marker)
    if unknown:
        allowed = ", ".join(sorted(k for k, o in OPTIONS.items() if o.marker))
        raise ValueError(f"{where}: unknown argument(s) {', '.join(unknown)}; allowed: {allowed}")
    return fold_target({k: OPTIONS[k].check(v, where) for k, v in kwargs.items() if v is not None}, where)


def fold_target(layer: dict[str, Any], where: str) -> dict[str, Any]:
    """``target=j`` is ``targets="j"`` given in the same place: one setting decides the classes.

    So a marker's ``target=3`` overrides an ini ``clever_targets = top-2`` by the usual precedence.
    """
    if layer.get("target") is None:
        return layer
    if layer.get("targets") is not None:
        raise ValueError(f"{where}: give target= or targets=, not both (target=j is targets=[j])")
    folded = {k: v for k, v in layer.items() if k != "target"}
    folded["targets"] = str(layer["target"])
    return folded


def resolve(marker: dict[str, Any], cli: dict[str, Any], ini: dict[str, Any]) -> dict[str, Any]:
    """Merge layers with precedence marker > CLI > ini > built-in default (None = unset)."""
    merged = {name: option.default for name, option in OPTIONS.items()}
    for layer in (ini, cli, marker):
        merged.update({k: v for k, v in layer.items() if v is not None})
    return merged


def argparse_type(option: Option) -> Callable[[str], Any]:
    """Wrap a parser so argparse reports bad values as usage errors."""

    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except (TypeError, ValueError) as exc:
            # The flag already names the setting; the message need not repeat it.
            message = str(exc).removeprefix(f"{option.name} ")
            raise argparse.ArgumentTypeError(f"{option.flag}: {message}") from None

    parse.__name__ = option.name
    return parse


#: Progress of long fixture calls on pytest's terminal: a process-wide plugin setting (CLI and ini only),
#: not a fixture setting (a call's own ``progress=`` keyword goes to the API as it is).
PROGRESS = Option(
    "progress",
    parse.progress_mode,
    "auto",
    "show progress of scoring calls running longer than a few seconds: auto (only on a TTY), on or off",
    cli=True,
    marker=False,
)


__all__ = [
    "DECISION_SETTINGS",
    "ENGINE_SETTINGS",
    "MARKER",
    "OPTIONS",
    "PROGRESS",
    "THREADS",
    "Option",
    "argparse_type",
    "marker_settings",
    "resolve",
]
