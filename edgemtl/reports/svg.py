"""Inline SVG charts for report.html (no matplotlib needed): line charts of training curves and the Pareto scatter.

Plain text is drawn as SVG <text>, so the labels stay searchable and sharp at any zoom; colours are one
colour-blind-safe palette (Okabe-Ito, then Tableau) reused in the order series appear.
"""
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#8c564b", "#7f7f7f", "#bcbd22", "#17becf")
FONT = "font-family:system-ui,sans-serif;font-size:13px"


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@dataclass(frozen=True)
class Series:
    name: str
    x: Sequence[float]
    y: Sequence[float | None]
    dashed: bool = False


@dataclass(frozen=True)
class Point:
    number: int
    x: float
    y: float
    group: str  # the legend entry (format and precision): one colour per group
    front: bool = False


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 2.5, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.3g}"
    return f"{v:.3g}"


class _Frame:
    """Plot area and axis mapping of one chart."""

    def __init__(self, width, height, x_range, y_range, log_x=False, left=62, right=16, top=30, bottom=46):
        self.w, self.h, self.log_x = width, height, log_x
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        (self.x0, self.x1), (self.y0, self.y1) = x_range, y_range

    def _xv(self, v):
        return math.log10(v) if self.log_x else v

    def px(self, v) -> float:
        lo, hi = self._xv(self.x0), self._xv(self.x1)
        span = (hi - lo) or 1.0
        return self.left + (self._xv(v) - lo) / span * (self.w - self.left - self.right)

    def py(self, v) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.h - self.bottom - (v - self.y0) / span * (self.h - self.top - self.bottom)

    def axes(self, title: str, x_label: str, y_label: str, x_ticks, y_ticks) -> list[str]:
        out = [f'<rect x="{self.left}" y="{self.top}" width="{self.w - self.left - self.right}" '
               f'height="{self.h - self.top - self.bottom}" fill="#fff" stroke="#999"/>',
               f'<text x="{self.w / 2}" y="18" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
               f'<text x="{(self.left + self.w - self.right) / 2}" y="{self.h - self.bottom + 34}" '
               f'text-anchor="middle">{escape(x_label)}</text>',
               f'<text transform="translate(14 {(self.top + self.h - self.bottom) / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(y_label)}</text>']
        for t in x_ticks:
            x = self.px(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" y2="{self.h - self.bottom}" stroke="#ddd"/>')
            out.append(f'<text x="{x:.1f}" y="{self.h - self.bottom + 16}" text-anchor="middle">{_fmt(t)}</text>')
        for t in y_ticks:
            y = self.py(t)
            out.append(f'<line x1="{self.left}" x2="{self.w - self.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        return out


def _svg(width: int, height: int, parts: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(label)}" style="{FONT};max-width:100%;height:auto">'
            + "".join(parts) + "</svg>")


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str, width: int = 560,
               height: int = 300) -> str:
    """Lines over epochs, one colour per series (dashed: a series drawn in the colour of the one before it), the
    legend under the plot."""
    values = [v for s in series for v in s.y if v is not None and math.isfinite(v)]
    xs = [x for s in series for x in s.x]
    if not values or not xs:
        return ""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.06 or max(abs(hi) * 0.05, 1e-3)
    rows = (len(series) + 2) // 3
    frame = _Frame(width, height, (min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1), (lo - pad, hi + pad),
                   bottom=48 + 18 * rows + 4)
    x_ticks = [t for t in _ticks(frame.x0, frame.x1, 6) if float(t).is_integer()] or [frame.x0]
    parts = frame.axes(title, x_label, y_label, x_ticks, _ticks(frame.y0, frame.y1))
    colour_index = -1
    for i, s in enumerate(series):
        colour_index += 0 if s.dashed and i else 1
        c = colour(colour_index)
        pts = [(frame.px(x), frame.py(y)) for x, y in zip(s.x, s.y) if y is not None and math.isfinite(y)]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{c}"/>' for x, y in pts]
        lx, ly = frame.left + (i % 3) * (width - frame.left) / 3, height - frame.bottom + 56 + 18 * (i // 3)
        parts.append(f'<line x1="{lx:.0f}" x2="{lx + 22:.0f}" y1="{ly - 4}" y2="{ly - 4}" stroke="{c}" '
                     f'stroke-width="2"{dash}/><text x="{lx + 27:.0f}" y="{ly}">{escape(s.name)}</text>')
    return _svg(width, height, parts, title)


def scatter(title: str, points: Sequence[Point], x_label: str, y_label: str, y_min_pad: float,
            log_x: bool = True, width: int = 820, height: int = 460) -> str:
    """Numbered points coloured by group (legend at the right), the front joined by a line. The y-range is padded
    by at least y_min_pad on each side (one test row of the score: two runs one row apart never look far apart)."""
    if not points:
        return ""
    groups = list(dict.fromkeys(p.group for p in points))
    xs, ys = [p.x for p in points], [p.y for p in points]
    y_lo, y_hi = min(ys), max(ys)
    pad = max(y_min_pad, (y_hi - y_lo) * 0.08)
    if log_x:
        x_lo, x_hi = min(xs) / 1.35, max(xs) * 1.35
    else:
        span = (max(xs) - min(xs)) or 1.0
        x_lo, x_hi = min(xs) - span * 0.05, max(xs) + span * 0.05
    legend_w = 190
    frame = _Frame(width, height, (x_lo, x_hi), (y_lo - pad, y_hi + pad), log_x=log_x, right=16 + legend_w)
    if log_x:
        x_ticks = [t for t in (m * 10 ** e for e in range(-3, 5) for m in (1, 2, 5)) if x_lo <= t <= x_hi]
    else:
        x_ticks = _ticks(x_lo, x_hi)
    parts = frame.axes(title, x_label, y_label, x_ticks or [x_lo], _ticks(frame.y0, frame.y1))
    front = sorted((p for p in points if p.front), key=lambda p: p.x)
    if len(front) > 1:
        path = " ".join(f"{frame.px(p.x):.1f},{frame.py(p.y):.1f}" for p in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#c00" stroke-width="1.5" '
                     f'stroke-dasharray="4 3"/>')
    centres = [(frame.px(p.x), frame.py(p.y)) for p in points]
    for p, (x, y) in zip(points, centres):
        c = colour(groups.index(p.group))
        ring = ' stroke="#c00" stroke-width="2"' if p.front else ' stroke="#fff" stroke-width="1"'
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{c}" fill-opacity="0.85"{ring}>'
                     f'<title>{p.number}</title></circle>')
    parts += _number_labels([str(p.number) for p in points], centres, frame)
    lx = width - legend_w + 4
    parts.append(f'<text x="{lx}" y="{frame.top + 12}" font-weight="bold">format, precision</text>')
    for i, g in enumerate(groups):
        y = frame.top + 32 + 20 * i
        parts.append(f'<circle cx="{lx + 7}" cy="{y - 4}" r="6" fill="{colour(i)}"/>'
                     f'<text x="{lx + 19}" y="{y}">{escape(g)}</text>')
    y = frame.top + 32 + 20 * len(groups)
    parts.append(f'<circle cx="{lx + 7}" cy="{y - 4}" r="6" fill="#fff" stroke="#c00" stroke-width="2"/>'
                 f'<text x="{lx + 19}" y="{y}">on the Pareto front</text>')
    return _svg(width, height, parts, title)


