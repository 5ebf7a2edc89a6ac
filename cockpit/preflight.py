"""`cockpit preflight --yes [--json]`: run a checklist without questions and
print its results (Rich when a person reads them, one JSON object for
scripts). The interactive pre-flight screen will drive the same engine."""

from __future__ import annotations

import json
import sys

from cockpit.checklist import load_checklist, overall, run_checklist
from cockpit.checks import Context
from core.config import ProfileError, load_profile

ICONS = {"PASS": "✓", "WARN": "!", "FAIL": "✗", "SKIP": "-", "RUNNING": "…", "PENDING": " "}
STYLES = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


def cmd_preflight(args) -> int:
    try:
        p = load_profile(args.profile, args.set)
        cl = load_checklist(args.checklist or p.checklist)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.yes and not args.json:
        print(
            "cockpit: the interactive pre-flight screen comes with the TUI; running with --yes",
            file=sys.stderr,
        )
    results = run_checklist(cl, Context(profile=p))
    status = overall(results)
    if args.json:
        out = {"profile": p.name, "status": status, "steps": [r.to_dict() for r in results]}
        print(json.dumps(out, indent=1, allow_nan=False))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(
            title=f"pre-flight: {cl.name} for profile {p.name} — {status}", title_justify="left"
        )
        for col in ("", "step", "status", "message"):
            t.add_column(col)
        for r in results:
            t.add_row(ICONS[r.status], r.id, r.status, r.message, style=STYLES.get(r.status))
        Console(highlight=False).print(t)
        for spec, r in zip(cl.steps, results, strict=True):
            if r.status == "FAIL" and spec.fix:
                print(f"fix for {r.id}: {spec.fix}")
    return 1 if status == "FAIL" else 0
