"""The saved-runs command line: list, compare, history, plot; output and exit codes."""

import subprocess
import sys

import pytest

from pytest_clever.cli import main
from pytest_clever.storage import Storage

from .test_storage import _record, no_git  # noqa: F401 (autouse: no git needed)

PNG = b"\x89PNG\r\n\x1a\n"


def _result(score=0.4):
    maxima = [3.0 + 0.01 * i for i in range(20)]
    fit = {"target": 3, "score": score, "margin": 1.0, "lipschitz": 3.3, "lipschitz_lower_bound": 1.0,
           "sample_max": 3.19, "fit_method": "weibull", "shape": 2.0, "loc": -3.3, "scale": 0.3,
           "ks_statistic": 0.1, "ks_pvalue": 0.8, "fit_reason": ""}
    return {"score": score, "target": 3, "predicted": 1, "per_target": {"3": fit}, "batch_maxima": maxima}


@pytest.fixture
def store(tmp_path):
    store = Storage(tmp_path)
    good = _record("t.py::test_gate", mean=0.5, results=[_result()])
    store.save([good], "main", git={"commit": "1234567890abcdef", "dirty": False})
    worse = _record("t.py::test_gate", mean=0.3, results=[_result(0.3)])
    store.save([worse], "feature", git={"commit": "fedcba0987654321", "dirty": True})
    return store


def run(store, *args):
    return main(["--storage", str(store.root), *args])


def test_list(store, capsys):
    assert run(store, "list") == 0
    out = capsys.readouterr().out
    assert "main" in out and "feature" in out and "1234567890" in out and "fedcba0987*" in out


def test_compare_exit_codes(store, capsys):
    assert run(store, "compare", "main", "feature") == 0  # no rule: report only
    out = capsys.readouterr().out
    assert "t.py::test_gate" in out and "-0.2" in out
    assert run(store, "compare", "main", "feature", "--fail", "mean:10%") == 1
    assert "1 regression(s) past mean:10%" in capsys.readouterr().out
    assert run(store, "compare", "main", "feature", "--fail", "mean:50%") == 0
    assert run(store, "compare", "nope") == 2
    assert "no saved run named 'nope'" in capsys.readouterr().err
    assert run(store, "compare", "main", "--fail", "mode:1") == 2


def test_history(store, capsys):
    assert run(store, "history", "test_gate") == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "test_gate" in l]
    assert len(lines) == 2 and "0.5" in lines[0] and "0.3" in lines[1]
    assert run(store, "history", "no_such_test") == 2


def test_plots_are_valid_pngs(store, tmp_path):
    pytest.importorskip("matplotlib")
    trend, fit = tmp_path / "trend.png", tmp_path / "fit.png"
    assert run(store, "plot", "trend", "-o", str(trend)) == 0
    assert run(store, "plot", "fit", "main", "test_gate", "-o", str(fit)) == 0
    for path in (trend, fit):
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def test_plot_without_matplotlib_says_how_to_get_it(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert run(store, "plot", "trend", "-o", str(tmp_path / "x.png")) == 2
    assert "pip install 'pytest-clever[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_corrupt_file_does_not_take_the_others_down(store, capsys):
    (store.root / "garbage.json").write_text("not json")
    assert run(store, "list") == 0
    captured = capsys.readouterr()
    assert "garbage.json" in captured.err and "main" in captured.out


def test_python_dash_m_entry_point(store):
    out = subprocess.run([sys.executable, "-m", "pytest_clever", "--storage", str(store.root), "list"],
                         capture_output=True, text=True, check=True)
    assert "feature" in out.stdout