def _number_labels(texts: list, centres: list, frame: _Frame) -> list[str]:
    """Each point's number placed where it overlaps no other number and no point (greedy, nearest spot first);
    a number set further out gets a thin line to its point."""
    placed: list[tuple] = []
    dots = [(x - 7, y - 7, x + 7, y + 7) for x, y in centres]
    out = []

    def free(box) -> bool:
        inside = frame.left <= box[0] and box[2] <= frame.w - frame.right and frame.top <= box[1] \
            and box[3] <= frame.h - frame.bottom
        return inside and not any(_overlap(box, b) for b in placed + dots)

    for text, (x, y) in zip(texts, centres):
        w, h = 7.5 * len(text) + 2, 13
        spots = [(dx, dy) for r in (10, 22, 36, 52) for dx, dy in
                 ((r, -r * 0.6), (r, r * 0.6 + h), (-r - w, -r * 0.6), (-r - w, r * 0.6 + h), (-w / 2, -r),
                  (-w / 2, r + h))]
        dx, dy = next(((dx, dy) for dx, dy in spots if free((x + dx, y + dy - h, x + dx + w, y + dy))), spots[0])
        box = (x + dx, y + dy - h, x + dx + w, y + dy)
        placed.append(box)
        if abs(dx) > 14 or abs(dy) > 20:
            mx, my = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            out.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{mx:.1f}" y2="{my:.1f}" stroke="#888" stroke-width=".8"/>')
        out.append(f'<text x="{box[0] + 1:.1f}" y="{box[3] - 2:.1f}" font-size="12" paint-order="stroke" '
                   f'stroke="#fff" stroke-width="3">{escape(text)}</text>')
    return out


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
