"""`cockpit runs`: every run under logs/ with its status, as a screen or a table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from cockpit.commands.follow import use_tui
from cockpit.fmt import clean, fmt_duration, fmt_num, fmt_sig
from cockpit.model.runs import list_runs
from cockpit.ui.app import run_tui

if TYPE_CHECKING:
    from argparse import Namespace


def cmd_runs(args: Namespace) -> int:
    if use_tui(args):
        return run_tui("runs", logs=Path(args.logs))
    rows = list_runs(Path(args.logs))
    if not rows:
        print(f"no runs under {args.logs}/ yet; start one with: cockpit run")
        return 0
    head = f"{'run':<40} {'profile':<14} {'status':<13} {'step':>13} {'best val':>9} {'gate':<10} {'started':<16} {'wall':>8} {'kWh':>8}"
    print(head)
    for r in rows:
        step = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "–"
        # names and statuses come from the runs' own files: controls shown, not sent
        print(
            clean(
                f"{r.run_id:<40} {r.profile:<14} {r.status:<13} {step:>13} {fmt_num(r.best_val):>9} "
                f"{r.gate:<10} {started:<16} {fmt_duration(r.wall_s):>8} {fmt_sig(r.energy_kwh, 3):>8}"
            )
        )
    return 0
