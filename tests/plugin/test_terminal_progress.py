"""Progress of long fixture calls on pytest's terminal: when it shows, what it writes, and real runs."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from pytest_clever.core.progress import ProgressEvent
from pytest_clever.core.settings import PROGRESS
from pytest_clever.plugin import terminal_progress as tp
from pytest_clever.plugin.terminal_progress import TerminalProgress, terminal_progress

NODEID = "tests/test_model.py::test_gate"


class FakeReporter:
    """The parts of pytest's TerminalReporter the progress line uses, as a log of calls."""

    def __init__(self, *, tty: bool = True, verbose: bool = False, capman: FakeCapman | None = None) -> None:
        self.isatty, self.showlongtestinfo, self.showfspath = tty, verbose, not verbose
        self.currentfspath: object = "tests/test_model.py" if not verbose else "tests/test_model.py::test_gate "
        self.calls: list[tuple] = []
        self.capman = capman

    def _log(self, *call) -> None:
        assert self.capman is None or self.capman.suspended, f"{call} written while output is captured"
        self.calls.append(call)

    def ensure_newline(self) -> None:
        if self.currentfspath:
            self._log("newline")
            self.currentfspath = None

    def write(self, text: str) -> None:
        self._log("write", text)

    def rewrite(self, text: str, erase: bool = False) -> None:
        self._log("rewrite", text, erase)

    def flush(self) -> None:
        pass

    def write_fspath_result(self, nodeid: str, res: str) -> None:
        self._log("fspath", nodeid, res)
        self.currentfspath = nodeid.split("::")[0]


class FakeCapman:
    def __init__(self) -> None:
        self.suspended = False

    @contextlib.contextmanager
    def global_and_fixture_disabled(self):
        self.suspended = True
        try:
            yield
        finally:
            self.suspended = False


def event(
    stage: str, elapsed: float, *, done: int = 0, points: int = 0, first: float | None = None, left: float | None = None
):
    return ProgressEvent(stage, min(done, 3), done, 4, points, 1000, 9, elapsed, first, left)


def feed(sink, events) -> None:
    for e in events:
        sink(e)


def test_a_short_call_writes_nothing():
    capman = FakeCapman()
    reporter = FakeReporter(capman=capman)
    sink = TerminalProgress(reporter, capman, NODEID, tty=True)
    feed(
        sink,
        [
            event("start", 0.0),
            event("input", 0.1),
            event("chunk", 1.0, points=500),
            event("scored", 2.9, done=1, points=1000, first=2.9, left=8.7),
            event("done", 2.95, done=1),
        ],
    )
    assert reporter.calls == []
    assert reporter.currentfspath == "tests/test_model.py"  # pytest's line is left alone


def test_tty_line_waits_updates_in_place_throttled_and_hands_the_line_back():
    capman = FakeCapman()
    reporter = FakeReporter(capman=capman)
    sink = TerminalProgress(reporter, capman, NODEID, tty=True)
    feed(
        sink,
        [
            event("start", 0.0),
            event("input", 0.1),
            event("chunk", 2.5, points=200),  # before the delay: silent
            event("chunk", 3.2, points=300),  # first line
            event("chunk", 3.9, points=400),  # within the interval: dropped
            event("chunk", 4.3, points=500),  # an update
            event("scored", 4.5, done=1, points=1000, first=4.4, left=13.2),  # first input: shown at once
            event("input", 4.6, done=1),  # within the interval: dropped
            event("done", 17.0, done=4, first=4.4, left=0.0),
        ],
    )
    assert reporter.calls == [
        ("newline",),
        ("write", "CLEVER: input 1/4, 300/1000 points x 9 targets, 3.2 s elapsed"),
        ("rewrite", "CLEVER: input 1/4, 500/1000 points x 9 targets, 4.3 s elapsed", True),
        ("rewrite", "CLEVER: input 2/4, 4.5 s elapsed, first input 4.4 s, ~13.2 s left", True),
        ("rewrite", "CLEVER: 4/4 inputs scored, 17.0 s elapsed, first input 4.4 s", True),
        ("fspath", NODEID, ""),  # the dots go on a fresh line that starts with the file's name
    ]
    assert reporter.currentfspath == "tests/test_model.py"


def test_without_a_tty_updates_are_new_lines_at_a_longer_interval():
    reporter = FakeReporter(tty=False)
    sink = TerminalProgress(reporter, None, NODEID, tty=False)
    feed(
        sink,
        [
            event("chunk", 3.5, points=100),
            event("chunk", 3.5 + tp.LOG_INTERVAL - 0.5, points=900),  # a TTY would have shown it
            event("scored", 20.0, done=1, points=1000, first=20.0, left=60.0),
            event("chunk", 20.0 + tp.LOG_INTERVAL + 0.1, done=1, points=100, first=20.0),
            event("done", 80.0, done=4, first=20.0, left=0.0),
        ],
    )
    texts = [c[1] for c in reporter.calls if c[0] == "write"]
    assert texts == [
        "CLEVER: input 1/4, 100/1000 points x 9 targets, 3.5 s elapsed",
        "\nCLEVER: input 2/4, 20.0 s elapsed, first input 20.0 s, ~60.0 s left",
        "\nCLEVER: input 2/4, 100/1000 points x 9 targets, 35.1 s elapsed, first input 20.0 s",
        "\nCLEVER: 4/4 inputs scored, 80.0 s elapsed, first input 20.0 s",
    ]
    assert not any(c[0] == "rewrite" for c in reporter.calls)


