"""Progress of the ``clever`` fixture's long scoring calls on pytest's terminal.

The engine sends :class:`~pytest_clever.core.progress.ProgressEvent` objects to
the ``progress=`` callable of ``clever_scores``; :func:`terminal_progress`
builds that callable for one fixture call, or None when nothing may be shown:
under ``-q``, on an xdist worker (its output never reaches the terminal),
without pytest's terminal reporter, with ``--clever-progress=off``, and, in
the default ``auto`` mode, when the terminal is not a TTY (a CI log would
fill up with lines nobody watches).

The line is written through the terminal reporter with capture suspended,
as pytest's own live logging does, so it shows while the test's output is
captured. Throttling (nothing for the first seconds, then at most one update
per interval, the first input's time and estimate as soon as they exist) is
:class:`~pytest_clever.core.progress.ProgressLine`'s. Pure Python: no torch.
"""

from __future__ import annotations

from typing import Any

from pytest_clever.core.progress import TERMINAL_MODES as MODES
from pytest_clever.core.progress import ProgressLine

#: Seconds a call runs before anything is shown ("longer than a few seconds").
DELAY = 3.0
#: Seconds between updates of the line rewritten in place on a TTY.
TTY_INTERVAL = 1.0
#: Seconds between new lines where the line cannot be rewritten (``on`` without a TTY).
LOG_INTERVAL = 15.0


class TerminalProgress(ProgressLine):
    """:class:`ProgressLine`'s throttling, written on pytest's terminal outside capture.

    On a TTY the line is rewritten in place; otherwise each update is a new
    line. When the call is done the line is left standing and the terminal
    reporter is told to write the test's own prefix again, so its
    ``PASSED``/``.`` does not land at the end of the progress line.
    """

    def __init__(self, reporter: Any, capman: Any, nodeid: str, *, tty: bool) -> None:
        super().__init__(None, interval=TTY_INTERVAL if tty else LOG_INTERVAL, delay=DELAY)
        self.reporter, self.capman, self.nodeid, self.tty = reporter, capman, nodeid, tty
        self.open = False  # our line is the terminal's current, unterminated line

    def _write(self, text: str, *, final: bool) -> None:
        if self.capman is None:
            self._show(text, final)
            return
        with self.capman.global_and_fixture_disabled():
            self._show(text, final)

    def _show(self, text: str, final: bool) -> None:
        tr = self.reporter
        if not self.open:
            tr.ensure_newline()  # end the line pytest has started for this test
            tr.write(text)
        elif self.tty:
            tr.rewrite(text, erase=True)
        else:
            tr.write("\n" + text)
        self.open = True
        if final:
            self._restore_prefix()
            self.open = False
        tr.flush()

    def _restore_prefix(self) -> None:
        """Make pytest start a new line with this test's prefix on its next write."""
        tr = self.reporter
        if tr.showlongtestinfo:  # -v: its next write_ensure_prefix rewrites "path::test " first
            tr.currentfspath = -2
        elif tr.showfspath:  # dots: the file's name again, then this test's letter
            tr.currentfspath = None
            tr.write_fspath_result(self.nodeid, "")
        else:
            tr.write("\n")
            tr.currentfspath = None


def terminal_progress(config: Any, mode: str, nodeid: str) -> TerminalProgress | None:
    """A fresh progress sink for one scoring call of test ``nodeid``, or None when nothing is to be shown."""
    if mode == "off" or hasattr(config, "workerinput") or config.get_verbosity() < 0:
        return None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return None
    tty = bool(reporter.isatty)
    if mode == "auto" and not tty:
        return None
    return TerminalProgress(reporter, config.pluginmanager.get_plugin("capturemanager"), nodeid, tty=tty)


__all__ = ["DELAY", "LOG_INTERVAL", "MODES", "TTY_INTERVAL", "TerminalProgress", "terminal_progress"]
