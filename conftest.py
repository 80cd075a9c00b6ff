"""Repository-wide pytest configuration (tests/ and benchmarks/; examples/ has its own).

Tests marked ``slow`` (training-heavy or long statistical checks, and pytester
runs that need real subprocesses: xdist workers, Ctrl-C, a dask cluster) are
skipped by a plain ``pytest`` and run with ``pytest --run-slow``, as CI does.
The other pytester runs are in-process where that tests the same thing (``tests/conftest.py``
preloads the engine).
"""

import os

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

# CI runs derandomised so a red build is reproducible; locally hypothesis explores freely.
settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow (CI does)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: training-heavy, long, or real-subprocess test; skipped unless --run-slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with pytest --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
