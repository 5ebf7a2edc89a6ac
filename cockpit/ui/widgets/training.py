"""Panels about the training itself: loss, throughput, eval and gate, checkpoints."""

from __future__ import annotations

import math
from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Vertical

from cockpit.fmt import (
    fmt_age,
    fmt_count,
    fmt_duration,
    fmt_estimate,
    fmt_mib,
    fmt_num,
    fmt_rate,
    fmt_seconds,
    fmt_sig,
    gate_text,
)
from cockpit.model.curve import ema
from cockpit.model.view import RunView
from cockpit.ui.widgets.base import ACCENT, ERROR, MUTED, OK, PRIMARY, WARN, Lines, Panel
from cockpit.ui.widgets.chart import Series, plot, spark, to_time

ZOOMS = (None, 100_000, 10_000, 1_000, 100)  # the last N steps, None: the whole run


class LossFigures(Panel):
    """The loss panel's figures line, redrawn with the body's pass (once a second)
    like the chart below it. (Not with every view: a frame that repaints the header
    alone renders only the top widgets, where one that also repaints this line
    renders every panel of the body, a frame's cost many times over.)"""

    DEFAULT_CSS = "LossFigures { height: 1; }"

    def draw(self, v: RunView, out: Lines) -> None:
        f, loss = v.figures, v.curve("loss")
        nan = f" · {loss.n_nonfinite} NaN/Inf" if loss.n_nonfinite else ""
        out.pairs(
            ("train", fmt_num(f.loss), "bold " + PRIMARY),
            ("ema", fmt_num(v.loss_ema), ACCENT),
            ("val", fmt_num(f.val_loss), "bold " + WARN),
            ("best", fmt_num(v.best_val), WARN),
            ("lr", fmt_num(f.lr, ".2e"), ""),
            tail=(nan, ERROR),
        )


class LossChart(Panel):
    """Train loss (min-max envelope of the downsampled curve), its EMA and val loss."""

    MIN_INTERVAL_S = 1.0  # the costliest panel: once a second is plenty for a curve

    def __init__(self, **kw):
        super().__init__(**kw)
        self.smooth = True
        self.strength = 0.9
        self.log_y = False
        self.by_time = False
        self.zoom = 0  # index in ZOOMS

    # settings, changed by the screen's keys
    def toggle(self, what: str) -> None:
        if what == "smooth":
            self.smooth = not self.smooth
        elif what == "log":
            self.log_y = not self.log_y
        elif what == "time":
            self.by_time = not self.by_time
        elif what == "zoom":
            self.zoom = (self.zoom + 1) % len(ZOOMS)
        self.redraw(force=True)

    def set_strength(self, delta: float) -> None:
        self.strength = round(min(0.99, max(0.0, self.strength + delta)), 2)
        self.smooth = True
        self.redraw(force=True)

    def key(self, v: RunView) -> object:
        return (v.curve("loss").n, v.curve("val_loss").n, v.curve("loss").n_nonfinite)

    def settings(self) -> str:
        z = ZOOMS[self.zoom]
        parts = [
            f"ema {self.strength:g}" if self.smooth else "ema off",
            "log-y" if self.log_y else "",
            "x time" if self.by_time else "",
            f"last {fmt_count(z)} steps" if z else "",
        ]
        return " · ".join(p for p in parts if p)

    def draw(self, v: RunView, out: Lines) -> None:
        if out.left and out.left >= 3:
            out.rows.extend(self.chart(v, out.width, out.left))

    def chart(self, v: RunView, width: int, height: int) -> list:
        z = ZOOMS[self.zoom]
        x_min = max(0, v.figures.step - z) if z else None
        train = v.curve("loss").window(x_min)
        val = v.curve("val_loss").window(x_min)
        series = [Series(train, MUTED if self.smooth else PRIMARY, "train")]
        if self.smooth and train:
            mids = ema([(lo + hi) / 2 for _, lo, hi in train], self.strength)
            series.append(Series([(p[0], y, y) for p, y in zip(train, mids, strict=True)], PRIMARY))
        series.append(Series(val, "bold " + WARN, "val"))
        x_fmt: Callable[[float | None], str] = fmt_count
        if self.by_time:
            st = [(x, lo) for x, lo, _ in v.curve("step_t").window(None)]
            t0 = v.info.get("t") if isinstance(v.info.get("t"), int | float) else None
            t0 = t0 if t0 is not None else (st[0][1] if st else 0.0)
            series = [Series(to_time(s.points, st, t0), s.style) for s in series]
            x_fmt = fmt_duration
        return plot(series, width, height, log_y=self.log_y, x_fmt=x_fmt)


class LossPanel(Vertical):
    """The loss panel: its figures line over its chart."""

    def compose(self) -> ComposeResult:
        yield LossFigures(id="loss-figures")
        yield LossChart(id="loss-chart")

    def on_mount(self) -> None:
        self.border_title = "Loss"
        self.border_subtitle = self.query_one(LossChart).settings()


