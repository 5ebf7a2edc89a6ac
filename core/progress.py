"""Progress for long work before the first step: a bar on the terminal (plain
lines when stderr is not one) and `phase` events for the cockpit."""

from __future__ import annotations

import sys
import time

from core.events import NullSink, Phase, Sink


class Progress:
    """Report `done` of `total` units of phase `name`; rate-limited so a tight
    loop can call update() freely."""

    def __init__(
        self,
        name: str,
        total: float | None,
        sink: Sink | None = None,
        unit: str = "",
        every_s: float = 0.5,
    ):
        self.name, self.total, self.unit = name, total, unit
        self.sink = sink or NullSink()
        self.every_s = every_s
        self.tty = sys.stderr.isatty()
        self.t0 = time.time()
        self._last = 0.0
        self.done = 0.0
        self.sink.write(Phase(name=name, done=0, total=total))

    def update(self, done: float) -> None:
        self.done = done
        now = time.time()
        if now - self._last < self.every_s:
            return
        self._last = now
        self.sink.write(Phase(name=self.name, done=done, total=self.total))
        self._draw(final=False)

    def close(self) -> None:
        if self.total is not None:
            self.done = self.total
        self.sink.write(Phase(name=self.name, done=self.done, total=self.total))
        self._draw(final=True)

    def _draw(self, final: bool) -> None:
        el = time.time() - self.t0
        rate = self.done / el if el > 0 else 0.0
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
            text = (
                f"{self.name:>10} [{bar}] {100 * frac:5.1f}% {_fmt(rate)}{self.unit}/s {el:5.1f}s"
            )
        else:
            text = f"{self.name:>10} {_fmt(self.done)}{self.unit} {el:5.1f}s"
        if self.tty:
            sys.stderr.write("\r" + text + ("\n" if final else ""))
        elif final:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _fmt(x: float) -> str:
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.1f}{suf}"
    return f"{x:.0f}"
