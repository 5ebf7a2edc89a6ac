"""What the pre-flight screen shows for a checklist step and for the summary:
Rich renderables built from StepResults the screen already holds (formatting
only; the checks ran elsewhere). What a step says (its message, a finding's
file and line, a figure) is Text, never markup, with controls shown (clean)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from cockpit.checks.engine import StepResult
from cockpit.fmt import STEP_ICONS, STEP_STYLES, clean, fmt_figure

MAX_FINDINGS_SHOWN = 50


def text(s: object, style: str = "") -> Text:
    return Text(clean(str(s)), style=style)


def kv_grid(rows: list[tuple[str, str]], label_style: str) -> Table:
    """Labels and values in two aligned columns. Each label is padded to the column
    and followed by the gap in its own style, so no value's text starts with spaces
    (a renderer that trims those would run the label into the value)."""
    width = max((len(k) for k, _ in rows), default=0)
    t = Table.grid(padding=0)
    for k, v in rows:
        t.add_row(text(k.ljust(width) + "  ", label_style), text(v))
    return t


def step_view(r: StepResult, fix: str | None) -> Group:
    """Title, status, message, the fix, figures and (masked) findings of one step."""
    parts: list = [
        text(r.title, "bold"),
        Text(f"{STEP_ICONS[r.status]} {r.status}", style=STEP_STYLES.get(r.status, "")),
    ]
    if r.message:
        parts.append(text(r.message))
    if r.status in ("FAIL", "WARN") and fix:
        parts.append(text(f"fix: {fix}", "italic"))
    if r.fixed:
        parts.append(text(f"fixed: {r.fixed.get('path')}", "green"))
    if r.figures:
        parts += [Text(""), kv_grid([(k, fmt_figure(v)) for k, v in r.figures.items()], "dim")]
    if r.findings:
        t = Table("where", "kind", "line (masked)", box=None, padding=(0, 1))
        for f in r.findings[:MAX_FINDINGS_SHOWN]:
            t.add_row(text(f"{f['file']}:{f['line']}"), text(f["kind"]), text(f["preview"]))
        more = len(r.findings) - MAX_FINDINGS_SHOWN
        parts += [Text(""), t] + ([Text(f"… {more} more")] if more > 0 else [])
    return Group(*parts)


def summary_view(
    summary: list[tuple[str, str]],
    steps: list[StepResult],
    failed: str | None,
    unaccepted_warns: list[str],
    will_launch: bool,
) -> Text | Group:
    """The summary to read before launching (dataset, tokenizer, model, param/token,
    epochs, time, memory, the command), what Confirm needs, and every step's line."""
    if not summary:
        return text(f"no summary: `{failed}` failed" if failed else "not run yet", "dim")
    t = kv_grid(summary, "bold")
    tail = Text("")
    if will_launch and unaccepted_warns:
        what = ", ".join(unaccepted_warns)
        tail = text(f"accept the WARN of {what} (a) before Confirm", "yellow")
    elif will_launch:
        tail = Text("Confirm (c) launches it; the monitor takes over", style="green")
    width = max((len(r.id) for r in steps), default=0)
    lines = Table.grid(padding=0)
    for r in steps:
        style = STEP_STYLES.get(r.status, "")
        lines.add_row(
            Text(STEP_ICONS[r.status] + " ", style=style),
            text(r.id.ljust(width) + " ", "bold"),
            text(r.message),
        )
    return Group(
        Text("Summary", style="bold"),
        Text(""),
        t,
        Text(""),
        tail,
        Text(""),
        lines,
    )
