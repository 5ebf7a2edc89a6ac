"""A curve that stays small however long the run: a fixed number of buckets,
each keeping its minimum and maximum (a spike is never averaged away), plus a
raw tail of recent points for zooming in."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# -----------------------------------------------------------------------------
# a bounded curve that keeps its extremes


class Extremes:
    """The newest value and the extremes of a curve's buckets (tail, lo, hi), for the
    live Curve and the UI's frozen copy of it alike."""

    tail: Sequence[tuple[float, float]]  # set by each subclass
    lo: Sequence[float]
    hi: Sequence[float]

    @property
    def latest(self) -> float | None:
        return self.tail[-1][1] if self.tail else None

    @property
    def minimum(self) -> float | None:
        return min(self.lo) if self.lo else None

    @property
    def maximum(self) -> float | None:
        return max(self.hi) if self.hi else None


class Curve(Extremes):
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

    def extend(
        self, xs: Sequence[float] | np.ndarray, ys: Sequence[float | None] | np.ndarray
    ) -> None:
        """Add many points at once: the same buckets as `add` called for each point, in
        whole-bucket numpy slices (a million-step history loads in milliseconds)."""
        import numpy as np  # lazy: only a long curve's resample needs it

        xa = np.asarray(xs, dtype=float)
        ya = np.asarray(ys, dtype=float)  # None becomes NaN
        ok = np.isfinite(ya)
        self.n_nonfinite += int(len(ya) - ok.sum())
        xa, ya = xa[ok], ya[ok]
        if not len(ya):
            return
        # steps: kept as ints, as add() keeps them (those an int64 holds: past it, or
        # infinite, an x stays a float rather than wrap around)
        whole = bool(np.all((xa == np.floor(xa)) & (np.abs(xa) < 2.0**63)))

        def xl(a: np.ndarray) -> list:
            return a.astype(np.int64).tolist() if whole else a.tolist()

        k = len(ya)
        self.n += k
        m = self.tail.maxlen
        assert m is not None  # the tail is always bounded (__init__)
        self.tail.extend(zip(xl(xa[-m:]), ya[-m:].tolist(), strict=True))
        i = 0
        while i < k:
            w = self.width
            if self._fill and self._fill < w:  # top up the newest bucket
                seg = ya[i : i + w - self._fill]
                self.lo[-1] = min(self.lo[-1], float(seg.min()))
                self.hi[-1] = max(self.hi[-1], float(seg.max()))
                self.last[-1] = float(seg[-1])
                self._fill += len(seg)
                i += len(seg)
                continue
            room = self.cap - len(self.xs)  # new buckets before a halving
            full = min(room, (k - i) // w)
            if room <= 0 or full == 0:
                # one new bucket, partly filled: exactly what add() does point by point
                seg = ya[i : i + w]
                self.xs.append(xl(xa[i : i + 1])[0])
                self.lo.append(float(seg.min()))
                self.hi.append(float(seg.max()))
                self.last.append(float(seg[-1]))
                self._fill = 1
                if len(self.xs) > self.cap:
                    self._halve()  # before the rest of the bucket: add() halves at its first point
                    self._fill += len(seg) - 1
                else:
                    self._fill = len(seg)
                i += len(seg)
                continue
            block = ya[i : i + full * w].reshape(full, w)
            self.xs.extend(xl(xa[i : i + full * w : w]))
            self.lo.extend(block.min(axis=1).tolist())
            self.hi.extend(block.max(axis=1).tolist())
            self.last.extend(block[:, -1].tolist())
            self._fill = w
            i += full * w

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


def ema(ys: Iterable[float], strength: float) -> list[float]:
    """Exponential moving average with the start debiased (as TensorBoard smooths):
    `strength` is the weight of the past, 0 (none) to <1."""
    out, acc, norm = [], 0.0, 0.0
    a = min(max(strength, 0.0), 0.999)
    for y in ys:
        acc = a * acc + (1 - a) * y
        norm = a * norm + (1 - a)
        out.append(acc / norm)
    return out
