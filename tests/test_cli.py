"""The saved-runs command line: list, compare, history, plot; output and exit codes."""

import subprocess
import sys

import pytest

from pytest_clever.cli import main
from pytest_clever.runs.storage import Storage

from .runs.records import make_record

pytestmark = pytest.mark.usefixtures("no_git")

PNG = b"\x89PNG\r\n\x1a\n"


def _result(score=0.4):
    maxima = [3.0 + 0.01 * i for i in range(20)]
    fit = {
        "target": 3,
        "score": score,
        "margin": 1.0,
        "lipschitz": 3.3,
        "lipschitz_lower_bound": 1.0,
        "sample_max": 3.19,
        "fit_method": "weibull",
        "shape": 2.0,
        "loc": -3.3,
        "scale": 0.3,
        "ks_statistic": 0.1,
        "ks_pvalue": 0.8,
        "fit_reason": "",
    }
    return {"score": score, "target": 3, "predicted": 1, "per_target": {"3": fit}, "batch_maxima": maxima}


@pytest.fixture
def store(tmp_path):
    store = Storage(tmp_path)
    good = make_record("t.py::test_gate", mean=0.5, results=[_result()])
    store.save([good], "main", git={"commit": "1234567890abcdef", "dirty": False})
    worse = make_record("t.py::test_gate", mean=0.3, results=[_result(0.3)])
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
    lines = [line for line in capsys.readouterr().out.splitlines() if "test_gate" in line]
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
    out = subprocess.run(
        [sys.executable, "-m", "pytest_clever", "--storage", str(store.root), "list"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "feature" in out.stdout


@pytest.mark.parametrize(
    "config, text",
    [
        ("pytest.ini", "[pytest]\nclever_storage = baselines\n"),
        ("pyproject.toml", "[tool.pytest.ini_options]\nclever_storage = 'baselines'\n"),
        ("tox.ini", "[pytest]\nclever_storage = baselines\n"),
        ("setup.cfg", "[tool:pytest]\nclever_storage = baselines\n"),
    ],
)
def test_cli_finds_the_rootdir_and_ini_storage_from_a_subdirectory(tmp_path, monkeypatch, capsys, config, text):
    project = tmp_path / "project"
    (project / "src" / "deep").mkdir(parents=True)
    (project / config).write_text(text)
    Storage(project / "baselines").save([make_record("t.py::test_gate")], "nightly", git={})
    monkeypatch.chdir(project / "src" / "deep")
    assert main(["list"]) == 0
    assert "nightly" in capsys.readouterr().out
    # --storage still wins (relative to the current folder, like any path on a command line).
    Storage(project / "src" / "deep" / "mine").save([make_record("t.py::test_gate")], "local", git={})
    assert main(["--storage", "mine", "list"]) == 0
    out = capsys.readouterr().out
    assert "local" in out and "nightly" not in out


def test_without_an_ini_file_the_default_storage_is_under_the_setup_py_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "setup.py").write_text("")
    Storage(tmp_path / "pkg" / ".clever").save([make_record("t.py::test_gate")], "main", git={})
    monkeypatch.chdir(tmp_path / "pkg" / "sub")
    assert main(["list"]) == 0
    assert "main" in capsys.readouterr().out


def test_a_malformed_record_is_named_and_skipped_by_every_command(store, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    (path,) = store.root.glob("*_main.json")
    data = __import__("json").loads(path.read_text())
    data["records"].append({"nodeid": "t.py::test_bad", "call": 0, "mean": "high"})
    path.write_text(__import__("json").dumps(data))
    commands = [
        ["list"],
        ["history", "test_gate"],
        ["plot", "trend", "-o", str(tmp_path / "t.png")],
        ["compare", "main", "feature"],
    ]
    for command in commands:
        assert run(store, *command) == 0, command
        err = capsys.readouterr().err
        assert "skipped" in err and "record 1 (t.py::test_bad)" in err and "missing field 'min'" in err, command
        assert err.count("record 1 (t.py::test_bad)") == 1, command  # named once, even by compare


def test_compare_with_a_name_whose_file_has_a_newer_schema_says_so(store, capsys):
    (store.root / "20991231T000000000000Z-abcdef_future.json").write_text(
        '{"kind": "pytest-clever-run", "schema": 99, "records": []}'
    )
    assert run(store, "compare", "future") == 2
    err = capsys.readouterr().err
    assert "no complete saved run named 'future'" in err and "schema 99 is not supported" in err
    assert run(store, "compare", "main") == 0  # latest is the newest readable run; the file is named once
    err = capsys.readouterr().err
    assert err.count("future.json: schema 99 is not supported") == 1 and "skipped: skipped" not in err


def test_list_shows_incomplete_runs(store, capsys):
    store.save([make_record("t.py::test_gate")], "main", git={}, incomplete="interrupted: KeyboardInterrupt")
    assert run(store, "list") == 0
    line = [row for row in capsys.readouterr().out.splitlines() if "interrupted" in row]
    assert len(line) == 1 and "main" in line[0]


def _edit_run(store, name, edit):
    (path,) = store.root.glob(f"*_{name}.json")
    data = __import__("json").loads(path.read_text())
    edit(data)
    path.write_text(__import__("json").dumps(data))
    return path


def test_a_null_score_in_a_baseline_is_named_and_never_exits_as_a_regression(store, capsys):
    # null is how NaN is written; reading it as a score crashed with a raw TypeError, exit 1 ("regression found").
    path = _edit_run(store, "main", lambda d: d["records"][0]["results"][0].update(score=None, interval=[0.3, 0.5]))
    assert run(store, "compare", "main", "feature", "--fail", "mean:10%") == 0
    captured = capsys.readouterr()
    assert f"{path.name}: record 0 (t.py::test_gate): field 'results[0].score' must be a number, got null" in (
        captured.err
    )
    assert "Traceback" not in captured.err
    # The unreadable record's test is not silently ungated: its row says why it was not compared.
    assert "NOT COMPARABLE" in captured.out and "baseline record unreadable" in captured.out


def test_an_unexpected_error_exits_with_the_error_code_not_the_regression_code(store, capsys, monkeypatch):
    import pytest_clever.cli as cli

    def broken(*args, **kwargs):
        raise TypeError("something unforeseen")

    monkeypatch.setattr(cli, "compare_records", broken)
    assert run(store, "compare", "main", "feature") == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "TypeError: something unforeseen" in err and "internal error" in err


def test_plot_fit_of_a_result_without_its_fit_is_a_clear_error(store, tmp_path, capsys):
    _edit_run(store, "main", lambda d: d["records"][0]["results"][0].pop("per_target"))
    assert run(store, "plot", "fit", "main", "test_gate", "-o", str(tmp_path / "fit.png")) == 2
    err = capsys.readouterr().err
    assert "t.py::test_gate, input 0: no fit saved for its deciding target" in err and "KeyError" not in err
    assert not (tmp_path / "fit.png").exists()


@pytest.mark.parametrize(
    "output, message",
    [
        ("/nonexistent/x.png", "-o/--output: folder /nonexistent does not exist"),
        ("", "-o/--output: give a file name"),
        (" ", "-o/--output: give a file name"),
        (".", "-o/--output: . is a folder"),
    ],
)
def test_plot_outputs_are_checked_before_any_work(store, tmp_path, monkeypatch, capsys, output, message):
    monkeypatch.chdir(tmp_path)
    for command in (["plot", "trend"], ["plot", "fit", "main", "test_gate"]):
        assert run(store, *command, "-o", output) == 2, command
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, command
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".png"))


