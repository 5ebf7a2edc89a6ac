"""How the cockpit writes a figure, once for every display: numbers, rates,
durations, ages, sizes, counts, step statuses and their icons and styles, and the
run's end-of-run rows. The TUI's widgets, the headless printer, the commands and
the pre-flight summary all format through here, so a duration reads the same
wherever it is shown.

Pure functions of values; imports nothing of the cockpit but the run model's
statuses and the view's types. A value that is unknown is written "–".

Text that comes from outside (a trainer's stdout, its events, a data file, a
checklist) goes through clean() before any display shows it: control characters
become visible placeholders, so no escape sequence reaches a terminal.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from cockpit.model.runmodel import OK_STATUSES
from core.energy import summary_line

if TYPE_CHECKING:  # types only: the view imports nothing of this module
    from cockpit.model.view import RunView

UNKNOWN = "–"
MIB = 2**20

# -----------------------------------------------------------------------------
# foreign text

# C0 controls but tab, DEL, C1 controls, and lone surrogates (from a JSON "\\ud800" or
# a surrogateescape decode: they cannot be encoded, so a print of them raises)
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
# C0 and DEL as their Unicode control pictures (NUL -> ␀, ESC -> ␛, DEL -> ␡): one
# cell wide like the character they stand for, so columns stay aligned, and they
# say which control it was (U+FFFD would not; `^[` takes two cells). C1 controls
# have no pictures, and a surrogate is no character: both become U+FFFD.
_PICTURES = {c: chr(0x2400 + c) for c in range(0x20)} | {0x7F: "\u2421"}


def _picture(m: re.Match) -> str:
    return _PICTURES.get(ord(m[0]), "\ufffd")


def clean(text: str, newlines: bool = False) -> str:
    """Foreign text made safe to display: every control character but tab (and the
    newline, with `newlines`) replaced by a visible placeholder, lone surrogates by
    U+FFFD. Display it as plain text (Text/Content), never as markup."""
    if not isinstance(text, str):
        text = str(text)
    if _CONTROL.search(text) is None:
        return text
    if newlines:
        return "\n".join(_CONTROL.sub(_picture, x) for x in text.split("\n"))
    return _CONTROL.sub(_picture, text)


# -----------------------------------------------------------------------------
# numbers


def fmt_num(x: float | None, spec: str = ".4f") -> str:
    """A number in a format spec; NaN and Inf are written as Python writes them."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return UNKNOWN if x is None else str(x)
    return format(x, spec)


def fmt_sig(x: float | None, digits: int = 4) -> str:
    """A number in `digits` significant figures, as short as it reads."""
    if x is None:
        return UNKNOWN
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{max(1, digits - 2)}e}"
    return f"{x:.{digits}g}"


def fmt_rate(x: float | None) -> str:
    """A rate per second: 950, 28.1k, 1.25M."""
    if x is None:
        return UNKNOWN
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def fmt_count(x: float | None) -> str:
    """A count: 1234 -> 1.2k, 3_400_000 -> 3.4M (steps, tokens)."""
    if x is None:
        return UNKNOWN
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


def fmt_pct(x: Any) -> str:
    return f"{x:.0f}%" if isinstance(x, int | float) else UNKNOWN


