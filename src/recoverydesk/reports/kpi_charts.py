"""Inline SVG charts for the weekly report, drawn in Python: no script, no network.

Every label goes through ``html.escape``; the charts size themselves to their rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH = 640
BAR = 22
GAP = 8
LABEL = 190
INK, BAR_FILL, ALERT, LINE = "#1f2933", "#3e7cb1", "#c0392b", "#d35400"


def _svg(height: int, body: str, title: str) -> str:
    return (
        f'<svg role="img" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", fill: str = INK) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}">{escape(text)}</text>'
    )


def bars(
    rows: Sequence[tuple[str, float | None, str]],
    *,
    title: str,
    threshold: float | None = None,
    threshold_label: str = "",
    scale: float | None = None,
) -> str:
    """Horizontal bars: (label, value, shown value) per row; a value above ``threshold`` is
    drawn in the alert colour and the threshold is a dashed vertical line."""
    values = [value or 0.0 for _, value, _ in rows]
    top = max([scale or 0.0, *values, (threshold or 0.0) * 1.25]) or 1.0
    span = WIDTH - LABEL - 70
    height = len(rows) * (BAR + GAP) + 30
    parts = []
    for index, (label, value, shown) in enumerate(rows):
        y = 10 + index * (BAR + GAP)
        length = span * (value or 0.0) / top
        late = threshold is not None and value is not None and value > threshold
        parts.append(_text(LABEL - 6, y + 15, label, "end"))
        parts.append(
            f'<rect x="{LABEL}" y="{y}" width="{length:.1f}" height="{BAR}" '
            f'fill="{ALERT if late else BAR_FILL}"/>'
        )
        parts.append(_text(LABEL + length + 4, y + 15, shown))
    if threshold is not None:
        x = LABEL + span * threshold / top
        bottom = height - 18
        parts.append(
            f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{bottom}" stroke="{LINE}" '
            'stroke-dasharray="5 3" stroke-width="2"/>'
        )
        parts.append(_text(x, bottom + 14, threshold_label, "middle", LINE))
    return _svg(height, "".join(parts), title)


def columns(rows: Sequence[tuple[str, int]], *, title: str) -> str:
    """Vertical columns of counts (a histogram or an age profile)."""
    height, base = 200, 170
    top = max([count for _, count in rows] + [1])
    step = (WIDTH - 40) / max(len(rows), 1)
    parts = [f'<line x1="20" y1="{base}" x2="{WIDTH - 20}" y2="{base}" stroke="{INK}"/>']
    for index, (label, count) in enumerate(rows):
        x = 20 + index * step + step * 0.15
        tall = (base - 30) * count / top
        parts.append(
            f'<rect x="{x:.1f}" y="{base - tall:.1f}" width="{step * 0.7:.1f}" '
            f'height="{tall:.1f}" fill="{BAR_FILL}"/>'
        )
        middle = x + step * 0.35
        parts.append(_text(middle, base - tall - 4, str(count), "middle"))
        parts.append(_text(middle, base + 16, label, "middle"))
    return _svg(height, "".join(parts), title)


def pareto(rows: Sequence[tuple[str, int, float]], *, title: str) -> str:
    """Root causes: bars of counts, most first, and the cumulative share as a line (0-100%)."""
    height, base = 240, 190
    top = max([count for _, count, _ in rows] + [1])
    step = (WIDTH - 60) / max(len(rows), 1)
    parts = [f'<line x1="30" y1="{base}" x2="{WIDTH - 30}" y2="{base}" stroke="{INK}"/>']
    points = []
    for index, (label, count, cumulative) in enumerate(rows):
        x = 30 + index * step + step * 0.1
        tall = (base - 30) * count / top
        parts.append(
            f'<rect x="{x:.1f}" y="{base - tall:.1f}" width="{step * 0.8:.1f}" '
            f'height="{tall:.1f}" fill="{BAR_FILL}"/>'
        )
        middle = x + step * 0.4
        points.append(f"{middle:.1f},{base - (base - 30) * cumulative:.1f}")
        parts.append(_text(middle, base + 16, label[:18], "middle"))
    if points:
        parts.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{LINE}" stroke-width="2"/>'
        )
        parts.append(_text(WIDTH - 30, 24, "cumulative share", "end", LINE))
    return _svg(height, "".join(parts), title)
