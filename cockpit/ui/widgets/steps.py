"""What the pre-flight screen shows for a checklist step and for the summary:
Rich renderables built from StepResults the screen already holds (formatting
only; the checks ran elsewhere)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from cockpit.checks.engine import StepResult
from cockpit.fmt import STEP_ICONS, STEP_STYLES, fmt_figure

MAX_FINDINGS_SHOWN = 50


def step_view(r: StepResult, fix: str | None) -> Group:
    """Title, status, message, the fix, figures and (masked) findings of one step."""
    parts: list = [
        Text(r.title, style="bold"),
        Text(f"{STEP_ICONS[r.status]} {r.status}", style=STEP_STYLES.get(r.status, "")),
    ]
    if r.message:
        parts.append(Text(r.message))
    if r.status in ("FAIL", "WARN") and fix:
        parts.append(Text(f"fix: {fix}", style="italic"))
    if r.fixed:
        parts.append(Text(f"fixed: {r.fixed.get('path')}", style="green"))
    if r.figures:
        ft = Table.grid(padding=(0, 2))
        for k, v in r.figures.items():
            ft.add_row(Text(k, style="dim"), fmt_figure(v))
        parts += [Text(""), ft]
    if r.findings:
        t = Table("where", "kind", "line (masked)", box=None, padding=(0, 1))
        for f in r.findings[:MAX_FINDINGS_SHOWN]:
            t.add_row(f"{f['file']}:{f['line']}", f["kind"], Text(str(f["preview"])))
        more = len(r.findings) - MAX_FINDINGS_SHOWN
        parts += [Text(""), t] + ([Text(f"… {more} more")] if more > 0 else [])
    return Group(*parts)


def summary_view(
    summary: list[tuple[str, str]],
    steps: list[StepResult],
    failed: str | None,
    unaccepted_warns: list[str],
    will_launch: bool,
):
    """Seed 003_ step 6's table, what Confirm needs, and every step's one line."""
    if not summary:
        return Text(f"no summary: `{failed}` failed" if failed else "not run yet", style="dim")
    t = Table.grid(padding=(0, 2))
    for label, value in summary:
        t.add_row(Text(label, style="bold"), Text(value))
    tail = Text("")
    if will_launch and unaccepted_warns:
        what = ", ".join(unaccepted_warns)
        tail = Text(f"accept the WARN of {what} (a) before Confirm", style="yellow")
    elif will_launch:
        tail = Text("Confirm (c) launches it; the monitor takes over", style="green")
    lines = Table.grid(padding=(0, 1))
    for r in steps:
        style = STEP_STYLES.get(r.status, "")
        lines.add_row(Text(STEP_ICONS[r.status], style=style), Text(r.id, style="bold"), r.message)
    return Group(
        Text("Summary (seed 003_ step 6)", style="bold"),
        Text(""),
        t,
        Text(""),
        tail,
        Text(""),
        lines,
    )
