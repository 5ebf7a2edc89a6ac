"""Two runs side by side: their loss curves overlaid, their figures in two
columns. Each run is read once in a worker (cockpit.ui.pump.load_view); the run
the monitor shows comes with its current view."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Label
from textual.worker import get_current_worker

from cockpit.fmt import fmt_count, fmt_duration, fmt_num, fmt_rate, gate_text
from cockpit.model.curve import ema
from cockpit.model.view import RunView
from cockpit.ui.pump import load_view
from cockpit.ui.widgets.base import ACCENT, MUTED, PRIMARY, WARN, Lines, Panel, plain
from cockpit.ui.widgets.chart import Series, plot, to_time
from cockpit.ui.widgets.header import status_text

COLOURS = (PRIMARY, ACCENT)


def figure_rows(v: RunView) -> list[tuple[str, str]]:
    f, info = v.figures, v.info
    present = [c for c in v.checkpoints if c.present]
    mfu = f.mfu
    return [
        ("profile", v.profile or "–"),
        ("status", status_text(v)),
        ("steps", f"{f.step:,}/{f.total_steps:,}" if f.total_steps else f"{f.step:,}"),
        ("epochs", f"{f.epoch + 1}/{f.total_epochs}" if f.total_epochs else str(f.epoch + 1)),
        ("train loss", fmt_num(f.loss)),
        ("val loss", fmt_num(f.val_loss)),
        ("best val", fmt_num(v.best_val)),
        ("gate", gate_text(v)),
        ("wall time", fmt_duration(v.elapsed_s)),
        ("tokens", f"{f.tokens:,}"),
        ("tokens/s", fmt_rate(f.tokens_per_s)),
        ("step ms", fmt_num(f.step_ms, ".1f")),
        ("MFU", f"{100 * mfu:.1f}%" if isinstance(mfu, int | float) else "–"),
        ("lr", fmt_num(f.lr, ".2e")),
        ("parameters", f"{info['n_params']:,}" if isinstance(info.get("n_params"), int) else "–"),
        ("tokens/step", f"{info.get('tokens_per_step', '–'):,}" if info else "–"),
        ("device", f"{info.get('device', '–')} × {info.get('world_size', 1)}" if info else "–"),
        ("dtype", str(info.get("dtype", "–"))),
        ("checkpoints", str(len(present))),
        ("alerts", ", ".join(sorted({a.code for a in v.alerts})) or "none"),
    ]


class _TwoRuns(Panel):
    """A panel drawn from two runs' views (set by the screen), redrawn when either changes."""

    views: list[RunView | None]

    def key(self, v: RunView) -> object:
        return tuple(x.version if x else None for x in self.views)

    def render(self) -> Content:
        w, h = self.size
        out = Lines(w, h)
        self.draw(None, out)  # type: ignore[arg-type]  # a two-run panel draws self.views
        return out.content()


class CompareChart(_TwoRuns):
    TITLE = "Loss, overlaid"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.views: list[RunView | None] = [None, None]
        self.log_y = self.by_time = False

    def draw(self, _v: RunView | None, out: Lines) -> None:
        self.border_subtitle = " · ".join(
            x for x in ("log-y" if self.log_y else "", "x time" if self.by_time else "") if x
        )
        legend = []
        for k, v in enumerate(self.views):
            name = v.run_id if v else "loading…"
            legend += [(f"{'AB'[k]} ", "bold " + COLOURS[k]), (f"{name}   ", MUTED)]
        out.line(*legend, ("(train: EMA line · val: bold)", MUTED))
        series = []
        for k, v in enumerate(self.views):
            if v is None:
                continue
            train, val = v.curve("loss").window(None), v.curve("val_loss").window(None)
            mids = ema([(lo + hi) / 2 for _, lo, hi in train], 0.9)
            pts = [(p[0], y, y) for p, y in zip(train, mids, strict=True)]
            vals = list(val)
            if self.by_time:
                st = [(x, lo) for x, lo, _ in v.curve("step_t").window(None)]
                t0 = v.info.get("t") or (st[0][1] if st else 0.0)
                pts, vals = to_time(pts, st, t0), to_time(vals, st, t0)
            series += [Series(pts, COLOURS[k]), Series(vals, "bold " + COLOURS[k])]
        if out.left and out.left >= 3:
            x_fmt = fmt_duration if self.by_time else fmt_count
            out.rows.extend(plot(series, out.width, out.left, log_y=self.log_y, x_fmt=x_fmt))


class CompareTable(_TwoRuns):
    TITLE = "Figures"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.views: list[RunView | None] = [None, None]

    def draw(self, _v: RunView | None, out: Lines) -> None:
        rows = [figure_rows(v) if v else [] for v in self.views]
        names = [r[0] for r in (rows[0] or rows[1])]
        col = max(8, (out.width - 14) // 2)
        out.line(
            (f"{'':<13} ", MUTED),
            *((f"{(v.run_id if v else 'loading…')[: col - 1]:<{col}}", "bold " + COLOURS[k])
              for k, v in enumerate(self.views)),
        )  # fmt: skip
        for i, name in enumerate(names):
            a = rows[0][i][1] if rows[0] else "…"
            b = rows[1][i][1] if rows[1] else "…"
            style = "" if a == b else WARN
            out.line((f"{name:<13} ", MUTED), (f"{a[: col - 1]:<{col}}", style), (b[:col], style))


class CompareScreen(Screen):
    CSS_PATH = "../tcss/compare.tcss"
    BINDINGS = [
        Binding("g", "toggle('log_y')", "log-y"),
        Binding("t", "toggle('by_time')", "x: step/time"),
        Binding("escape", "back", "back"),
    ]

    @dataclass
    class Loaded(Message):
        """One side's run, read."""

        side: int
        view: RunView

    def __init__(
        self,
        a: Path,
        b: Path,
        a_view: RunView | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.paths, self.first, self.clock = (Path(a), Path(b)), a_view, clock

    def compose(self) -> ComposeResult:
        yield Label(
            plain(f"A {self.paths[0].name}   vs   B {self.paths[1].name}"), id="compare-title"
        )
        yield CompareChart(id="overlay", classes="panel")
        yield CompareTable(id="figures", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        if self.first is not None:
            self.post_message(self.Loaded(0, self.first))
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare")
    def _load(self) -> None:
        worker = get_current_worker()
        for side, path in enumerate(self.paths):
            if side == 0 and self.first is not None:
                continue
            v = load_view(path, clock=self.clock)
            if worker.is_cancelled:
                return
            self.post_message(self.Loaded(side, v))

    def on_compare_screen_loaded(self, msg: Loaded) -> None:
        for w in (self.query_one(CompareChart), self.query_one(CompareTable)):
            w.views[msg.side] = msg.view
            w.refresh()

    def action_toggle(self, what: str) -> None:  # type: ignore[override]  # a setting, not a widget's toggle
        c = self.query_one(CompareChart)
        setattr(c, what, not getattr(c, what))
        c.refresh()

    def action_back(self) -> None:
        self.app.pop_screen()