def fmt_figure(v: Any) -> str:
    """A checklist step's figure of any type: 1,234 / 0.4812 / a, b / k v."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:,.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt_figure(x)}" for k, x in v.items()) or UNKNOWN
    if isinstance(v, list):
        return ", ".join(fmt_figure(x) for x in v) or UNKNOWN
    return UNKNOWN if v is None else str(v)


# -----------------------------------------------------------------------------
# time


def fmt_duration(s: float | None) -> str:
    """A clock duration: 0:52, 15:33, 2:04:09 (elapsed, ETA, wall time)."""
    if s is None or not math.isfinite(s):
        return UNKNOWN
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def fmt_estimate(s: float | None) -> str:
    """An estimate in words of hours and minutes: 45s, 4m36s, 2h05m."""
    if s is None or not math.isfinite(s):
        return UNKNOWN
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def fmt_seconds(s: float | None) -> str:
    """A short span to a precision that shows a pause: 0.012s, 0.35s, 2.1s, 48s."""
    if s is None or not math.isfinite(s):
        return UNKNOWN
    s = max(0.0, s)
    if s < 0.1:
        return f"{s:.3f}s"
    if s < 10:
        return f"{s:.2f}s" if s < 1 else f"{s:.1f}s"
    return f"{s:.0f}s"


def fmt_age(s: float | None) -> str:
    """How long ago, in one short unit: 5s, 3m, 1.2h, 2.0d."""
    if s is None or not math.isfinite(s):
        return UNKNOWN
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


# -----------------------------------------------------------------------------
# sizes


def fmt_mib(x: float | None) -> str:
    """A size given in MiB, in the unit that reads best: 512 KiB, 404 MiB, 1.5 GiB."""
    if x is None:
        return UNKNOWN
    if abs(x) >= 1024:
        return f"{x / 1024:.1f} GiB"
    return f"{x:.0f} MiB" if abs(x) >= 1 or x == 0 else f"{x * 1024:.0f} KiB"


def fmt_bytes(b: float | None) -> str:
    """A size given in bytes (a file, a checkpoint): 4.7 MiB, 1.2 GiB."""
    if b is None:
        return UNKNOWN
    if abs(b) >= 1024 * MIB:
        return f"{b / 1024 / MIB:.1f} GiB"
    return f"{b / MIB:.1f} MiB"


def fmt_mib_short(x: float | None) -> str:
    """A size in MiB in three or four characters, for narrow columns: 404M, 1.5G."""
    if x is None:
        return UNKNOWN
    return f"{x / 1024:.1f}G" if x >= 1024 else f"{x:.0f}M"


# -----------------------------------------------------------------------------
# statuses: of checklist steps, and of runs


STEP_ICONS = {"PASS": "✓", "WARN": "!", "FAIL": "✗", "SKIP": "-", "RUNNING": "…", "PENDING": " "}
# Rich style names (the printed tables and the pre-flight screen's renderables)
STEP_STYLES = {
    "PASS": "green",
    "WARN": "yellow",
    "FAIL": "bold red",
    "SKIP": "dim",
    "RUNNING": "cyan",
}

# a run status's tone: what a display colours it by (the TUI maps tones to theme colours)
RUN_TONES = {
    "running": "ok",
    "live": "ok",
    "interrupted": "warn",
    "failed": "error",
    "diverged": "error",
    **{s: "done" for s in OK_STATUSES},
}
RUN_MARKS = {"live": "●", "starting": "◌", "interrupted": "‖", "failed": "✗", "diverged": "✗"}


def run_tone(status: str) -> str:
    """ok | done | warn | error | plain."""
    return RUN_TONES.get(status, "plain")


def run_mark(status: str) -> str:
    return "✓" if status in OK_STATUSES else RUN_MARKS.get(status, "·")


# -----------------------------------------------------------------------------
# the run's gate and end-of-run rows (the TUI's farewell and the headless table)


def gate_text(v: RunView) -> str:
    g = v.gate
    if not g:
        return "no gate" if not v.info else "not evaluated"
    metrics, th = g.get("metrics") or {}, g.get("thresholds") or {}
    figs = ", ".join(
        f"{k} {fmt_num(metrics.get(k), '.3f')} ≥ {fmt_num(t, 'g')}"
        for k, t in th.items()
        if k in metrics
    )
    if v.gate_passed_step is not None:
        return f"passed at step {v.gate_passed_step}: {figs}"
    return f"not passed (step {g.get('step')}): {figs}"


def final_rows(v: RunView) -> list[tuple[str, str]]:
    """The end-of-run summary: status, steps, best val, gate, wall time, checkpoints."""
    f = v.figures
    code = f" (exit {v.exit_code})" if v.exit_code is not None else ""
    rows = [("status", f"{v.status}{code}")]
    if v.run_end and v.run_end.get("reason"):
        rows.append(("reason", str(v.run_end["reason"])))
    rows += [
        ("steps", f"{f.step}/{f.total_steps}" if f.total_steps else str(f.step)),
        ("best val", fmt_num(v.best_val)),
        ("gate", gate_text(v)),
        ("wall time", fmt_duration(v.elapsed_s)),
    ]
    present = [c for c in v.checkpoints if c.present]
    bad = [c for c in present if c.verified is False]
    ck = f"{len(present)}"
    if present:
        last = present[-1]
        ok = {True: ", verified", False: ", INVALID", None: ""}[last.verified]
        ck += f", newest {last.name} ({fmt_bytes(last.bytes)}, {', '.join(last.tags) or '-'}{ok})"
    if bad:
        ck += f"; {len(bad)} INVALID: {bad[0].name}: {bad[0].why}"
    rows.append(("checkpoints", ck))
    if v.energy:
        rows.append(("energy", clean(summary_line(v.energy))))
    rows.append(("alerts", ", ".join(sorted({a.code for a in v.alerts})) or "none"))
    if v.run_dir is not None:
        rows.append(("run dir", str(v.run_dir)))
    return rows