def test_verbose_run_gets_its_location_prefix_back():
    reporter = FakeReporter(verbose=True)
    sink = TerminalProgress(reporter, None, NODEID, tty=True)
    feed(sink, [event("chunk", 5.0, points=10), event("done", 6.0, done=4)])
    assert [c[0] for c in reporter.calls] == ["newline", "write", "rewrite"]
    assert reporter.currentfspath == -2  # pytest's next write_ensure_prefix writes "path::test " again


def config(*, verbosity: int = 0, tty: bool = True, worker: bool = False, terminal: bool = True):
    plugins = {"terminalreporter": FakeReporter(tty=tty) if terminal else None, "capturemanager": FakeCapman()}
    cfg = SimpleNamespace(
        get_verbosity=lambda: verbosity,
        pluginmanager=SimpleNamespace(get_plugin=plugins.get),
    )
    if worker:
        cfg.workerinput = {"workerid": "gw0"}
    return cfg


@pytest.mark.parametrize(
    "mode, kw, shown",
    [
        ("auto", {}, True),
        ("auto", {"tty": False}, False),
        ("on", {"tty": False}, True),
        ("off", {}, False),
        ("on", {"verbosity": -1}, False),
        ("on", {"worker": True}, False),
        ("on", {"terminal": False}, False),
        ("auto", {"verbosity": 2}, True),
    ],
)
def test_when_progress_is_shown(mode, kw, shown):
    sink = terminal_progress(config(**kw), mode, NODEID)
    assert (sink is not None) == shown
    if sink is not None:
        assert sink.tty == kw.get("tty", True) and sink.nodeid == NODEID
        assert sink.interval == (tp.TTY_INTERVAL if sink.tty else tp.LOG_INTERVAL) and sink.delay == tp.DELAY


def test_progress_option_values():
    assert PROGRESS.default == "auto" and PROGRESS.flag == "--clever-progress" and PROGRESS.ini_key == "clever_progress"
    assert PROGRESS.check(" ON ", "ini") == "on"
    with pytest.raises(
        ValueError, match="ini option clever_progress: progress must be one of auto, on, off, got 'maybe'"
    ):
        PROGRESS.check("maybe", "ini option clever_progress")


# -- real pytest runs -------------------------------------------------------------------

TEST_MODULE = """
import torch
from torch import nn


def test_gate(clever):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    xs = torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    clever.scores(model, xs, radius=1.0, n_batches=10, batch_size=4)


def test_plain():
    pass
"""
# A short call is silent by design; show this one from its first event.
CONFTEST = "import pytest_clever.plugin.terminal_progress as tp\ntp.DELAY = 0.0\n"


# Real subprocesses: in-process, the inner terminal writes to pytester's buffer without going
# through the captured file descriptors, so a line written while capture is on would still pass.
@pytest.mark.slow  # real pytest subprocesses: CI runs it
def test_progress_on_shows_lines_on_the_terminal(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_model=TEST_MODULE)
    result = pytester.runpytest_subprocess("--clever-progress=on", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.re_match_lines(
        [
            r"^CLEVER: input 1/2, .*\d s elapsed$",
            r"^CLEVER: input 1/2, [\d.]+ s elapsed, first input [\d.]+ s, ~[\d.]+ s left$",
            r"^CLEVER: 2/2 inputs scored, [\d.]+ s elapsed, first input [\d.]+ s$",
            r"^test_model.py \.\.\s+\[100%\]$",  # pytest's own line is whole again
        ]
    )


@pytest.mark.slow  # real pytest subprocesses (see above): CI runs it
def test_progress_is_silent_under_q_and_by_default_without_a_tty(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_model=TEST_MODULE)
    quiet = pytester.runpytest_subprocess("-q", "--clever-progress=on", "-p", "no:cacheprovider")
    quiet.assert_outcomes(passed=2)
    assert not [line for line in quiet.outlines + quiet.errlines if "CLEVER: " in line]
    pytester.makeini("[pytest]\nclever_progress = auto\n")
    auto = pytester.runpytest_subprocess("-p", "no:cacheprovider")  # a pipe, not a TTY
    auto.assert_outcomes(passed=2)
    assert not [line for line in auto.outlines + auto.errlines if "CLEVER: " in line]


def test_bad_progress_values_are_usage_errors(pytester):
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--clever-progress=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--clever-progress: must be one of auto, on, off, got 'maybe'*"])
    pytester.makeini("[pytest]\nclever_progress = loud\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option clever_progress: progress must be one of auto, on, off, got 'loud'*"])
