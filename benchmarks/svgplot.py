"""A line plot as a small hand-written SVG (no plotting library needed): log-scale x, linear y, a few series."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

#: Colours of the series, in order (colour-blind safe: Okabe-Ito).
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]


def line_plot(
    series: dict[str, list[tuple[float, float]]],
    path: Path,
    *,
    title: str,
    x_label: str,
    y_label: str,
    dashed: frozenset[str] = frozenset(),
    width: int = 720,
    height: int = 420,
) -> None:
    """Write ``series`` (name -> [(x, y), ...], x > 0) to ``path`` as an SVG line plot with a log10 x axis."""
    points = [p for values in series.values() for p in values]
    if not points or any(x <= 0 for x, _ in points):
        raise ValueError("a log-scale plot needs at least one point, and every x above 0")
    left, right, top, bottom = 70, 190, 40, 55
    x_lo, x_hi = math.floor(math.log10(min(x for x, _ in points))), math.ceil(math.log10(max(x for x, _ in points)))
    x_hi = max(x_hi, x_lo + 1)
    y_hi = _nice_ceiling(max(y for _, y in points))

    def sx(x: float) -> float:
        return left + (math.log10(x) - x_lo) / (x_hi - x_lo) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - y / y_hi * (height - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2 - right / 2 + left / 2}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    for e in range(x_lo, x_hi + 1):
        x = sx(10**e)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">{10**e:,}</text>')
    for i in range(6):
        y_value = y_hi * i / 5
        y = sy(y_value)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{y_value:,.0f}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text transform="translate(18 {(top + height - bottom) / 2}) rotate(-90)" text-anchor="middle">'
               f'{escape(y_label)}</text>')
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        ordered = sorted(values)
        dash = ' stroke-dasharray="6 4"' if name in dashed else ""
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ordered)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        out.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{colour}"/>' for x, y in ordered)
        ly = top + 10 + i * 20
        out.append(f'<line x1="{width - right + 12}" y1="{ly}" x2="{width - right + 36}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2"{dash}/>')
        out.append(f'<text x="{width - right + 42}" y="{ly + 4}">{escape(name)}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above ``value`` (axis tops that read well)."""
    if value <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    return next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= value)
