"""Inline SVG charts written as text: no plotting library, no script, nothing fetched.

Each chart is an ``<svg>`` element with ``data-plot`` naming it (the page test looks for them),
``role="img"`` and an ``aria-label``; every mark carries a ``<title>`` with its exact value, which
a browser shows on hover without any script.
"""
from __future__ import annotations

import dataclasses
import math
from html import escape
from typing import Sequence

__all__ = ["Series", "Point", "bars", "lines", "scatter", "distribution", "PALETTE"]

# colour-blind-safe (Okabe-Ito): the first two are the baseline and the compressed model everywhere
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_FONT = 12
_LABEL_CHARS = 44  # layer names are long: keep their tail, the full name is in the mark's title
_CHAR_PX = 7.2  # width of a label character at _FONT, generous: a label cut at the left edge is unreadable


@dataclasses.dataclass(frozen=True)
class Series:
    """One named set of values: ``ys`` at ``xs`` (lines), or one value per category (bars)."""

    name: str
    ys: Sequence[float | None]
    xs: Sequence[float] | None = None


@dataclasses.dataclass(frozen=True)
class Point:
    label: str
    x: float
    y: float
    title: str | None = None  # what hovering shows (default: the label)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 2.5, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.floor(lo / step) * step
    out, t = [first], first
    while t < hi - step * 1e-9:  # up to the first tick at or past ``hi``
        t += step
        out.append(round(t, 12))
    return out


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else "…" + label[-(_LABEL_CHARS - 1):]


