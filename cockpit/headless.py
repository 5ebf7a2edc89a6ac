"""The headless display: a run model as lines of text, for ssh, nohup, CI and
log files (seed 002_: "a progress bar per epoch + one-line epoch summary").

Not a terminal: plain lines with no ANSI codes, one every `every_s` seconds and
one per eval, plus alerts and checkpoints as they happen. A terminal: the same
lines above a Rich progress bar for the steps and the current epoch. The
printer only reads the model; it never samples, reads files or signals.
"""

from __future__ import annotations

import math
import sys
import time

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from cockpit.runmodel import ENDED, RunModel

# -----------------------------------------------------------------------------
# formatting (pure; the TUI uses these too)


def fmt_num(x: float | None, spec: str = ".4f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–" if x is None else str(x)
    return format(x, spec)


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def fmt_duration(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def summary_line(f: dict) -> str:
    """One line: step/total, epoch, loss, val, lr, tok/s, ETA, RSS, GPU."""
    total = f.get("total_steps")
    step = f"step {f['step']}/{total}" if total else f"step {f['step']}"
    if total:
        step += f" ({100 * f['step'] / total:.0f}%)"
    te = f.get("total_epochs")
    epoch = f"epoch {f['epoch'] + 1}/{te}" if te else f"epoch {f['epoch'] + 1}"
    if f.get("gpu_available"):
        gpu = f"GPU {fmt_num(f.get('gpu_util_pct'), '.0f')}%"
    else:
        gpu = "no GPU" if f.get("gpu_available") is False else "GPU –"
    rss = f"RSS {fmt_num(f.get('rss_mib'), '.0f')} MiB"
    parts = [
        step,
        epoch,
        f"loss {fmt_num(f.get('loss'))}",
        f"val {fmt_num(f.get('val_loss'))}",
        f"lr {fmt_num(f.get('lr'), '.2e')}",
        f"{fmt_rate(f.get('tokens_per_s'))} tok/s",
        f"ETA {fmt_duration(f.get('eta_s'))}",
        rss,
        gpu,
    ]
    if f.get("ranks"):  # under torchrun: each rank's median step ms and memory
        parts.append(
            "ranks "
            + " ".join(
                f"r{r} {fmt_num(ms, '.0f')} ms/{fmt_num(mib, '.0f')} MiB"
                for r, ms, mib in f["ranks"]
            )
        )
    return " · ".join(parts)


def eval_line(rec: dict, gate: dict | None, best: float | None) -> str:
    line = "eval  " + summary_line(rec["figures"] | {"val_loss": rec.get("val_loss")})
    metrics = rec.get("metrics") or {}
    thresholds = (gate or {}).get("thresholds") or {}
    parts = []
    for k, v in metrics.items():
        if k in thresholds and isinstance(v, int | float):
            ok = "✓" if v >= thresholds[k] else "✗"
            parts.append(f"{k} {v:.3f}/{thresholds[k]:g} {ok}")
        elif isinstance(v, int | float):
            parts.append(f"{k} {v:.3f}")
    if parts:
        line += " · " + ", ".join(parts)
    if best is not None:
        line += f" · best val {best:.4f}"
    return line


def gate_text(m: RunModel) -> str:
    g = m.gate
    if not g:
        return "no gate" if not m.info else "not evaluated"
    metrics, th = g.get("metrics") or {}, g.get("thresholds") or {}
    figs = ", ".join(
        f"{k} {fmt_num(metrics.get(k), '.3f')} ≥ {v:g}" for k, v in th.items() if k in metrics
    )
    if m.gate_passed_step is not None:
        return f"passed at step {m.gate_passed_step}: {figs}"
    return f"not passed (step {g.get('step')}): {figs}"


def final_rows(m: RunModel) -> list[tuple[str, str]]:
    """The end-of-run summary: status, steps, best val, gate, wall time, checkpoints."""
    code = f" (exit {m.exit_code})" if m.exit_code is not None else ""
    rows = [("status", f"{m.status}{code}")]
    if m.run_end and m.run_end.get("reason"):
        rows.append(("reason", str(m.run_end["reason"])))
    rows += [
        ("steps", f"{m.step}/{m.total_steps}" if m.total_steps else str(m.step)),
        ("best val", fmt_num(m.best_val)),
        ("gate", gate_text(m)),
        ("wall time", fmt_duration(m.elapsed_s())),
    ]
    present = sorted((c for c in m.checkpoints.values() if c.present), key=lambda c: c.step)
    bad = [c for c in present if c.verified is False]
    ck = f"{len(present)}"
    if present:
        last = present[-1]
        ok = {True: ", verified", False: ", INVALID", None: ""}[last.verified]
        ck += f", newest {last.name} ({last.bytes / 2**20:.1f} MiB, {', '.join(last.tags) or '-'}{ok})"
    if bad:
        ck += f"; {len(bad)} INVALID: {bad[0].name}: {bad[0].why}"
    rows.append(("checkpoints", ck))
    rows.append(("alerts", ", ".join(sorted({a.code for a in m.alerts})) or "none"))
    if m.run_dir is not None:
        rows.append(("run dir", str(m.run_dir)))
    return rows


def final_table(m: RunModel) -> Table:
    t = Table(box=box.SIMPLE_HEAD, show_header=False, title=f"run {m.run_id}", title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k, v in final_rows(m):
        t.add_row(k, v)
    return t


# -----------------------------------------------------------------------------
# the printer


class HeadlessPrinter:
    def __init__(self, model: RunModel, out=None, tty: bool | None = None, every_s: float = 10.0):
        self.m, self.every_s = model, every_s
        out = out or sys.stdout
        self.tty = out.isatty() if tty is None else tty
        self.console = Console(file=out, force_terminal=self.tty, soft_wrap=True, highlight=False)
        self._next_line = 0.0
        self._evals = self._alerts = 0
        self._ckpts: set[str] = set()
        self._bad: set[str] = set()
        self._phase: str | None = None
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}

    def say(self, text: str) -> None:
        self.console.print(text, markup=False)

    def update(self, now: float | None = None) -> None:
        """Print whatever is due. Cheap when nothing is."""
        m, now = self.m, now or time.time()
        ph = m.phase
        if (
            ph
            and m.status == "starting"
            and (ph.get("name") != self._phase or now >= self._next_line)
        ):
            # long work before the first step (tokenizing, preparing data) shows progress too
            self._phase, self._next_line = ph.get("name"), now + self.every_s
            done, total = ph.get("done"), ph.get("total")
            pct = f" ({100 * done / total:.0f}%)" if done is not None and total else ""
            self.say(f"phase {self._phase} {fmt_num(done, ',.0f')}/{fmt_num(total, ',.0f')}{pct}")
        for rec in list(m.evals)[max(0, len(m.evals) - (m.n_evals - self._evals)) :]:
            self.say(eval_line(rec, m.gate, rec.get("best_val")))
        self._evals = m.n_evals
        for a in [a for a in m.alerts if a.seq > self._alerts]:
            self.say(f"ALERT {a.level} {a.code}: {a.message}")
            if a.detail:
                for line in a.detail.rstrip().splitlines()[-60:]:
                    self.say(f"  | {line}")
        self._alerts = m.n_alerts
        for c in sorted(m.checkpoints.values(), key=lambda c: c.step):
            if c.name not in self._ckpts:
                self._ckpts.add(c.name)
                self.say(
                    f"checkpoint {c.name} · step {c.step} · {c.bytes / 2**20:.1f} MiB · "
                    f"{', '.join(c.tags) or '-'}"
                )
            if c.verified is False and c.name not in self._bad:
                self._bad.add(c.name)
                self.say(f"checkpoint {c.name} INVALID: {c.why}")
        if m.status not in ENDED and now >= self._next_line and m.step > 0:
            self._next_line = now + self.every_s
            self.say(summary_line(m.figures()))
        if self.tty:
            self._bar()

    def _bar(self) -> None:
        m = self.m
        if self._progress is None:
            if not m.total_steps:
                return
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[extra]}"),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._tasks["run"] = self._progress.add_task("steps", total=m.total_steps, extra="")
            if m.steps_per_epoch():
                self._tasks["epoch"] = self._progress.add_task(
                    "epoch", total=m.steps_per_epoch(), extra=""
                )
        p, spe = self._progress, m.steps_per_epoch()
        f = m.figures()
        p.update(
            self._tasks["run"],
            completed=m.step,
            extra=f"loss {fmt_num(f['loss'])} · ETA {fmt_duration(f['eta_s'])}",
        )
        if "epoch" in self._tasks and spe:
            te = m.total_epochs
            p.update(
                self._tasks["epoch"],
                description=f"epoch {m.epoch + 1}/{te}",
                completed=min(spe, max(0, m.step - m.epoch * spe)),
                extra=f"{fmt_rate(f['tokens_per_s'])} tok/s",
            )

    def close(self) -> None:
        """Give the terminal back (cursor shown) whatever happened."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def finish(self) -> None:
        self.update()
        self.close()
        if self.tty:
            self.console.print(final_table(self.m))
        else:
            self.say(f"run {self.m.run_id}")
            for k, v in final_rows(self.m):
                self.say(f"  {k:<12} {v}")
