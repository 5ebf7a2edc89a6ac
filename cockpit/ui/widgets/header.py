"""The top of the monitor: the run's identity and progress, and the newest alert."""

from __future__ import annotations

from cockpit.fmt import fmt_count, fmt_duration, run_tone
from cockpit.model.view import RunView
from cockpit.ui.widgets.base import (
    ACCENT,
    ERROR,
    LEVEL_STYLE,
    MUTED,
    OK,
    PRIMARY,
    WARN,
    Lines,
    Panel,
)

TONE_STYLE = {"ok": OK, "done": ACCENT, "warn": WARN, "error": ERROR, "plain": PRIMARY}


def status_style(v: RunView) -> str:
    return TONE_STYLE[run_tone(v.status)]


def status_text(v: RunView) -> str:
    s = v.status
    if v.exit_code is not None and v.ended:
        s += f" (exit {v.exit_code})"
    elif v.proc_alive is False and not v.ended:
        s += " (trainer gone)"
    if v.status == "starting" and v.phase:
        ph = v.phase
        done, total = ph.get("done"), ph.get("total")
        pct = f" {100 * done / total:.0f}%" if isinstance(done, int | float) and total else ""
        s += f": {ph.get('name')}{pct}"
    return s


def gate_short(v: RunView) -> tuple[str, str]:
    if v.gate_passed_step is not None:
        return f"gate ✓ passed at step {v.gate_passed_step}", OK
    if v.gate:
        return f"gate ✗ not passed (step {v.gate.get('step')})", WARN
    return "gate –", MUTED


def progress_parts(v: RunView) -> list[str]:
    f = v.figures
    step = f"step {f.step:,}/{f.total_steps:,}" if f.total_steps else f"step {f.step:,}"
    if f.total_steps:
        step += f" ({100 * f.step / f.total_steps:.0f}%)"
    te = f.total_epochs
    return [
        step,
        f"epoch {f.epoch + 1}/{te}" if te else f"epoch {f.epoch + 1}",
        f"elapsed {fmt_duration(v.elapsed_s)}",
        f"ETA {fmt_duration(f.eta_s)}",
        f"{fmt_count(f.tokens)} tokens",
    ]


class RunHeader(Panel):
    DEFAULT_CSS = "RunHeader { height: 2; }"

    def key(self, v: RunView) -> object:
        # elapsed moves with the clock while the run lives
        return (v.version, None if v.ended else int(v.now))

    def draw(self, v: RunView, out: Lines) -> None:
        load = f"  loading history {100 * v.loading:.0f}%…" if v.loading is not None else ""
        gate, gate_style = gate_short(v)
        out.line(
            (v.run_id or "?", "bold"),
            ("  " + (v.profile or "?") + "  ", MUTED),
            (status_text(v), "bold " + status_style(v)),
            ("  " + gate, gate_style),
            (load, WARN),
        )
        pid = f" · pid {v.pid}" if v.pid and v.proc_alive else ""
        out.line(" · ".join(progress_parts(v)) + pid)


class AlertBar(Panel):
    """The newest alert, coloured by level (and named, for NO_COLOR)."""

    DEFAULT_CSS = "AlertBar { height: 1; }"

    def key(self, v: RunView) -> object:
        return (v.n_alerts, v.malformed)

    _level: str | None = None

    def show(self, view: RunView, *, at_once: bool = False) -> bool:
        level = view.alerts[-1].level if view.alerts else None
        if level != self._level:  # a class change re-applies CSS: only when it changes
            self._level = level
            for lv in ("info", "warn", "error"):
                self.set_class(lv == level, f"-{lv}")
        return super().show(view, at_once=at_once)

    def draw(self, v: RunView, out: Lines) -> None:
        bad = f" · {v.malformed} malformed event lines skipped" if v.malformed else ""
        if not v.alerts:
            out.line(("no alerts" + bad, MUTED))
            return
        a = v.alerts[-1]
        more = f"  ({v.n_alerts} alert{'s' if v.n_alerts != 1 else ''} · a: all)"
        hint = " · d/a: stacks" if a.code in ("stall", "stack_dump") and a.detail else ""
        out.line(
            (f"{a.level.upper()} {a.code}: ", "bold " + LEVEL_STYLE.get(a.level, "")),
            a.message,
            (more + hint + bad, MUTED),
        )
