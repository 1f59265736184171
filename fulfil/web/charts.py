"""Inline SVG charts, rendered on the server (no script, no CDN): bars per day and a line over hours."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 640, 160, 24


def bars(labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]], *, title: str) -> Markup:
    """Grouped bars: one group per label, one bar per (name, colour, values) series; a legend on top."""
    if not labels:
        return Markup(f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{WIDTH}" height="40">'
                      f'<text x="4" y="24">—</text></svg>')
    top = max((v for _, _, values in series for v in values), default=0) or 1
    group = (WIDTH - 2 * PAD) / len(labels)
    bar = max(group / (len(series) + 1), 1)
    parts = [f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}">', f"<title>{escape(title)}</title>"]
    for s, (name, colour, values) in enumerate(series):
        parts.append(f'<rect x="{PAD + s * 110}" y="2" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{PAD + s * 110 + 14}" y="11" font-size="10">{escape(name)}</text>')
        for i, value in enumerate(values):
            h = (HEIGHT - 2 * PAD) * value / top
            x = PAD + i * group + s * bar + bar / 2
            y = HEIGHT - PAD - h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                         f"<title>{escape(labels[i])} {escape(name)}: {value:g}</title></rect>")
    for i, label in enumerate(labels):
        x = PAD + i * group + group / 2
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" font-size="10" text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<text x="2" y="{PAD + 4}" font-size="10">{top:g}</text></svg>')
    return Markup("".join(parts))


def line(points: Sequence[float | None], *, title: str, unit: str = "", colour: str = "#2563eb",
         ceiling: float | None = None) -> Markup:
    """A polyline over evenly spaced points (None: a gap), scaled to the largest value or `ceiling`."""
    values = [p for p in points if p is not None]
    if not values:
        return Markup(f'<svg class="spark" role="img" aria-label="{escape(title)}" width="240" height="40">'
                      f'<text x="4" y="24">—</text></svg>')
    w, h = 240, 40
    top = ceiling if ceiling is not None else (max(values) or 1)
    step = w / max(len(points) - 1, 1)
    segments: list[list[str]] = [[]]
    for i, p in enumerate(points):
        if p is None:
            segments.append([])
            continue
        segments[-1].append(f"{i * step:.1f},{h - 2 - (h - 4) * min(p / top, 1):.1f}")
    lines = "".join(
        f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(seg)}"/>'
        for seg in segments if seg
    )
    # Dots too: an hour on its own between gaps is a point, which a polyline would not draw.
    lines += "".join(
        f'<circle cx="{xy.split(",")[0]}" cy="{xy.split(",")[1]}" r="2" fill="{colour}"/>'
        for seg in segments for xy in seg
    )
    lines = f'<rect x="0" y="0" width="{w}" height="{h}" fill="#f1f5f9"/>' + lines
    last = values[-1]
    return Markup(f'<svg class="spark" role="img" aria-label="{escape(title)}" viewBox="0 0 {w} {h}" '
                  f'width="{w}" height="{h}"><title>{escape(title)}: {last:.3g}{escape(unit)}</title>{lines}</svg>')
