"""Small inline SVG plots for the HTML report: histograms with marker lines, line charts, interval rows.

Pure Python and self-contained (no matplotlib, no fonts, no network): each function returns one ``<svg>``
element with a fixed ``width``/``height`` and a ``viewBox``, so the page lays out before anything draws.
Every text that reaches the SVG (labels, titles, test ids) goes through :func:`html.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 560, 260
_MARGIN = (48, 16, 34, 44)  # left, right, top, bottom: room for tick labels and the title
_LEGEND_CHARS = 40  # what fits the legend's box at 10 px; the plot's title and <title> hold the full text
#: Colours of series and marker lines, in order (readable on white, distinct in grey scale too).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


@dataclass(frozen=True)
class VLine:
    """A vertical marker line at ``x`` with a legend label (a threshold, a statistic, an end point)."""

    x: float
    label: str
    color: str = "#000000"
    dash: str = "4 3"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick positions covering ``[lo, hi]`` (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    k = 0
    while first + k * step <= hi + step * 1e-9:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class _Frame:
    """Data-to-pixel mapping of one plot, and the SVG pieces drawn on it."""

    def __init__(
        self, x_range: tuple[float, float], y_range: tuple[float, float], title: str, height: int = HEIGHT
    ) -> None:
        self.height = height
        x0, x1 = x_range
        y0, y1 = y_range
        pad = (x1 - x0) * 0.04 or max(abs(x0) * 0.1, 1e-3)
        self.x0, self.x1 = x0 - pad, x1 + pad
        self.y0, self.y1 = y0, (y1 if y1 > y0 else y0 + 1.0)
        self.left, self.right, self.top, self.bottom = _MARGIN
        self.parts: list[str] = [
            f'<text x="{WIDTH / 2:.1f}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>'
        ]

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * (WIDTH - self.left - self.right)

    def py(self, y: float) -> float:
        return self.height - self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.height - self.top - self.bottom)

    def axes(
        self, xlabel: str, ylabel: str, x_ticks: Sequence[tuple[float, str]] | None = None, y_ticks: bool = True
    ) -> None:
        base, top = self.height - self.bottom, self.top
        self.parts.append(
            f'<path d="M{self.left},{top} V{base} H{WIDTH - self.right}" fill="none" stroke="#444" stroke-width="1"/>'
        )
        ticks = x_ticks if x_ticks is not None else [(t, _fmt(t)) for t in nice_ticks(self.x0, self.x1)]
        for x, text in ticks:
            px = self.px(x)
            # A label near either edge grows inwards, so a long one (a run's name and time) is never cut off.
            anchor = "start" if px - self.left < 60 else "end" if WIDTH - self.right - px < 60 else "middle"
            self.parts.append(f'<line x1="{px:.1f}" y1="{base}" x2="{px:.1f}" y2="{base + 4}" stroke="#444"/>')
            self.parts.append(
                f'<text x="{px:.1f}" y="{base + 15}" text-anchor="{anchor}" font-size="10">{escape(text)}</text>'
            )
        for y in nice_ticks(self.y0, self.y1, 4) if y_ticks else []:
            py = self.py(y)
            self.parts.append(
                f'<line x1="{self.left - 4}" y1="{py:.1f}" x2="{self.left}" y2="{py:.1f}" stroke="#444"/>'
            )
            self.parts.append(
                f'<text x="{self.left - 6}" y="{py + 3:.1f}" text-anchor="end" font-size="10">{_fmt(y)}</text>'
            )
        self.parts.append(
            f'<text x="{(self.left + WIDTH - self.right) / 2:.1f}" y="{self.height - 6}" text-anchor="middle" '
            f'font-size="11">{escape(xlabel)}</text>'
        )
        mid = (top + base) / 2
        self.parts.append(
            f'<text x="12" y="{mid:.1f}" text-anchor="middle" font-size="11" '
            f'transform="rotate(-90 12 {mid:.1f})">{escape(ylabel)}</text>'
        )

    def legend(self, entries: Sequence[tuple[str, str, str]]) -> None:
        """``(label, colour, dash)`` entries, top right, one per line, on a light box over the data."""
        if entries:
            x, height = WIDTH - self.right - 234, 13 * len(entries) + 4
            self.parts.append(
                f'<rect x="{x}" y="{self.top}" width="230" height="{height}" fill="#ffffff" fill-opacity="0.8"/>'
            )
        for k, (label, color, dash) in enumerate(entries):
            y = self.top + 10 + 13 * k
            x = WIDTH - self.right - 230
            self.parts.append(
                f'<line x1="{x}" y1="{y - 3}" x2="{x + 16}" y2="{y - 3}" stroke="{color}" stroke-width="2" '
                f'stroke-dasharray="{dash}"/>'
            )
            short = label if len(label) <= _LEGEND_CHARS else label[: _LEGEND_CHARS - 1] + "…"
            self.parts.append(f'<text x="{x + 20}" y="{y}" font-size="10">{escape(short)}</text>')

    def vlines(self, lines: Sequence[VLine]) -> None:
        for line in lines:
            if self.x0 <= line.x <= self.x1:
                px = self.px(line.x)
                self.parts.append(
                    f'<line x1="{px:.1f}" y1="{self.top}" x2="{px:.1f}" y2="{self.height - self.bottom}" '
                    f'stroke="{line.color}" stroke-width="1.5" stroke-dasharray="{line.dash}"/>'
                )

    def svg(self, label: str) -> str:
        body = "".join(self.parts)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" aria-label="{escape(label)}" '
            f'width="{WIDTH}" height="{self.height}" viewBox="0 0 {WIDTH} {self.height}" font-family="sans-serif">'
            f"<title>{escape(label)}</title>{body}</svg>"
        )


def histogram_svg(
    values: Sequence[float],
    *,
    title: str,
    xlabel: str,
    lines: Sequence[VLine] = (),
    curve: Sequence[tuple[float, float]] = (),
    curve_label: str = "",
    bins: int | None = None,
) -> str:
    """A density histogram of ``values`` with vertical ``lines`` and, optionally, a fitted density ``curve``."""
    if not values:
        raise ValueError("a histogram needs at least one value")
    xs = [*values, *(line.x for line in lines if math.isfinite(line.x)), *(x for x, _ in curve)]
    lo, hi = min(xs), max(xs)
    data_lo, data_hi = min(values), max(values)
    if data_hi == data_lo:  # every value the same (an exact maximum): one narrow bar around it
        count, width = 1, max(abs(data_lo) * 0.02, 1e-3)
        data_lo -= width / 2
    else:
        count = bins or max(5, min(30, int(math.sqrt(len(values))) + 1))
        width = (data_hi - data_lo) / count
    heights = [0] * count
    for v in values:
        heights[min(int((v - data_lo) / width), count - 1)] += 1
    densities = [h / (len(values) * width) for h in heights]
    top = max([*densities, *(y for _, y in curve)]) * 1.1
    frame = _Frame((min(lo, data_lo), max(hi, data_lo + width * count)), (0.0, top), title)
    for k, d in enumerate(densities):
        if d > 0:
            x, y = frame.px(data_lo + k * width), frame.py(d)
            w = frame.px(data_lo + (k + 1) * width) - x
            frame.parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w - 1, 1):.1f}" height="{frame.py(0) - y:.1f}" '
                f'fill="{PALETTE[0]}" fill-opacity="0.45"/>'
            )
    entries = [(f"{len(values)} values", PALETTE[0], "")]
    if curve:
        path = " ".join(
            f"{'M' if k == 0 else 'L'}{frame.px(x):.1f},{frame.py(y):.1f}" for k, (x, y) in enumerate(curve)
        )
        frame.parts.append(f'<path d="{path}" fill="none" stroke="{PALETTE[1]}" stroke-width="2"/>')
        entries.append((curve_label, PALETTE[1], ""))
    frame.vlines(lines)
    entries += [(line.label, line.color, line.dash) for line in lines]
    frame.axes(xlabel, "density")
    frame.legend(entries)
    return frame.svg(title)


def line_svg(series: dict[str, list[tuple[int, float]]], x_labels: Sequence[str], *, title: str, ylabel: str) -> str:
    """One line per series over the positions ``0..len(x_labels)-1``, labelled by ``x_labels``."""
    points = [y for pts in series.values() for _, y in pts]
    if not points:
        raise ValueError("a line chart needs at least one point")
    lo, hi = min(points), max(points)
    spread = (hi - lo) or max(abs(hi) * 0.1, 1e-3)
    frame = _Frame((0.0, float(max(len(x_labels) - 1, 1))), (lo - 0.1 * spread, hi + 0.1 * spread), title)
    entries = []
    for k, (label, pts) in enumerate(sorted(series.items())):
        color = PALETTE[k % len(PALETTE)]
        path = " ".join(f"{'M' if j == 0 else 'L'}{frame.px(x):.1f},{frame.py(y):.1f}" for j, (x, y) in enumerate(pts))
        frame.parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        frame.parts.extend(
            f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="3" fill="{color}"><title>'
            f"{escape(label)}: {_fmt(y)}</title></circle>"
            for x, y in pts
        )
        entries.append((label, color, ""))
    step = max(1, math.ceil(len(x_labels) / 4))  # at most 4 run labels under the axis, so they never overlap
    frame.axes("saved run", ylabel, [(float(i), x_labels[i]) for i in range(0, len(x_labels), step)])
    frame.legend(entries[:6])
    return frame.svg(title)


def intervals_svg(rows: Sequence[tuple[str, float, tuple[float, float] | None]], *, title: str, xlabel: str) -> str:
    """One row per ``(label, value, interval)``: a dot with its interval, and a line at zero (no change)."""
    if not rows:
        raise ValueError("an interval chart needs at least one row")
    xs = [0.0, *(v for _, v, _ in rows), *(b for _, _, i in rows if i for b in i)]
    frame = _Frame((min(xs), max(xs)), (0.0, 1.0), title, height=80 + 36 * len(rows))  # a band of 36 px a row
    frame.top, frame.bottom = 30, 40
    band = (frame.height - frame.top - frame.bottom) / len(rows)
    for k, (label, value, interval) in enumerate(rows):
        y = frame.top + band * (k + 0.5)
        if interval is not None:
            frame.parts.append(
                f'<line x1="{frame.px(interval[0]):.1f}" y1="{y:.1f}" x2="{frame.px(interval[1]):.1f}" y2="{y:.1f}" '
                f'stroke="{PALETTE[0]}" stroke-width="3"/>'
            )
        frame.parts.append(f'<circle cx="{frame.px(value):.1f}" cy="{y:.1f}" r="4" fill="{PALETTE[1]}"/>')
        frame.parts.append(
            f'<text x="{frame.left + 4}" y="{y - 6:.1f}" font-size="10">{escape(label)} {escape(_fmt(value))}</text>'
        )
    frame.vlines([VLine(0.0, "no change", "#444", "2 2")])
    frame.axes(xlabel, "", y_ticks=False)
    return frame.svg(title)