class ThroughputPanel(Panel):
    TITLE = "Throughput"
    MIN_INTERVAL_S = 1.0  # rates over many steps: once a second reads the same

    def key(self, v: RunView) -> object:
        return (v.curve("tokens_per_s").n, v.figures.steps_per_s, self.size)

    def draw(self, v: RunView, out: Lines) -> None:
        f = v.figures
        w = max(0, out.width - 20)
        mfu = f.mfu
        # MFU is per device: the tokens/s each GPU (or CPU rank) made sits beside it
        unit = "GPU" if "cuda" in str(v.info.get("device", "")) else "rank"
        per_dev = f"{fmt_rate(f.tokens_per_s_device)}/{unit} " if f.tokens_per_s_device else ""
        rows = [
            ("tokens/s", fmt_rate(f.tokens_per_s), "", "tokens_per_s"),
            ("step ms", fmt_num(f.step_ms, ".1f"), "", "step_ms"),
            ("MFU", f"{100 * mfu:.1f}%" if isinstance(mfu, int | float) else "–", per_dev, "mfu"),
        ]
        for label, value, note, curve in rows:
            sw = max(0, w - len(note))
            out.line(
                (f"{label:<9}", MUTED),
                (f"{value:>9}  ", "bold"),
                (note, MUTED),
                (spark(v.curve(curve).recent(sw), sw), ACCENT),
            )
        sps = f.steps_per_s
        out.line(
            (f"{'steps/s':<9}", MUTED),
            (f"{fmt_sig(sps, 3):>9}  ", "bold"),
            (f"grad norm {fmt_sig(f.grad_norm, 3)}", MUTED),
        )
        # which peak MFU divides by, so a figure can be checked (none: MFU unknown)
        src = (f.peak_source or "").split(": ", 1)[-1].split(",")[0]
        peak = f"{fmt_sig(f.peak_flops / 1e12, 4)} TFLOP/s" if f.peak_flops else "unknown"
        out.line((f"{'peak':<9}", MUTED), (f"{peak} ", ""), (src, MUTED))


class EvalPanel(Panel):
    TITLE = "Eval & gate"

    def key(self, v: RunView) -> object:
        return (v.n_evals, id(v.gate), len(v.samples), id(v.samples[-1]) if v.samples else 0)

    def draw(self, v: RunView, out: Lines) -> None:
        if not v.evals:
            out.line(("no eval yet", MUTED))
        else:
            e = v.evals[-1]
            ppl = e.get("val_ppl")
            out.pairs(
                ("step", str(e.get("step")), ""),
                ("val", fmt_num(e.get("val_loss")), "bold " + WARN),
                ("ppl", fmt_sig(ppl, 4), ""),
                ("best", fmt_num(v.best_val), ""),
            )
            if isinstance(e.get("seconds"), int | float):  # older runs do not time their evals
                out.pairs(("took", fmt_estimate(e["seconds"]), MUTED))
        g = v.gate or {}
        th, metrics = g.get("thresholds") or {}, g.get("metrics") or {}
        latest = (v.evals[-1].get("metrics") or {}) if v.evals else {}
        names = sorted(set(th) | set(latest))
        width = max((len(k) for k in names), default=0)
        for k in names:
            val = metrics.get(k, latest.get(k))
            if k in th and isinstance(val, int | float):
                ok = val >= th[k]
                out.kv(
                    k, width, f"{val:.3f} ≥ {th[k]:g} ", ("✓" if ok else "✗", OK if ok else ERROR)
                )
            elif isinstance(val, int | float):
                out.kv(k, width, f"{val:.3f}")
        style = OK if v.gate_passed_step is not None else (WARN if v.gate else MUTED)
        out.line(("gate: ", MUTED), (gate_text(v), style))
        for s in reversed(v.samples):
            if out.full:
                break
            mark = {True: ("✓", OK), False: ("✗", ERROR)}.get(s.get("valid"), ("·", MUTED))
            text = " ".join(str(s.get("text", "")).split())
            out.line(mark, (f" {s.get('prompt', '')!s}", MUTED), f" → {text}")


class CheckpointsPanel(Panel):
    TITLE = "Checkpoints"

    def key(self, v: RunView) -> object:
        ck = tuple(
            (c.name, c.verified, tuple(c.tags), c.present, c.blocked_s, c.shards)
            for c in v.checkpoints
        )
        # ages move by the 10 s; of the system sample only the free disk is shown
        return (ck, int(v.now // 10), (v.system or {}).get("disk_free_mib"))

    def draw(self, v: RunView, out: Lines) -> None:
        present = [c for c in v.checkpoints if c.present]
        gone = len(v.checkpoints) - len(present)
        free = (v.system or {}).get("disk_free_mib")
        biggest = max((c.bytes for c in present), default=0) / 2**20
        disk = f"disk {fmt_mib(free)} free" if isinstance(free, int | float) else "disk –"
        if isinstance(free, int | float) and biggest:
            room = free / biggest
            disk += f" · room for {math.floor(room):,} more"
            disk_style = ERROR if room < 2 else (WARN if room < 5 else MUTED)
        else:
            disk_style = MUTED
        if not present:
            out.line(("no checkpoint yet", MUTED))
        rows = list(reversed(present))[: max(0, (out.left or 99) - 1)]
        tag_w = min(24, max((len(",".join(c.tags)) for c in rows), default=1))
        for c in rows:
            mark = {True: ("✓", OK), False: ("✗", ERROR), None: ("…", MUTED)}[c.verified]
            # a sharded checkpoint says in how many files; a save that measured its pause says
            # how long it took and how long training waited (all of it, unless async)
            shards = f" in {c.shards}" if c.shards else ""
            took = (
                f"  {fmt_seconds(c.seconds)}, paused {fmt_seconds(c.blocked_s)}"
                if c.blocked_s is not None
                else ""
            )
            out.line(
                mark,
                (f" {c.step:>7,}", "bold"),
                (f" {fmt_age(v.now - c.t):>5}", MUTED),
                (f"  {','.join(c.tags) or '-':<{tag_w}}", ACCENT),
                f" {fmt_mib(c.bytes / 2**20):>8}",
                (shards, MUTED),
                (took, MUTED),
                (f"  {c.why}" if c.verified is False and c.why else "", ERROR),
            )
        more = f" · {gone} removed by retention" if gone else ""
        out.line((disk, disk_style), (more, MUTED))
