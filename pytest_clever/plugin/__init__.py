"""pytest hooks of pytest-clever (registered through the ``pytest11`` entry point).

Thin by design: this module holds only the hooks and the ``clever`` fixture, each
delegating to its own module: ``options`` (flags, ini keys, the marker), ``session``
(the run's state and hooks), ``compare`` and ``summary`` (the end of the run),
``reports`` (the markdown job summary and the HTML report), ``fixture`` (the fixture
object). Numerics live in the public API. Nothing here
imports torch; the ``clever`` fixture imports it on first use.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import pytest

from pytest_clever.plugin.options import add_options, marker_help
from pytest_clever.plugin.reports import CleverReports, add_report_options
from pytest_clever.plugin.session import RECORDS, CleverSession
from pytest_clever.plugin.threads import prefer_passive_openmp

# At import, not in a hook: pytest imports its plugins before any conftest or test module,
# and torch's OpenMP runtime reads the wait policy once, when torch is first imported.
prefer_passive_openmp()

if TYPE_CHECKING:  # pragma: no cover
    from pytest_clever.plugin.fixture import CleverFixture

_SESSION = pytest.StashKey[CleverSession]()
_SESSION_PLUGIN = "clever-session"
_REPORTS = pytest.StashKey[CleverReports]()
_REPORTS_PLUGIN = "clever-reports"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
    add_report_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", marker_help())
    state = CleverSession(config)
    config.stash[_SESSION] = state
    config.pluginmanager.register(state, _SESSION_PLUGIN)
    reports = CleverReports(config, state)
    config.stash[_REPORTS] = reports
    config.pluginmanager.register(reports, _REPORTS_PLUGIN)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_SESSION, None)
    if state is not None:  # None when CleverSession raised a usage error in pytest_configure
        del config.stash[_SESSION]
        config.pluginmanager.unregister(state)
        state.close()
    reports = config.stash.get(_REPORTS, None)
    if reports is not None:
        del config.stash[_REPORTS]
        config.pluginmanager.unregister(reports)


@pytest.fixture
def clever(request: pytest.FixtureRequest) -> CleverFixture:
    """Compute and record CLEVER scores: ``clever.score``, ``clever.scores``, ``clever.assert_robust``.

    Settings come from ``@pytest.mark.clever(...)`` > ``--clever-*`` options >
    ``clever_*`` ini keys > built-in defaults; call arguments override all.
    """
    from pytest_clever.plugin.fixture import CleverFixture
    from pytest_clever.plugin.terminal_progress import terminal_progress

    item = request.node
    state = request.config.stash[_SESSION]
    records = item.stash.setdefault(RECORDS, [])
    progress = functools.partial(terminal_progress, request.config, state.progress, item.nodeid)
    return CleverFixture(
        item.nodeid, state.defaults_for(item), item.user_properties, records, threads=state.threads, progress=progress
    )
