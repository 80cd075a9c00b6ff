"""The ``clever`` fixture object: computes scores through the public API and records them.

Torch is imported only when a method is called, i.e. only by tests that
actually score a model.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pytest

from .record import RunRecord
from .report import failure_message
from .seeds import derive_seed
from .settings import ENGINE_SETTINGS, OPTIONS
from .validation import parse_statistic


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
        self, nodeid: str, defaults: dict[str, Any], user_properties: list, records: list[RunRecord]
    ) -> None:
        self.nodeid = nodeid
        self.defaults = defaults
        self.records = records
        self._user_properties = user_properties
        self._calls: dict[str | None, int] = {}

    # -- public methods -----------------------------------------------------------------

    def score(self, model: Callable, x: Any, *, name: str | None = None, label: int | None = None, **kw: Any):
        """``clever_score`` with the test's settings; returns the :class:`CleverResult`.

        With ``attack_check=True`` (or the marker/ini setting) a PGD attack
        also runs inside the radius; an adversarial example closer than the
        score fails the test after its body.
        """
        labels = None if label is None else [label]
        report = self._compute(model, [x], labels, name, kw)
        return report.results[0]

    def scores(self, model: Callable, xs: Any, labels: Sequence[int] | None = None, *, name: str | None = None, **kw: Any):
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
    ):
        """Score ``xs`` and fail the test when ``statistic`` of the scores is below ``min_score``.

        ``statistic`` is "mean" (default), "min", "median", "max" or a
        quantile "qNN" such as "q10". With ``attack_check=True`` it also fails
        when a PGD attack finds an adversarial example closer than a score.
        Returns the report when robust enough.
        """
        min_score = self.defaults["min_score"] if min_score is None else OPTIONS["min_score"].check(min_score, "assert_robust")
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
        for key, value in kw.items():
            if key in OPTIONS and value is not None:
                try:
                    settings[key] = OPTIONS[key].check(value, "clever fixture argument")
                except ValueError as exc:
                    pytest.fail(str(exc), pytrace=False)
        return settings

    def _compute(self, model, xs, labels, name, kw, overrides=None):
        from .api import clever_scores  # imports torch: only tests that score pay for it
        from .errors import CleverError

        passthrough = {k: v for k, v in kw.items() if k not in OPTIONS}
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
        seed = derive_seed(settings["seed"], self.nodeid, name or "", call)
        engine = {k: settings[k] for k in ENGINE_SETTINGS if settings[k] is not None}
        xs = __import__("torch").as_tensor(xs) if type(xs).__module__ == "numpy" else xs  # numpy, as the API takes
        if not hasattr(xs, "unbind") and not isinstance(xs, (list, tuple)):
            raise TypeError("xs must be a tensor batch (N, ...) or a list of inputs")
        problem, checks = None, None
        try:
            report = clever_scores(model, xs, labels, seed=seed, **engine, **passthrough)
            if settings["attack_check"]:
                from .attack import attack_checks

                checks = attack_checks(model, xs, report, seed=seed)
        except CleverError as exc:  # a problem with the input or model: say it, without torch internals
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            pytest.fail(problem, pytrace=False)  # outside the except: no chained traceback
        record = RunRecord.from_report(
            self.nodeid, name, call, report, statistic=settings["statistic"], min_score=settings["min_score"],
            target=settings.get("target"), checks=checks,
        )
        self.records.append(record)
        prefix = "clever" + (f"[{name}]" if name else "") + (f"#{call}" if call else "")
        for stat in ("min", "mean", "median"):
            self._user_properties.append((f"{prefix}.{stat}", round(record.statistic(stat), 6)))
        if record.attack is not None:
            self._user_properties.append((f"{prefix}.attack_contradicted", len(record.contradicted)))
        return report