def test_compare_finds_a_run_file_given_without_its_folder(store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path.parent)  # the file name alone does not exist here
    (main_file,) = store.root.glob("*_main.json")
    assert run(store, "compare", main_file.name, "feature") == 0
    assert "baseline main" in capsys.readouterr().out
    assert run(store, "compare", "nothere.json") == 2
    err = capsys.readouterr().err
    assert f"no saved run at nothere.json (nor {store.root / 'nothere.json'})" in err and "name or id" in err


def test_a_dangling_symlink_or_a_file_as_storage_is_an_error(tmp_path, capsys):
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "afile").write_text("x")
    assert main(["--storage", str(tmp_path / "dangling"), "list"]) == 2
    assert f"is a symbolic link to {tmp_path / 'gone'}, which does not exist" in capsys.readouterr().err
    assert main(["--storage", str(tmp_path / "afile"), "list"]) == 2
    assert f"{tmp_path / 'afile'} is not a folder" in capsys.readouterr().err


def test_help_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out and "1  compare: a regression past a --fail rule" in out and "2  an error" in out


@pytest.mark.parametrize("rules", ["", ",", " ", " , "])
def test_compare_with_an_empty_rule_list_is_an_error_not_a_gate_turned_off(store, capsys, rules):
    assert run(store, "compare", "main", "feature", "--fail", rules) == 2
    err = capsys.readouterr().err
    assert "--fail" in err and "holds no rule" in err


def test_list_shows_partial_runs(store, capsys):
    store.save([make_record("t.py::test_gate")], "main", git={}, partial="-k test_gate")
    assert run(store, "list") == 0
    line = [row for row in capsys.readouterr().out.splitlines() if "partial" in row]
    assert len(line) == 1 and "main" in line[0] and "-k test_gate" in line[0]


def test_compare_latest_is_the_newest_run_even_partial_never_the_baseline_run_itself(store, capsys):
    store.save([make_record("t.py::test_gate", mean=0.2)], "main", git={}, partial="-k test_gate")
    runs = store.runs()[0]
    whole = next(r.id for r in runs if r.name == "main" and r.partial is None)
    partial = runs[-1].id
    assert run(store, "compare", "main", "latest", "--fail", "mean:10%") == 1  # 0.5 -> 0.2: the partial run
    captured = capsys.readouterr()
    assert f"({whole}," in captured.out and f"({partial}," in captured.out
    assert f"run {partial} is partial (-k test_gate)" in captured.err


def test_compare_a_run_with_itself_is_an_error(store, capsys):
    assert run(store, "compare", "feature", "latest") == 2
    feature = store.find("feature").id
    assert f"both sides are run {feature}" in capsys.readouterr().err
