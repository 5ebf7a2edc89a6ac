"""The headless display: a run as lines of text, for ssh, nohup, CI and log
files: a progress bar per epoch and a one-line summary.

Not a terminal: plain lines with no ANSI codes, one every `every_s` seconds and
one per eval, plus alerts and checkpoints as they happen. A terminal: the same
lines above a Rich progress bar for the steps and the current epoch. The
printer reads the run through the same frozen RunView the TUI draws; it never
samples, reads files or signals. Every line is plain text: what a trainer wrote
(a reason, an alert, a path) is never read as Rich markup, and its control
characters are shown as placeholders (cockpit.fmt.clean), never sent.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import TextIO

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from cockpit.fmt import (
    clean,
    final_rows,
    fmt_bytes,
    fmt_duration,
    fmt_estimate,
    fmt_num,
    fmt_rate,
)
from cockpit.model.runmodel import Figures, RunModel
from cockpit.model.view import RunView, ViewBuilder

# -----------------------------------------------------------------------------
# lines


def summary_line(f: Figures) -> str:
    """One line: step/total, epoch, loss, val, lr, tok/s, ETA, RSS, GPU."""
    total = f.total_steps
    step = f"step {f.step}/{total}" if total else f"step {f.step}"
    if total:
        step += f" ({100 * f.step / total:.0f}%)"
    te = f.total_epochs
    epoch = f"epoch {f.epoch + 1}/{te}" if te else f"epoch {f.epoch + 1}"
    if f.gpu_available:
        gpu = f"GPU {fmt_num(f.gpu_util_pct, '.0f')}%"
    else:
        gpu = "no GPU" if f.gpu_available is False else "GPU –"
    parts = [
        step,
        epoch,
        f"loss {fmt_num(f.loss)}",
        f"val {fmt_num(f.val_loss)}",
        f"lr {fmt_num(f.lr, '.2e')}",
        f"{fmt_rate(f.tokens_per_s)} tok/s",
        f"ETA {fmt_duration(f.eta_s)}",
        f"RSS {fmt_num(f.rss_mib, '.0f')} MiB",
        gpu,
    ]
    if f.ranks:  # under torchrun: each rank's median step ms and memory
        parts.append(
            "ranks "
            + " ".join(
                f"r{r} {fmt_num(ms, '.0f')} ms/{fmt_num(mib, '.0f')} MiB" for r, ms, mib in f.ranks
            )
        )
    return " · ".join(parts)


def eval_line(rec: dict, gate: dict | None, best: float | None) -> str:
    line = "eval  " + summary_line(replace(rec["figures"], val_loss=rec.get("val_loss")))
    metrics = rec.get("metrics") or {}
    thresholds = (gate or {}).get("thresholds") or {}
    parts = []
    for k, v in metrics.items():
        th = thresholds.get(k)
        if isinstance(th, int | float) and isinstance(v, int | float):
            parts.append(f"{k} {v:.3f}/{th:g} {'✓' if v >= th else '✗'}")
        elif isinstance(v, int | float):
            parts.append(f"{k} {v:.3f}")
    if parts:
        line += " · " + ", ".join(parts)
    if best is not None:
        line += f" · best val {best:.4f}"
    if isinstance(rec.get("seconds"), int | float):  # older runs do not time their evals
        line += f" · took {fmt_estimate(rec['seconds'])}"
    return line


def final_table(v: RunView) -> Table:
    title = Text(clean(f"run {v.run_id}"))
    t = Table(box=box.SIMPLE_HEAD, show_header=False, title=title, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k, text in final_rows(v):
        t.add_row(k, Text(clean(text)))
    return t


# -----------------------------------------------------------------------------
# the printer


class HeadlessPrinter:
    """Prints what is due of a run model, from the same frozen RunView the TUI draws."""

    def __init__(
        self,
        model: RunModel,
        out: TextIO | None = None,
        tty: bool | None = None,
        every_s: float = 10.0,
    ):
        self.m, self.every_s = model, every_s
        self.views = ViewBuilder()
        out = out or sys.stdout
        self.tty = out.isatty() if tty is None else tty
        self.console = Console(file=out, force_terminal=self.tty, soft_wrap=True, highlight=False)
        self._next_line = 0.0
        self._evals = self._alerts = 0
        self._ckpts: set[str] = set()
        self._bad: set[str] = set()
        self._phase: str | None = None
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def say(self, text: str) -> None:
        """One line, as text: no markup, no emoji codes, control characters shown."""
        self.console.print(Text(clean(text)))

    def update(self, now: float | None = None) -> RunView:
        """Print whatever is due. Cheap when nothing is."""
        now = now or time.time()
        v = self.views.build(self.m, now)
        f, ph = v.figures, v.phase
        if (
            ph
            and v.status == "starting"
            and (ph.get("name") != self._phase or now >= self._next_line)
        ):
            # long work before the first step (tokenizing, preparing data) shows progress too
            self._phase, self._next_line = ph.get("name"), now + self.every_s
            done, total = ph.get("done"), ph.get("total")
            pct = f" ({100 * done / total:.0f}%)" if done is not None and total else ""
            self.say(f"phase {self._phase} {fmt_num(done, ',.0f')}/{fmt_num(total, ',.0f')}{pct}")
        for rec in v.evals[max(0, len(v.evals) - (v.n_evals - self._evals)) :]:
            self.say(eval_line(rec, v.gate, rec.get("best_val")))
        self._evals = v.n_evals
        for a in [a for a in v.alerts if a.seq > self._alerts]:
            self.say(f"ALERT {a.level} {a.code}: {a.message}")
            if a.detail:  # a log's end holds the news; a stack dump's head (the innermost frames)
                lines = a.detail.rstrip().splitlines()
                for line in lines[:60] if a.code == "stack_dump" else lines[-60:]:
                    self.say(f"  | {line}")
        self._alerts = v.n_alerts
        for c in v.checkpoints:
            if c.name not in self._ckpts:
                self._ckpts.add(c.name)
                self.say(
                    f"checkpoint {c.name} · step {c.step} · {fmt_bytes(c.bytes)} · "
                    f"{', '.join(c.tags) or '-'}"
                )
            if c.verified is False and c.name not in self._bad:
                self._bad.add(c.name)
                self.say(f"checkpoint {c.name} INVALID: {c.why}")
        if not v.ended and now >= self._next_line and f.step > 0:
            self._next_line = now + self.every_s
            self.say(summary_line(f))
        if self.tty:
            self._bar(f)
        return v

    def _bar(self, f: Figures) -> None:
        if self._progress is None:
            if not f.total_steps:
                return
            self._progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[extra]}", markup=False),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._tasks["run"] = self._progress.add_task("steps", total=f.total_steps, extra="")
            if f.steps_per_epoch:
                self._tasks["epoch"] = self._progress.add_task(
                    "epoch", total=f.steps_per_epoch, extra=""
                )
        p, spe = self._progress, f.steps_per_epoch
        p.update(
            self._tasks["run"],
            completed=f.step,
            extra=f"loss {fmt_num(f.loss)} · ETA {fmt_duration(f.eta_s)}",
        )
        if "epoch" in self._tasks and spe:
            p.update(
                self._tasks["epoch"],
                description=f"epoch {f.epoch + 1}/{f.total_epochs}",
                completed=min(spe, max(0, f.step - f.epoch * spe)),
                extra=f"{fmt_rate(f.tokens_per_s)} tok/s",
            )

    def close(self) -> None:
        """Give the terminal back (cursor shown) whatever happened."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def finish(self) -> None:
        v = self.update()
        self.close()
        if self.tty:
            self.console.print(final_table(v))
        else:
            self.say(f"run {v.run_id}")
            for k, text in final_rows(v):
                self.say(f"  {k:<12} {text}")
