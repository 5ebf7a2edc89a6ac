"""Drawing helpers for the panels, pure functions of numbers to rows of (text,
style) parts (styles name theme variables, so themes and NO_COLOR apply): a
braille line chart that draws each column's minimum to maximum (a downsampled
million-step curve keeps its spikes) and sparklines (numbers are formatted by cockpit.fmt)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass

from cockpit.fmt import fmt_count, fmt_sig

# -----------------------------------------------------------------------------
# sparklines

BARS = "▁▂▃▄▅▆▇█"


def spark(values: list[float], width: int) -> str:
    """The newest values as bars, `width` characters at most (a column per value,
    or the maximum of each group of values when there are more)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if width <= 0 or not vals:
        return ""
    if len(vals) > width:
        k = len(vals) / width
        vals = [max(vals[int(i * k) : max(int(i * k) + 1, int((i + 1) * k))]) for i in range(width)]
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        return BARS[3] * len(vals)
    return "".join(BARS[min(7, int((v - lo) / (hi - lo) * 8))] for v in vals)


# -----------------------------------------------------------------------------
# the braille chart

_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][col] in a cell
# [col][first row][last row]: the dots of rows first..last of a cell's column
_SPANS = tuple(
    tuple(
        tuple(sum(_DOTS[r][col] for r in range(lo, hi + 1)) for hi in range(4)) for lo in range(4)
    )
    for col in range(2)
)


@dataclass
class Series:
    points: list[tuple[float, float, float]]  # (x, min y, max y), x ascending
    style: str
    label: str = ""


def plot(
    series: list[Series],
    width: int,
    height: int,
    *,
    log_y: bool = False,
    x_fmt: Callable[[float | None], str] = fmt_count,
    y_fmt: Callable[[float | None], str] = fmt_sig,
    axis_style: str = "$text-muted",
) -> list[list[tuple[str, str]]]:
    """Series drawn over one x range into width x height cells, as rows of (text,
    style) parts: y labels on the left, x labels on the last line. Each pixel column spans from the least to the
    greatest value that falls in it, joined to its neighbours."""
    if log_y:
        series = [
            Series(
                [(x, math.log10(lo), math.log10(hi)) for x, lo, hi in s.points if lo > 0],
                s.style,
                s.label,
            )
            for s in series
        ]
    pts = [p for s in series for p in s.points]
    label_w = 8
    pw, ph = width - label_w, height - 1
    if pw < 4 or ph < 1:
        return []
    if not pts:
        return [[("", "")]] * (height // 2) + [[("no data yet".center(width), axis_style)]]
    xs, los, his = zip(*pts, strict=True)
    x0, x1, y0, y1 = min(xs), max(xs), min(los), max(his)
    if y1 - y0 < 1e-12 * max(1.0, abs(y1)):
        y0, y1 = y0 - 0.5 * max(abs(y0), 1e-3), y1 + 0.5 * max(abs(y1), 1e-3)
    W, H = pw * 2, ph * 4
    dots = [[0] * pw for _ in range(ph)]
    owner = [[-1] * pw for _ in range(ph)]
    sx = (W - 1) / (x1 - x0) if x1 > x0 else 0.0
    sy = (H - 1) / (y1 - y0)
    top = H - 1
    for si, s in enumerate(series):
        cols: dict[int, list[int]] = {}
        for x, lo, hi in s.points:  # the hot loop: a few thousand points a redraw
            c = int((x - x0) * sx + 0.5) if sx else W // 2
            a = top - int((hi - y0) * sy + 0.5)
            b = top - int((lo - y0) * sy + 0.5)
            got = cols.get(c)
            if got is None:
                cols[c] = [a, b]
            else:
                if a < got[0]:
                    got[0] = a
                if b > got[1]:
                    got[1] = b
        cs = sorted(cols)
        line: list[tuple[int, int, int]] = []
        for k, c in enumerate(cs):
            if k and c - cs[k - 1] > 1:  # columns with no point: interpolate across them
                pc = cs[k - 1]
                pm, cm = sum(cols[pc]) / 2, sum(cols[c]) / 2
                for gc in range(pc + 1, c):
                    y = round(pm + (cm - pm) * (gc - pc) / (c - pc))
                    line.append((gc, y, y))
            line.append((c, cols[c][0], cols[c][1]))
        prev = None
        for c, a0, b0 in line:
            a, b = a0, b0
            if prev is not None:  # join to the column before: the line reads continuous
                if a > prev[1] + 1:
                    a = prev[1] + 1
                elif b < prev[0] - 1:
                    b = prev[0] - 1
            prev = (a0, b0)
            if a > b:
                continue
            # pixel rows a..b of this column, a cell (4 rows) at a time
            cx, masks = c // 2, _SPANS[c % 2]
            first, last = a // 4, b // 4
            for cy in range(first, last + 1):
                dots[cy][cx] |= masks[a % 4 if cy == first else 0][b % 4 if cy == last else 3]
                owner[cy][cx] = si
    out: list[list[tuple[str, str]]] = []
    unlog = (lambda v: 10**v) if log_y else (lambda v: v)
    for r in range(ph):
        if r == 0:
            lab = y_fmt(unlog(y1))
        elif r == ph - 1:
            lab = y_fmt(unlog(y0))
        elif ph >= 5 and r == ph // 2:
            lab = y_fmt(unlog(y1 - (y1 - y0) * (r * 4 + 1.5) / (H - 1)))
        else:
            lab = ""
        row = [(f"{lab:>{label_w - 1}.{label_w - 1}}┤", axis_style)]
        run_style: str | None = None
        run: list[str] = []
        for cx in range(pw):
            si = owner[r][cx]
            st = series[si].style if si >= 0 else ""
            ch = chr(0x2800 + dots[r][cx]) if dots[r][cx] else " "
            if st != run_style and run:
                row.append(("".join(run), run_style or ""))
                run = []
            run_style = st
            run.append(ch)
        if run:
            row.append(("".join(run), run_style or ""))
        out.append(row)
    left, right = x_fmt(x0), x_fmt(x1)
    gap = max(1, pw - len(left) - len(right))
    out.append([(" " * label_w + left + " " * gap + right, axis_style)])
    return out


def to_time(
    points: list[tuple[float, float, float]], step_t: list[tuple[float, float]], t0: float
) -> list[tuple[float, float, float]]:
    """Points over steps re-keyed to seconds since t0, through the (step, time)
    pairs of the run (interpolated between them)."""
    if not step_t:
        return []
    xs = [s for s, _ in step_t]
    out = []
    for x, lo, hi in points:
        i = bisect.bisect_left(xs, x)
        if i <= 0:
            t = step_t[0][1]
        elif i >= len(xs):
            t = step_t[-1][1]
        else:
            (sa, ta), (sb, tb) = step_t[i - 1], step_t[i]
            t = ta + (tb - ta) * (x - sa) / (sb - sa) if sb > sa else tb
        out.append((t - t0, lo, hi))
    return out
