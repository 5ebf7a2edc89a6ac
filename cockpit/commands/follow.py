"""What the commands that follow a run share: Ctrl+C counted by a handler and
acted on by the loop, the replay-then-follow loop of the headless display, the
choice between the TUI and plain lines, and --health parsing."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cockpit.model.health import HealthConfig
from cockpit.model.runmodel import status_code
from cockpit.model.runs import resolve
from cockpit.notify import describe, session_kwargs
from cockpit.session import Session
from cockpit.userconfig import UserConfigError, load_user_config
from core.energy import PRICE_ENV

if TYPE_CHECKING:
    from argparse import Namespace

    from cockpit.headless import HeadlessPrinter

HARD_KILL_WINDOW_S = 3.0
# The headless loop's pace, whatever the event rate. Lines every few seconds need no
# change notification: sleeping between ticks is what keeps the trainer's cores free.
TICK_S = 0.5


def run_dir_or_say(run: str | None) -> Path | None:
    """The run a command names (a directory, a run id under logs/, or latest); None,
    after saying why on stderr, when there is none."""
    run_dir = resolve(run)
    if run_dir is None:
        what = (
            "no runs under logs/"
            if run in (None, "latest")
            else f"{run} is not a run directory, nor a run id under logs/"
        )
        print(f"error: {what}; `cockpit runs` lists them", file=sys.stderr)
    return run_dir


def extras(args: Namespace) -> dict | None:
    """--notify, --notify-level, --price-kwh and the user config: the Session's extra
    keywords; None (after saying why) when one is bad. A price is passed on to the
    trainer we launch (its result.json and report.md show the cost)."""
    try:
        kw = session_kwargs(args.notify, args.notify_level, args.price_kwh, load_user_config())
    except (UserConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    if kw["price_kwh"] is not None:
        os.environ[PRICE_ENV] = repr(kw["price_kwh"])
    if (line := describe(kw)) is not None:
        print(line, file=sys.stderr)
    return kw


def parse_health(pairs: list[str]) -> HealthConfig | None:
    try:
        return HealthConfig.from_pairs(pairs)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


class Interrupts:
    """Counts Ctrl+C presses; the loop acts on them (a handler only records)."""

    def __init__(self) -> None:
        self.presses: list[float] = []
        self.handled = 0

    def install(self) -> None:
        signal.signal(signal.SIGINT, lambda s, f: self.presses.append(time.monotonic()))

    def take(self) -> list[float]:
        new = self.presses[self.handled :]
        self.handled = len(self.presses)
        return new


def follow(
    session: Session, printer: HeadlessPrinter, on_ctrl_c: Callable[[float], str]
) -> int | None:
    """Replay, then follow until the run ends (the exit code) or the user detaches (None)."""
    intr = Interrupts()
    intr.install()
    try:
        session.replay()
        printer.update()
        while not session.done():
            t0 = time.time()
            session.tick(t0)
            printer.update(t0)
            if any(on_ctrl_c(t) == "detach" for t in intr.take()):
                return None
            time.sleep(max(0.0, t0 + TICK_S - time.time()))
        if session.trainer is not None:
            session.trainer.wait(10)  # ours: reap it, for its exit code
        session.tick()
        session.settle()
        printer.finish()
    finally:
        printer.close()
        session.close()
    m = session.model
    return m.exit_code if m.exit_code is not None else status_code(m.status)


def use_tui(args: Namespace) -> bool:
    return not args.headless and sys.stdout.isatty()
