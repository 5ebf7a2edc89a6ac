"""`cockpit preflight`: run a checklist for a profile and show its results — a
table when a person reads them, one JSON object for scripts. `cockpit run` runs
the same printed pre-flight before it launches (run_printed).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cockpit.checks.base import Context
from cockpit.checks.engine import Checklist, StepResult, overall, run_checklist
from cockpit.checks.preflight import prepare, summary_rows, to_json
from cockpit.checks.registry import all_kinds
from cockpit.fmt import STEP_ICONS, STEP_STYLES, clean
from cockpit.ui.app import run_wizard
from core.config import ProfileError

if TYPE_CHECKING:
    from argparse import Namespace

# -----------------------------------------------------------------------------
# printing: what a checklist, a data file or a profile says is text, never markup


def text(s: object, style: str = "") -> Text:
    return Text(clean(str(s)), style=style)


def run_printed(cl: Checklist, ctx: Context, fix: bool = False) -> list[StepResult]:
    """Run with a progress bar on a terminal (stderr), then print the results table."""
    err = Console(stderr=True, highlight=False)
    if not err.is_terminal:
        results = run_checklist(cl, ctx, fix=fix)
    else:
        with Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("pre-flight", total=None)

            def update(r: StepResult) -> None:
                done, total = r.progress or (0, None)
                desc = clean(f"{r.id}: {r.status.lower()}")
                bar.update(task, description=desc, completed=done, total=total)

            results = run_checklist(cl, ctx, update, fix=fix)
    print_results(cl, ctx, results)
    return results


def print_results(cl: Checklist, ctx: Context, results: list[StepResult]) -> None:
    con = Console(highlight=False)
    status = overall(results)
    t = Table(
        title=text(f"pre-flight: {cl.name} for {ctx.profile.name} — {status}"),
        title_justify="left",
    )
    for col in ("", "step", "status", "message"):
        t.add_column(col)
    for r in results:
        row = (STEP_ICONS[r.status], r.id, r.status, r.message)
        t.add_row(*map(text, row), style=STEP_STYLES.get(r.status))
    con.print(t)
    for r in results:
        for fnd in r.findings[:10]:
            con.print(
                text(f"  {r.id}: {fnd['file']}:{fnd['line']} {fnd['kind']}: {fnd['preview']}")
            )
        if len(r.findings) > 10:
            con.print(text(f"  {r.id}: … and {len(r.findings) - 10} more (--json lists them)"))
        if r.fixed:
            con.print(text(f"  {r.id}: fixed: {r.fixed['path']}"))
    kinds = all_kinds()
    for spec, r in zip(cl.steps, results, strict=True):
        if r.status != "FAIL":
            continue
        auto = spec.check in kinds and kinds[spec.check].fixer is not None
        fix = spec.fix or "see the message above"
        if auto and "--fix" not in fix:
            fix += " (--fix applies it)"
        con.print(text(f"fix for {r.id}: {fix}"))
    if status != "FAIL":
        s = Table(show_header=False, box=None, title="summary", title_justify="left")
        for label, value in summary_rows(ctx):
            s.add_row(text(label), text(value))
        con.print(s)


# -----------------------------------------------------------------------------
# the screen (the TUI), and the command


def cmd_preflight(args: Namespace) -> int:
    try:
        cl, ctx = prepare(args.profile, args.set, args.checklist)
        ctx.gpus = getattr(args, "gpus", None)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.fix and not (args.yes or args.json):
        print(
            "error: --fix applies fixes without asking: give it with --yes or --json",
            file=sys.stderr,
        )
        return 2
    if not args.yes and not args.json and sys.stdout.isatty():
        return run_wizard(cl, ctx)
    if args.json:
        results = run_checklist(cl, ctx, fix=args.fix)
        print(json.dumps(to_json(ctx, results), indent=1, allow_nan=False))
    else:
        results = run_printed(cl, ctx, fix=args.fix)
    return 1 if overall(results) == "FAIL" else 0
