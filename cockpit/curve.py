"""A curve that stays small however long the run: a fixed number of buckets,
each keeping its minimum and maximum (a spike is never averaged away), plus a
raw tail of recent points for zooming in."""

from __future__ import annotations

import math
from collections import deque

# -----------------------------------------------------------------------------
# a bounded curve that keeps its extremes


class Curve:
    """y over x, in at most `cap` buckets (the bucket width doubles when full)
    plus the last `tail` raw points. Non-finite y values are counted, not kept."""

    __slots__ = ("cap", "width", "xs", "lo", "hi", "last", "_fill", "tail", "n", "n_nonfinite")

    def __init__(self, cap: int = 2048, tail: int = 2000):
        self.cap, self.width = cap, 1
        self.xs: list[float] = []  # x of each bucket's first point
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.last: list[float] = []
        self._fill = 0  # points in the newest bucket
        self.tail: deque[tuple[float, float]] = deque(maxlen=tail)
        self.n = 0
        self.n_nonfinite = 0

    def add(self, x: float, y: float | None) -> None:
        if y is None or y != y or y in (math.inf, -math.inf):
            self.n_nonfinite += 1
            return
        self.n += 1
        self.tail.append((x, y))
        if self._fill and self._fill < self.width:
            self._fill += 1
            if y < self.lo[-1]:
                self.lo[-1] = y
            if y > self.hi[-1]:
                self.hi[-1] = y
            self.last[-1] = y
            return
        self.xs.append(x)
        self.lo.append(y)
        self.hi.append(y)
        self.last.append(y)
        self._fill = 1
        if len(self.xs) > self.cap:
            self._halve()

    def _halve(self) -> None:
        # merge neighbours pairwise; an odd newest bucket stays alone (and partly filled)
        xs, lo, hi, last = self.xs, self.lo, self.hi, self.last
        n = len(xs) - (len(xs) % 2)
        self.xs = xs[0:n:2] + xs[n:]
        self.lo = [min(a, b) for a, b in zip(lo[0:n:2], lo[1:n:2], strict=True)] + lo[n:]
        self.hi = [max(a, b) for a, b in zip(hi[0:n:2], hi[1:n:2], strict=True)] + hi[n:]
        self.last = last[1:n:2] + last[n:]
        self._fill = self._fill if n < len(xs) else self.width + self._fill
        self.width *= 2

    def points(self) -> list[tuple[float, float, float, float]]:
        """(x, min, max, last) per bucket, oldest first."""
        return list(zip(self.xs, self.lo, self.hi, self.last, strict=True))

    @property
    def latest(self) -> float | None:
        return self.tail[-1][1] if self.tail else None

    @property
    def minimum(self) -> float | None:
        return min(self.lo) if self.lo else None

    @property
    def maximum(self) -> float | None:
        return max(self.hi) if self.hi else None
