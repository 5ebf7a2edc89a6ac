"""Several runs' loss curves in one chart (the compare screen): up to 8 runs, each
in its own colour and named by a letter (A, B, …) that the figures table and
the legend share. Train loss as its EMA (or the raw min-max envelope, EMA off),
val loss over it; x in steps or in time since each run's start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.content import Content
from textual.widget import Widget

from cockpit.fmt import fmt_count, fmt_duration
from cockpit.model.curve import ema
from cockpit.model.view import RunView
from cockpit.ui.widgets.base import MUTED, Lines
from cockpit.ui.widgets.chart import Series, plot, to_time

# eight colours told apart on a dark background (and by letter where colour is off)
PALETTE = (
    "#5fafff", "#ffaf5f", "#5fd787", "#ff5f87", "#d7afff", "#ffd75f", "#5fd7d7", "#d7875f",
)  # fmt: skip
LETTERS = "ABCDEFGH"
CURVES = ("train + val", "train", "val")


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def letter(i: int) -> str:
    return LETTERS[i] if i < len(LETTERS) else str(i + 1)


class OverlayChart(Widget):
    """The screen sets `views` (None: not read yet) and the settings, then refresh()."""

    DEFAULT_CSS = """
    OverlayChart { height: 1fr; width: 1fr; text-wrap: nowrap; text-overflow: clip; }
    """

    def __init__(self, n: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.views: list[RunView | None] = [None] * n
        self.hidden: set[int] = set()  # runs left out of the chart (the table still lists them)
        self.smooth, self.strength = True, 0.9
        self.log_y = self.by_time = False
        self.curves = 0  # index in CURVES
        self.border_title = "Loss"
        self.border_subtitle = self.settings()

    # --- settings, changed by the screen's keys ----------------------------------

    def toggle(self, what: str) -> None:
        if what == "smooth":
            self.smooth = not self.smooth
        elif what == "log":
            self.log_y = not self.log_y
        elif what == "time":
            self.by_time = not self.by_time
        elif what == "curves":
            self.curves = (self.curves + 1) % len(CURVES)
        self.border_subtitle = self.settings()
        self.refresh()

    def set_strength(self, delta: float) -> None:
        self.strength = round(min(0.99, max(0.0, self.strength + delta)), 2)
        self.smooth = True
        self.border_subtitle = self.settings()
        self.refresh()

    def settings(self) -> str:
        parts = [
            CURVES[self.curves],
            f"ema {self.strength:g}" if self.smooth else "ema off",
            "log-y" if self.log_y else "",
            "x: time since start" if self.by_time else "x: step",
        ]
        return " · ".join(p for p in parts if p)

    # --- drawing -----------------------------------------------------------------

    def render(self) -> Content:
        w, h = self.size
        out = Lines(w, h)
        legend: list[tuple[str, str] | str] = []
        for i, v in enumerate(self.views):
            if i in self.hidden:
                legend += [(f"{letter(i)} ", MUTED), ("(hidden)  ", MUTED)]
            else:
                legend += [(f"━ {letter(i)}", "bold " + colour(i))]
                legend += [(" … " if v is None else "  ", MUTED)]
        val = "" if CURVES[self.curves] == "train" else "   val: the bold line through the evals"
        out.line(*legend, (val, MUTED))
        if out.left and out.left >= 3:
            out.rows.extend(self.chart(out.width, out.left))
        return out.content()

    def series(self) -> list[Series]:
        """Every shown run's curves, as the chart draws them (x in steps or seconds)."""
        out: list[Series] = []
        which = CURVES[self.curves]
        for i, v in enumerate(self.views):
            if v is None or i in self.hidden:
                continue
            c = colour(i)
            pts: list[tuple[float, float, float]] = []
            if which != "val":
                train = v.curve("loss").window(None)
                if self.smooth and train:
                    mids = ema([(lo + hi) / 2 for _, lo, hi in train], self.strength)
                    pts = [(p[0], y, y) for p, y in zip(train, mids, strict=True)]
                else:
                    pts = list(train)
            vals = list(v.curve("val_loss").window(None)) if which != "train" else []
            if self.by_time:
                st = [(x, lo) for x, lo, _ in v.curve("step_t").window(None)]
                t0 = v.info.get("t")
                t0 = t0 if isinstance(t0, int | float) else (st[0][1] if st else 0.0)
                pts, vals = to_time(pts, st, t0), to_time(vals, st, t0)
            out += [Series(pts, c, letter(i)), Series(vals, "bold " + c, letter(i))]
        return out

    def chart(self, width: int, height: int) -> list:
        x_fmt: Callable[[float | None], str] = fmt_duration if self.by_time else fmt_count
        return plot(self.series(), width, height, log_y=self.log_y, x_fmt=x_fmt)
