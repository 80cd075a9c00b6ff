"""Run records for the tests of saved runs, comparisons and the command line."""

from __future__ import annotations

from pytest_clever.runs.record import RunRecord

#: The git metadata that the ``no_git`` fixture (tests/conftest.py) hands the storage instead of asking git.
GIT = {"commit": "0123456789abcdef", "branch": "main", "dirty": False}


def make_record_dict(nodeid="t.py::test_a", name=None, mean=0.5, call=0, results=(), **settings) -> dict:
    """A saved record as JSON data: three inputs around ``mean``, first-order default settings plus ``settings``."""
    base = {"norm": 2, "radius": 1.0, "order": 1, "n_batches": 10, "batch_size": 16, "bounds": None, "target": None}
    base.update(settings)
    return {
        "nodeid": nodeid,
        "name": name,
        "call": call,
        "n": len(results) if results else 3,
        "min": mean / 2,
        "mean": mean,
        "median": mean,
        "max": mean * 2,
        "status": "recorded",
        "settings": base,
        "results": list(results),
    }


def make_record(*args, **kwargs) -> RunRecord:
    """``make_record_dict(...)`` as a RunRecord."""
    return RunRecord.from_dict(make_record_dict(*args, **kwargs))
