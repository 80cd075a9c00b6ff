"""The HTML report as a person sees it: rendered by a real headless Chromium (slow; skipped without one).

A pytest run writes the report (a baseline, a regression, a trend over two saved runs); Chromium then loads
it from disk with networking off, takes a screenshot, and dumps the DOM after a probe script measured every
plot. The page must raise no console error, and every plot must be laid out with a non-empty size.
``.ci/run`` installs Debian's ``chromium`` so CI runs this.
"""

import json
import re
import shutil
import subprocess

import pytest

from .test_reports import _module

pytestmark = pytest.mark.slow  # a browser start per check, and three pytest runs

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)

# Appended to a copy of the report only (the report itself runs no script): it lays the page out,
# measures every plot, and writes what it found where --dump-dom shows it.
_PROBE = """<script>
const found = {errors: [], plots: []};
window.addEventListener("error", (e) => found.errors.push(String(e.message)));
for (const svg of document.querySelectorAll("svg.plot")) {
  const box = svg.getBoundingClientRect();
  found.plots.push({label: svg.getAttribute("aria-label"), width: box.width, height: box.height,
                    declared: [Number(svg.getAttribute("width")), Number(svg.getAttribute("height"))]});
}
const out = document.createElement("pre");
out.id = "probe";
out.textContent = JSON.stringify(found);
document.body.appendChild(out);
</script>"""


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [
        BROWSER,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing may be fetched: a fetch would fail and log
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _console_errors(stderr: str) -> list[str]:
    """Console messages and uncaught errors Chromium logged for the page."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@pytest.fixture
def report(pytester, monkeypatch, tmp_path):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makepyfile(test_model=_module(1.0))
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    pytester.runpytest("--clever-save=main").assert_outcomes(passed=2)
    pytester.makepyfile(test_model=_module(4.0))
    result = pytester.runpytest("--clever-compare=main", "--clever-compare-fail=mean:10%", "--clever-html=report.html")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the regression
    return pytester.path / "report.html"


@pytest.mark.skipif(BROWSER is None, reason="no chromium: apt-get install chromium (.ci/run does)")
def test_the_report_renders_in_chromium_without_errors_and_with_sized_plots(report, tmp_path):
    shot = tmp_path / "report.png"
    rendered = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri())
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert _console_errors(rendered.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000  # a drawn page, not blank

    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", _PROBE + "</body>"))
    dumped = _chromium(tmp_path, "--dump-dom", probed.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    found = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dumped.stdout, re.S)[1].replace("&quot;", '"'))
    assert found["errors"] == []
    # Two tests, each: the score distribution, three fits and the trend; and the comparison's delta chart.
    assert len(found["plots"]) == 2 * 5 + 1
    # Laid out at the size each plot declares (560 wide; 260 high, the delta chart 80 + 36 a row), plus the
    # page's 1 px border on each side.
    assert all([p["width"] - 2, p["height"] - 2] == p["declared"] for p in found["plots"]), found["plots"]
    assert all(p["declared"][0] == 560 and p["declared"][1] >= 116 for p in found["plots"]), found["plots"]
    assert "test_b [m|&lt;b&gt;]" in dumped.stdout and "REGRESSED" in dumped.stdout

    # The console check sees errors where there are some (so its silence above means something).
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>console.error('boom'); missing();</script></body></html>")
    assert len(_console_errors(_chromium(tmp_path, "--dump-dom", broken.as_uri()).stderr)) == 2
