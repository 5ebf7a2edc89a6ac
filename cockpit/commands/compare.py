"""`cockpit compare RUN RUN [RUN ...]`: up to 8 runs side by side. On a terminal, the
compare screen (their loss curves overlaid, their figures in a table, live runs
moving); otherwise, or with --headless, the figures table as plain text, with the
settings that differ between the runs."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cockpit.commands.follow import use_tui
from cockpit.fmt import clean
from cockpit.model.compare import run_config
from cockpit.model.runs import resolve
from cockpit.ui.comparefeed import MAX_RUNS

if TYPE_CHECKING:
    from argparse import Namespace


def cmd_compare(args: Namespace) -> int:
    logs = Path(args.logs)
    if not 2 <= len(args.runs) <= MAX_RUNS:
        print(f"error: compare takes 2 to {MAX_RUNS} runs, not {len(args.runs)}", file=sys.stderr)
        return 2
    runs: list[Path] = []
    for arg in args.runs:
        d = resolve(arg, logs)
        if d is None or not (d / "events.jsonl").exists():
            print(
                f"error: {arg} is not a run directory with events.jsonl, nor a run id under "
                f"{logs}/; `cockpit runs` lists them",
                file=sys.stderr,
            )
            return 2
        runs.append(d)
    if use_tui(args):
        from cockpit.ui.app import CockpitApp
        from cockpit.ui.screens.compare import CompareScreen

        app = CockpitApp("compare", logs=logs, screens={"compare": lambda: CompareScreen(runs)})
        app.run()
        return 0
    print(text_table(runs))
    return 0


def text_table(runs: list[Path]) -> str:
    """Each run read once (as it is now), its figures a row; then the settings that differ."""
    from cockpit.ui.pump import load_view
    from cockpit.ui.screens.compare import FIGURES, figures_table, table_text

    views = [load_view(d) for d in runs]
    configs = [run_config(d, v.info) for d, v in zip(runs, views, strict=True)]
    columns, rows = figures_table(views, configs)
    out = [table_text(columns, rows)]
    if len(columns) > len(FIGURES):
        differ = ", ".join(clean(c) for c in columns[len(FIGURES) :])  # names from run.yaml
        out.append(f"(settings that differ: {differ}; ★ best of its column)")
    else:
        out.append("(no setting differs between these runs; ★ best of its column)")
    out.append(time.strftime("as of %Y-%m-%d %H:%M:%S"))
    return "\n".join(out)
