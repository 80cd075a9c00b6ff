"""Progress of a scoring call: events, their order and counts, the stderr line, silence by default."""

import functools
import io

import pytest
import torch
from torch import nn

from pytest_clever import clever_score, clever_scores
from pytest_clever.core.progress import ProgressEvent, ProgressLine, describe
from pytest_clever.errors import InvalidInputError, MisclassifiedInputError


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 5)).eval()


def xs(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 2, 2, generator=torch.Generator().manual_seed(0))


def test_events_count_inputs_chunks_and_order():
    events: list[ProgressEvent] = []
    clever_scores(tiny(), xs(3), radius=1.0, n_batches=10, batch_size=2, seed=0, chunk_size=8, progress=events.append)
    stages = [e.stage for e in events]
    # 20 points in chunks of 8: 3 chunks per input.
    assert stages == ["start"] + ["input", "chunk", "chunk", "chunk", "scored"] * 3 + ["done"]
    chunks = [e.points_done for e in events if e.stage == "chunk"]
    assert chunks == [8, 16, 20] * 3
    assert [e.inputs_done for e in events if e.stage == "scored"] == [1, 2, 3]
    assert [e.input_index for e in events if e.stage == "input"] == [0, 1, 2]
    assert all(e.inputs_total == 3 and e.points_total == 20 for e in events)
    assert {e.targets for e in events if e.stage != "start"} == {4}
    scored = [e for e in events if e.stage == "scored"]
    assert scored[0].first_input_s is not None and scored[0].first_input_s <= scored[0].elapsed
    assert all(e.first_input_s == scored[0].first_input_s for e in scored)
    assert all(e.remaining_s is not None and e.remaining_s >= 0 for e in scored)
    assert scored[-1].remaining_s == 0 and events[-1].remaining_s == 0
    assert [e.elapsed for e in events] == sorted(e.elapsed for e in events)


def test_done_is_sent_when_scoring_fails():
    events = []
    with pytest.raises(InvalidInputError):
        clever_score(tiny(), xs(1)[0], radius=1.0, n_batches=10, batch_size=2, label=99, progress=events.append)
    assert events[0].stage == "start" and events[-1].stage == "done"


def test_a_sink_failing_on_done_does_not_replace_the_calls_error():
    def sink(event: ProgressEvent) -> None:
        if event.stage == "done":
            raise OSError("the progress log is gone")

    x = xs(1)[0]
    wrong = (int(tiny()(x[None]).argmax()) + 1) % 5
    with pytest.raises(MisclassifiedInputError):
        clever_score(tiny(), x, radius=1.0, n_batches=10, batch_size=2, label=wrong, progress=sink)
    # Without an error of its own, the call reports the sink's failure.
    with pytest.raises(OSError, match="the progress log is gone"):
        clever_score(tiny(), x, radius=1.0, n_batches=10, batch_size=2, progress=sink)


def test_nothing_is_printed_by_default(capfd):
    clever_scores(tiny(), xs(2), radius=1.0, n_batches=10, batch_size=3, seed=0)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_progress_true_writes_to_stderr(capfd, monkeypatch):
    monkeypatch.setattr(
        "pytest_clever.core.progress.ProgressLine", functools.partial(ProgressLine, interval=0.0, delay=0.0)
    )
    clever_scores(tiny(), xs(2), radius=1.0, n_batches=10, batch_size=3, seed=0, progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[-1].startswith("CLEVER: 2/2 inputs scored")
    assert any("first input" in line and "left" in line for line in lines)


def event(stage: str, elapsed: float, **kw) -> ProgressEvent:
    fields = dict(
        input_index=0,
        inputs_done=0,
        inputs_total=4,
        points_done=100,
        points_total=400,
        targets=2,
        first_input_s=None,
        remaining_s=30.0,
    )
    fields.update(kw)
    return ProgressEvent(stage, elapsed=elapsed, **fields)


def test_line_is_throttled_silent_early_and_shows_the_first_input_at_once():
    stream = io.StringIO()
    line = ProgressLine(stream, interval=1.0, delay=2.0)
    line(event("chunk", 1.0))  # within the delay: silent
    line(event("chunk", 2.5))  # shown
    line(event("chunk", 3.0))  # throttled
    line(event("scored", 3.2, inputs_done=1, first_input_s=3.2))  # the first input's time: shown at once
    line(event("chunk", 3.5))  # throttled
    line(event("done", 9.0, inputs_done=4, remaining_s=0.0))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert "100/400 points x 2 targets" in lines[0] and "~30.0 s left" in lines[0]
    assert "first input 3.2 s" in lines[1]
    assert lines[2] == "CLEVER: 4/4 inputs scored, 9.0 s elapsed"


def test_short_call_prints_nothing():
    stream = io.StringIO()
    line = ProgressLine(stream)
    for stage in ("start", "input", "chunk", "scored", "done"):
        line(event(stage, 0.1))
    assert stream.getvalue() == ""


def test_tty_rewrites_one_line():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    line = ProgressLine(stream, interval=0.0, delay=0.0)
    line(event("chunk", 1.0))
    line(event("chunk", 2.0, points_done=200))
    line(event("done", 3.0, inputs_done=4))
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n")


def test_bad_progress_setting():
    with pytest.raises(InvalidInputError, match="progress"):
        clever_score(tiny(), xs(1)[0], radius=1.0, n_batches=10, batch_size=2, progress="yes")


def test_describe_minutes():
    assert "~2.0 min left" in describe(event("chunk", 5.0, remaining_s=120.0))