def _open(plot: str, title: str, width: int, height: int) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" data-plot="{escape(plot)}" role="img" aria-label="{escape(title)}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" font-size="{_FONT}">',
            f"<title>{escape(title)}</title>",
            f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-weight="bold">{escape(title)}</text>']


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    out = []
    for i, name in enumerate(names):
        out.append(f'<rect x="{x:.1f}" y="{y + i * 16 - 9:.1f}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                   f'<text x="{x + 14:.1f}" y="{y + i * 16:.1f}">{escape(name)}</text>')
    return out


class _Axis:
    """A linear (or log10) map from data to pixels."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False):
        self.log = log and lo > 0
        if self.log:
            self.ticks = [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
        else:
            self.ticks = _ticks(lo, hi)
        self.lo, self.hi = (self._t(self.ticks[0]), self._t(self.ticks[-1])) if self.log else (min(lo, self.ticks[0]), max(hi, self.ticks[-1]))
        if self.hi == self.lo:
            self.hi = self.lo + 1
        self.p0, self.p1 = p0, p1
        step = min((b - a for a, b in zip(self.ticks, self.ticks[1:])), default=1.0)
        # enough decimals to tell neighbouring ticks apart (0.99994 and 0.99996 are not both "1")
        self.decimals = 0 if self.log or step >= 1 else min(12, -math.floor(math.log10(step) + 1e-9) + (1 if round(step / 10 ** math.floor(math.log10(step)), 6) % 1 else 0))

    def label(self, t: float) -> str:
        if self.log or abs(t) >= 1e5:
            return _fmt(t)
        return f"{t:.{self.decimals}f}"

    def _t(self, v: float) -> float:
        return math.log10(v) if self.log else v

    def __call__(self, v: float) -> float:
        return self.p0 + (self._t(v) - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)


def _x_axis(ax: _Axis, y: float, top: float, label: str) -> list[str]:
    out = [f'<line x1="{ax.p0:.1f}" y1="{y:.1f}" x2="{ax.p1:.1f}" y2="{y:.1f}" stroke="#333"/>']
    for t in ax.ticks:
        px = ax(t)
        out.append(f'<line x1="{px:.1f}" y1="{top:.1f}" x2="{px:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>'
                   f'<text x="{px:.1f}" y="{y + 15:.1f}" text-anchor="middle">{ax.label(t)}</text>')
    out.append(f'<text x="{(ax.p0 + ax.p1) / 2:.1f}" y="{y + 32:.1f}" text-anchor="middle">{escape(label)}</text>')
    return out


def _y_axis(ax: _Axis, x: float, right: float, label: str) -> list[str]:
    out = [f'<line x1="{x:.1f}" y1="{ax.p0:.1f}" x2="{x:.1f}" y2="{ax.p1:.1f}" stroke="#333"/>']
    for t in ax.ticks:
        py = ax(t)
        out.append(f'<line x1="{x:.1f}" y1="{py:.1f}" x2="{right:.1f}" y2="{py:.1f}" stroke="#e4e4e4"/>'
                   f'<text x="{x - 6:.1f}" y="{py + 4:.1f}" text-anchor="end">{ax.label(t)}</text>')
    mid = (ax.p0 + ax.p1) / 2
    out.append(f'<text x="14" y="{mid:.1f}" text-anchor="middle" transform="rotate(-90 14 {mid:.1f})">{escape(label)}</text>')
    return out


def bars(plot: str, title: str, categories: Sequence[str], series: Sequence[Series], x_label: str, width: int = 760) -> str:
    """Horizontal bars, one row per category, one bar per series in each row (missing values: no bar)."""
    row = 6 + 12 * len(series)
    left, top, right = 16 + _CHAR_PX * min(_LABEL_CHARS, max((len(c) for c in categories), default=4)), 28 + 16 * len(series), width - 20
    height = int(top + row * len(categories) + 48)
    values = [v for s in series for v in s.ys if v is not None]
    lo, hi = min([0.0, *values]), max([0.0, *values]) or 1.0
    ax = _Axis(lo, hi, left, right)
    bottom = top + row * len(categories)
    out = _open(plot, title, width, height) + _x_axis(ax, bottom, top, x_label)
    out += _legend([s.name for s in series], left, 34) if len(series) > 1 else []
    for i, cat in enumerate(categories):
        y0 = top + i * row + 3
        out.append(f'<text x="{left - 6:.1f}" y="{y0 + row / 2 + 1:.1f}" text-anchor="end"><title>{escape(cat)}</title>{escape(_short(cat))}</text>')
        for j, s in enumerate(series):
            v = s.ys[i]
            if v is None:
                continue
            x0, x1 = sorted((ax(0.0), ax(v)))
            out.append(f'<rect x="{x0:.1f}" y="{y0 + j * 12:.1f}" width="{max(x1 - x0, 0.5):.1f}" height="10" fill="{PALETTE[j % len(PALETTE)]}">'
                       f"<title>{escape(cat)}: {escape(s.name)} {_fmt(v)}</title></rect>")
    out.append("</svg>")
    return "\n".join(out)


def lines(plot: str, title: str, series: Sequence[Series], x_label: str, y_label: str, width: int = 760, height: int = 300,
          log_y: bool = False, marks: Sequence[tuple[str, float]] = ()) -> str:
    """Line chart of each series' ``ys`` against its ``xs`` (their index when absent); ``marks``:
    labelled horizontal reference lines (a target)."""
    pts = [[(x, y) for x, y in zip(s.xs if s.xs is not None else range(len(s.ys)), s.ys) if y is not None and math.isfinite(y)] for s in series]
    xs = [x for p in pts for x, _ in p] or [0.0, 1.0]
    ys = [y for p in pts for _, y in p] + [v for _, v in marks] or [0.0, 1.0]
    left, top, bottom, right = 70, 28 + (16 * len(series) if len(series) > 1 else 0), height - 44, width - 20
    ax = _Axis(min(xs), max(xs), left, right)
    ay = _Axis(min(ys), max(ys), bottom, top, log=log_y and min(ys) > 0)
    out = _open(plot, title, width, height) + _x_axis(ax, bottom, top, x_label) + _y_axis(ay, left, right, y_label)
    out += _legend([s.name for s in series], left + 10, 34) if len(series) > 1 else []
    for name, v in marks:
        out.append(f'<line x1="{left}" y1="{ay(v):.1f}" x2="{right}" y2="{ay(v):.1f}" stroke="#cf222e" stroke-dasharray="6 4"/>'
                   f'<text x="{right - 4}" y="{ay(v) - 5:.1f}" text-anchor="end" fill="#cf222e">{escape(name)}</text>')
    for i, (s, p) in enumerate(zip(series, pts)):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{ax(x):.1f},{ay(y):.1f}" for x, y in p)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"><title>{escape(s.name)}</title></polyline>')
        if len(p) <= 60:  # markers with exact values where they do not crowd
            out += [f'<circle cx="{ax(x):.1f}" cy="{ay(y):.1f}" r="3" fill="{colour}"><title>{escape(s.name)}: {_fmt(x)}, {_fmt(y)}</title></circle>' for x, y in p]
    out.append("</svg>")
    return "\n".join(out)


def scatter(plot: str, title: str, points: Sequence[Point], x_label: str, y_label: str, width: int = 370, height: int = 300, log_x: bool = False,
            front: Sequence[str] = ()) -> str:
    """Labelled points (one per variant), each its own colour; the points labelled in ``front`` (a
    Pareto front) are ringed and joined by a line in order of x, and only they carry a label (many
    variants' labels would hide each other; every point's title names it)."""
    xs, ys = [p.x for p in points] or [0.0, 1.0], [p.y for p in points] or [0.0, 1.0]
    left, top, bottom, right = 64, 28, height - 44, width - 16
    pad_x = (max(xs) - min(xs)) * 0.08 or abs(max(xs)) * 0.1 or 1.0
    pad_y = (max(ys) - min(ys)) * 0.08 or abs(max(ys)) * 0.05 or 0.05
    ax = _Axis(min(xs) / 1.3 if log_x else min(xs) - pad_x, max(xs) * 1.3 if log_x else max(xs) + pad_x, left, right, log=log_x and min(xs) > 0)
    ay = _Axis(min(ys) - pad_y, max(ys) + pad_y, bottom, top)
    out = _open(plot, title, width, height) + _x_axis(ax, bottom, top, x_label) + _y_axis(ay, left, right, y_label)
    on = sorted((p for p in points if p.label in set(front)), key=lambda p: (p.x, -p.y))
    if on:
        path = " ".join(f"{ax(p.x):.1f},{ay(p.y):.1f}" for p in on)
        out.append(f'<polyline class="front" points="{path}" fill="none" stroke="#1d2330" stroke-width="1.5" stroke-dasharray="5 3"><title>Pareto front</title></polyline>')
        out += [f'<circle class="front" cx="{ax(p.x):.1f}" cy="{ay(p.y):.1f}" r="9" fill="none" stroke="#1d2330" stroke-width="1.5"/>' for p in on]
    for i, p in enumerate(points):
        colour = PALETTE[i % len(PALETTE)]
        cx, cy = ax(p.x), ay(p.y)
        anchor = "end" if cx > (left + right) / 2 else "start"
        dx = -8 if anchor == "end" else 8
        text = f'<text x="{cx + dx:.1f}" y="{cy - 7:.1f}" text-anchor="{anchor}" fill="{colour}">{escape(p.label)}</text>' if not on or p in on else ""
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{colour}"><title>{escape(p.title or p.label)}: {_fmt(p.x)}, {_fmt(p.y)}</title></circle>' + text)
    out.append("</svg>")
    return "\n".join(out)


def distribution(plot: str, title: str, groups: Sequence[tuple[str, Sequence[float]]], x_label: str, width: int = 760, log_x: bool = False) -> str:
    """One row per group: its samples as dots over a box (quartiles, whiskers at min and max, the
    median as a line). Dots are spread vertically by rank, so the same data draws the same page."""
    row = 34
    left, top, right = 16 + _CHAR_PX * min(_LABEL_CHARS, max((len(g) for g, _ in groups), default=4)), 28, width - 20
    height = int(top + row * len(groups) + 48)
    values = [v for _, s in groups for v in s]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    ax = _Axis(lo if log_x else min(0.0, lo), hi, left, right, log=log_x and lo > 0)
    bottom = top + row * len(groups)
    out = _open(plot, title, width, height) + _x_axis(ax, bottom, top, x_label)
    for i, (name, samples) in enumerate(groups):
        colour = PALETTE[i % len(PALETTE)]
        mid = top + i * row + row / 2
        out.append(f'<text x="{left - 6:.1f}" y="{mid + 4:.1f}" text-anchor="end">{escape(_short(name))}</text>')
        s = sorted(samples)
        if not s:
            continue
        q1, q2, q3 = (_quantile(s, q) for q in (0.25, 0.5, 0.75))
        out.append(f'<line x1="{ax(s[0]):.1f}" y1="{mid:.1f}" x2="{ax(s[-1]):.1f}" y2="{mid:.1f}" stroke="{colour}"/>'
                   f'<rect x="{ax(q1):.1f}" y="{mid - 8:.1f}" width="{max(ax(q3) - ax(q1), 1):.1f}" height="16" fill="{colour}" fill-opacity="0.18" stroke="{colour}">'
                   f"<title>{escape(name)}: {len(s)} runs; quartiles {_fmt(q1)} / {_fmt(q2)} / {_fmt(q3)}; min {_fmt(s[0])}, max {_fmt(s[-1])}</title></rect>"
                   f'<line x1="{ax(q2):.1f}" y1="{mid - 10:.1f}" x2="{ax(q2):.1f}" y2="{mid + 10:.1f}" stroke="{colour}" stroke-width="3"/>')
        for k, v in enumerate(s):
            jitter = ((k * 7919) % 13 - 6) * 1.2  # a fixed spread, so dots of equal value stay apart
            out.append(f'<circle cx="{ax(v):.1f}" cy="{mid + jitter:.1f}" r="1.8" fill="{colour}" fill-opacity="0.7"/>')
    out.append("</svg>")
    return "\n".join(out)


def _quantile(s: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted ``s`` (numpy's default)."""
    pos = q * (len(s) - 1)
    i = math.floor(pos)
    return s[i] if i + 1 >= len(s) else s[i] + (s[i + 1] - s[i]) * (pos - i)
