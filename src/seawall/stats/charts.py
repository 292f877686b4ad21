"""Charts as SVG drawn on the server: stacked bars, a line, horizontal bars. A hand-written writer
(a few dozen lines) rather than a plotting library: pages work offline and print sharply, and each
chart carries a title and description for screen readers (its table sits beside it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

# Colour-blind-safe (Okabe-Ito), in the order bands are drawn.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#999999")
_FONT = 'font-family="system-ui, sans-serif"'


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def _ticks(top: float, count: int = 4) -> list[float]:
    return [top * i / count for i in range(count + 1)]


def _number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _open(width: int, height: int, title: str, description: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart">',
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>",
    ]


def _axis(parts: list[str], left: int, top: int, width: int, height: int, ymax: float, unit: str) -> None:
    for tick in _ticks(ymax):
        y = top + height - height * tick / ymax
        parts.append(f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d5dbe1"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#5b6670" {_FONT}>'
            f"{_number(tick)}{unit}</text>"
        )


def _legend(parts: list[str], names: Sequence[str], x: int, y: int) -> None:
    for i, name in enumerate(names):
        parts.append(f'<rect x="{x}" y="{y + i * 18}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>')
        parts.append(f'<text x="{x + 18}" y="{y + i * 18 + 10}" font-size="12" {_FONT}>{escape(name)}</text>')


def _label_step(count: int, room: int) -> int:
    return max(1, -(-count // room))


def stacked_bars(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[int]], *, width: int = 640, height: int = 300
) -> str:
    """One bar per label, stacked by series (e.g. pages per half-year, by age band)."""
    left, top, right, bottom = 52, 12, 110, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    ymax = _nice_max(max(totals, default=0))
    parts = _open(width, height, title, f"{title}: stacked bars for {len(labels)} periods, {len(series)} series.")
    _axis(parts, left, top, plot_w, plot_h, ymax, "")
    slot = plot_w / max(1, len(labels))
    bar = max(2.0, slot * 0.7)
    step = _label_step(len(labels), max(1, plot_w // 56))
    for i, name in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        base = float(top + plot_h)
        for s, (series_name, values) in enumerate(series.items()):
            h = plot_h * values[i] / ymax
            if h > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                    f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)} · {escape(series_name)}: '
                    f"{values[i]:,}</title></rect>"
                )
            base -= h
        if i % step == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11" '
                f"{_FONT}>{escape(name)}</text>"
            )
    _legend(parts, list(series), width - right + 12, top + 4)
    parts.append("</svg>")
    return "".join(parts)


def line(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    unit: str = "%",
    width: int = 640,
    height: int = 260,
) -> str:
    """A line over periods (e.g. the self-generated share); gaps where a value is missing."""
    left, top, right, bottom = 52, 12, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    present = [v for v in values if v is not None]
    ymax = 100.0 if unit == "%" else _nice_max(max(present, default=0))
    parts = _open(width, height, title, f"{title}: a line over {len(labels)} periods.")
    _axis(parts, left, top, plot_w, plot_h, ymax, unit)
    slot = plot_w / max(1, len(labels))
    step = _label_step(len(labels), max(1, plot_w // 56))
    points: list[str] = []
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        x = left + i * slot + slot / 2
        if value is not None:
            y = top + plot_h - plot_h * value / ymax
            points.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{PALETTE[0]}"><title>{escape(name)}: '
                f"{value:g}{unit}</title></circle>"
            )
        if i % step == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11" {_FONT}>'
                f"{escape(name)}</text>"
            )
    if len(points) > 1:
        parts.insert(3, f'<polyline points="{" ".join(points)}" fill="none" stroke="{PALETTE[0]}" stroke-width="2.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def hbars(title: str, labels: Sequence[str], values: Sequence[int], *, width: int = 640) -> str:
    """Horizontal bars, largest first as given (e.g. hosting countries, takedown-time bands)."""
    left, top, right, row = 130, 8, 60, 24
    height = top * 2 + row * max(1, len(labels))
    plot_w = width - left - right
    xmax = _nice_max(max(values, default=0))
    parts = _open(width, height, title, f"{title}: {len(labels)} horizontal bars.")
    for i, (name, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row
        w = plot_w * value / xmax
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" font-size="12" {_FONT}>{escape(name)}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" fill="{PALETTE[0]}">'
            f"<title>{escape(name)}: {value:,}</title></rect>"
        )
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 16}" font-size="12" {_FONT}>{value:,}</text>')
    parts.append("</svg>")
    return "".join(parts)
