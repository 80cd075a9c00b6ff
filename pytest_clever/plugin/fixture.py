"""The ``clever`` fixture object: computes scores through the public API and records them.

Torch is imported only when a method is called, i.e. only by tests that
actually score a model.
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from pytest_clever.core.options import KEYWORDS
from pytest_clever.core.seeds import derive_seed
from pytest_clever.core.settings import DECISION_SETTINGS, ENGINE_SETTINGS, OPTIONS, fold_target
from pytest_clever.core.validation import check_stopping, parse_statistic
from pytest_clever.errors import CleverWarning
from pytest_clever.plugin.threads import share_cores
from pytest_clever.runs.record import RunRecord
from pytest_clever.runs.report import capped_gate_text, failure_message

if TYPE_CHECKING:
    from pytest_clever.stats.report import CleverReport
    from pytest_clever.stats.results import CleverResult

_PACKAGE = str(Path(__file__).resolve().parent.parent)  # the whole package, not only plugin/


def _user_frame() -> FrameType | None:
    """The innermost frame outside pytest-clever: the test line that called the fixture."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        frame = frame.f_back
    return frame


def call_site(index: int, name: str | None) -> str:
    """Where the test made its ``index``-th fixture call (from 1): ``call 2 in the test (name='b'), test_x.py:14``."""
    frame = _user_frame()
    text = f"call {index} in the test ({'no name=' if name is None else f'name={name!r}'})"
    if frame is None:
        return text
    path = frame.f_code.co_filename
    try:
        path = os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd().resolve()) else path
    except (OSError, ValueError):  # another drive, or the current folder is gone
        pass
    return f"{text}, {path}:{frame.f_lineno}"


def _reissue(caught: list[warnings.WarningMessage], label: str) -> None:
    """Warnings raised while scoring, shown at the user's test line; weak-fit notes as one warning per call.

    The notes themselves are in the record's results (summary and JSON).
    """
    from pytest_clever.errors import CleverWarning, WeakFitWarning

    frame = _user_frame()
    where: dict[str, Any] = {}
    if frame is not None:
        where = {
            "filename": frame.f_code.co_filename,
            "lineno": frame.f_lineno,
            "module": frame.f_globals.get("__name__"),
            "registry": frame.f_globals.setdefault("__warningregistry__", {}),
        }
    weak = [w for w in caught if issubclass(w.category, WeakFitWarning)]
    for w in caught:
        if w in weak:
            continue
        if issubclass(w.category, CleverWarning) and where:
            warnings.warn_explicit(w.message, w.category, **where)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if weak:
        text = (
            f"{label}: {len(weak)} weak-fit note{'s' if len(weak) != 1 else ''}; first: {weak[0].message} "
            "(all of them: CLEVER summary and --clever-json)"
        )
        if where:
            warnings.warn_explicit(text, WeakFitWarning, **where)
        else:
            warnings.warn(text, WeakFitWarning, stacklevel=2)


def _executor(setting: Any, connect_timeout: float) -> Any:
    """The executor of the ``executor`` setting: built from its ini/CLI spec once per process, or the object given."""
    if isinstance(setting, str):
        from pytest_clever._engine.executor_specs import executor_from_spec

        return executor_from_spec(setting, connect_timeout)
    return setting


class CleverFixture:
    """What a test gets from the ``clever`` fixture.

    Settings come from ``@pytest.mark.clever(...)``, the command line and the
    ini file (in that order of precedence); keyword arguments of each call
    override them. Every call is recorded against the test, its ``name`` and
    its call index (the calls with that name in this test so far, from 0),
    and shows up in the end-of-run summary, ``--clever-json`` and junit XML.

    Every ``seed`` setting, including ``seed=`` given to a call, is a base
    seed: the call is scored with ``derive_seed(seed, nodeid, name, call)``,
    which its record keeps, so ``clever_scores(..., seed=record seed)``
    reproduces it.
    """

    def __init__(
        self,
        nodeid: str,
        defaults: dict[str, Any],
        user_properties: list,
        records: list[RunRecord],
        threads: int | None = None,
        progress: Callable[[], Callable | None] | None = None,
    ) -> None:
        self.nodeid = nodeid
        self.defaults = defaults
        self.records = records
        self.threads = threads
        self.progress = progress  # a fresh terminal progress sink per call (or None), unless the call passes progress=
        self._user_properties = user_properties
        self._calls: dict[str | None, int] = {}
        self._all_calls = 0  # every call in the test, whatever its name: the "call N" of a failure message

    # -- public methods -----------------------------------------------------------------

    def score(
        self, model: Callable, x: Any, *, name: str | None = None, label: int | None = None, **kw: Any
    ) -> CleverResult:
        """``clever_score`` with the test's settings; returns the :class:`CleverResult`.

        With ``attack_check=True`` (or the marker/ini setting) a PGD attack
        also runs inside the radius; an adversarial example closer than the
        score fails the test after its body.
        """
        labels = None if label is None else [label]
        report = self._compute(model, [x], labels, name, kw)
        return report.results[0]

    def scores(
        self, model: Callable, xs: Any, labels: Sequence[int] | None = None, *, name: str | None = None, **kw: Any
    ) -> CleverReport:
        """``clever_scores`` with the test's settings; returns the :class:`CleverReport`.

        ``attack_check=True`` cross-checks every input with a PGD attack (see :meth:`score`).
        """
        return self._compute(model, xs, labels, name, kw)

    def assert_robust(
        self,
        model: Callable,
        xs: Any,
        labels: Sequence[int] | None = None,
        *,
        min_score: float | None = None,
        statistic: str | None = None,
        name: str | None = None,
        **kw: Any,
    ) -> CleverReport:
        """Score ``xs`` and fail the test when ``statistic`` of the scores is below ``min_score``.

        ``statistic`` is "mean" (default), "min", "median", "max" or a
        quantile "qNN" such as "q10". With ``attack_check=True`` it also fails
        when a PGD attack finds an adversarial example closer than a score.
        Returns the report when robust enough.
        """
        if min_score is None:
            min_score = self.defaults["min_score"]
        else:
            min_score = OPTIONS["min_score"].check(min_score, "assert_robust")
        if min_score is None:
            pytest.fail(
                "clever.assert_robust needs min_score=..., or set it with @pytest.mark.clever(min_score=...) "
                "or the clever_min_score ini option",
                pytrace=False,
            )
        overrides = {"min_score": min_score}
        if statistic is not None:
            overrides["statistic"] = parse_statistic(statistic)
        report = self._compute(model, xs, labels, name, kw, overrides)
        record = self.records[-1]
        if record.status == "failed":
            pytest.fail(failure_message(record), pytrace=False)
        return report

    # -- internals ----------------------------------------------------------------------

    def _settings(self, kw: dict[str, Any]) -> dict[str, Any]:
        settings = dict(self.defaults)
        try:
            given = {k: OPTIONS[k].check(v, "clever fixture argument") for k, v in kw.items() if v is not None}
            settings.update(fold_target(given, "clever fixture argument"))
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)
        return settings

    @staticmethod
    def _check_keywords(kw: dict[str, Any]) -> None:
        """A misspelt keyword fails the test with the allowed ones, not a TypeError from the API.

        Allowed: the plugin's settings, the API's other keywords (``KEYWORDS``: chunk_size,
        curvature, progress) and ``name``.
        """
        allowed = sorted(set(OPTIONS) | set(KEYWORDS) | {"name"})
        unknown = sorted(k for k in kw if k not in allowed)
        if unknown:
            hints = [
                f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, allowed, 1)) else k for k in unknown
            ]
            pytest.fail(
                f"clever fixture: unknown keyword argument(s) {', '.join(hints)}; allowed: {', '.join(allowed)}",
                pytrace=False,
            )

    def _compute(
        self,
        model: Callable,
        xs: Any,
        labels: Sequence[int] | None,
        name: str | None,
        kw: dict[str, Any],
        overrides: dict[str, Any] | None = None,
    ) -> CleverReport:
        from pytest_clever.api import clever_scores  # imports torch: only tests that score pay for it
        from pytest_clever.errors import CleverError

        self._check_keywords(kw)
        threads = share_cores(self.threads)
        passthrough = {k: v for k, v in kw.items() if k not in OPTIONS}
        if self.progress is not None and "progress" not in passthrough:
            passthrough["progress"] = self.progress()
        settings = self._settings({k: v for k, v in kw.items() if k in OPTIONS})
        settings.update(overrides or {})
        if settings["radius"] is None:
            pytest.fail(
                "pytest-clever needs a radius: pass radius=..., use @pytest.mark.clever(radius=...) "
                "or set clever_radius in the ini file",
                pytrace=False,
            )
        if name is not None and (not isinstance(name, str) or not name):
            pytest.fail(f"clever fixture: name must be a non-empty string, got {name!r}", pytrace=False)
        call = self._calls.get(name, 0)
        self._calls[name] = call + 1
        self._all_calls += 1
        location = call_site(self._all_calls, name)
        seed = derive_seed(settings["seed"], self.nodeid, name or "", call)
        engine = {k: settings[k] for k in ENGINE_SETTINGS if settings[k] is not None}
        if settings["min_score"] is not None and (settings["precision"] is not None or settings["budget"] is not None):
            engine.update({k: settings[k] for k in DECISION_SETTINGS})  # rounds stop once the gate is decided
        xs = __import__("torch").as_tensor(xs) if type(xs).__module__ == "numpy" else xs  # numpy, as the API takes
        if not hasattr(xs, "unbind") and not isinstance(xs, (list, tuple)):
            raise TypeError("xs must be a tensor batch (N, ...) or a list of inputs")
        problem, checks = None, None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if settings["executor"] is not None:
                    engine["executor"] = _executor(settings["executor"], settings["executor_connect_timeout"])
                    engine["executor_timeout"] = settings["executor_timeout"]
                report = clever_scores(model, xs, labels, seed=seed, **engine, **passthrough)
                if settings["attack_check"]:
                    from pytest_clever.attack import attack_checks

                    checks = attack_checks(model, xs, report, seed=seed)
            except CleverError as exc:  # a problem with the input or model: say it, without torch internals
                problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            _reissue(caught, self.nodeid)
            pytest.fail(f"{location}: {problem}", pytrace=False)  # outside the except: no chained traceback
        record = RunRecord.from_report(
            self.nodeid,
            name,
            call,
            report,
            statistic=settings["statistic"],
            min_score=settings["min_score"],
            gate=settings["gate"],
            interval_kind=settings["interval"],
            targets=settings["targets"] or "all",
            checks=checks,
            # Valid here: clever_scores checked the same values.
            stopping=check_stopping(*(settings[k] for k in ("n_batches", "precision", "max_batches", "budget"))),
        )
        record = replace(record, settings=replace(record.settings, threads=threads), location=location)
        self.records.append(record)
        prefix = "clever" + (f"[{name}]" if name else "") + (f"#{call}" if call else "")
        for stat in ("min", "mean", "median"):
            self._user_properties.append((f"{prefix}.{stat}", round(record.statistic(stat), 6)))
        if record.attack is not None:
            self._user_properties.append((f"{prefix}.attack_contradicted", len(record.contradicted)))
        capped_gate = capped_gate_text(record)
        if capped_gate is not None:  # the radius, not the model, decided the gate: say so where the call is
            caught.append(warnings.WarningMessage(CleverWarning(capped_gate), CleverWarning, __file__, 0))
        # Last, once the record is kept: under -W error a warning raises here and ends the test, and its
        # score must still reach the summary, the JSON file and the saved run.
        _reissue(caught, record.label)
        return report
