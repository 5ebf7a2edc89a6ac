"""`cockpit watch`: attach to a live run (its history first) or replay a finished
one, in the TUI or as plain lines; Ctrl+C only detaches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cockpit.commands.follow import extras, follow, parse_health, run_dir_or_say, use_tui
from cockpit.session import Session
from cockpit.supervisor import Trainer
from cockpit.ui.app import run_tui
from cockpit.wrap.state import STATE

if TYPE_CHECKING:
    from argparse import Namespace


def cmd_watch(args: Namespace) -> int:
    run_dir = run_dir_or_say(args.run)
    if run_dir is None:
        return 2
    health = parse_health(args.health)
    if health is None:
        return 2
    kw = extras(args)
    if kw is None:
        return 2
    trainer = Trainer.find(run_dir)
    adapting = None
    if (run_dir / STATE).exists():  # a wrapped run: go on turning its stdout into events
        from cockpit.wrap.wrapped import attach_wrapped  # here: the adapters load only for one

        adapting = attach_wrapped(run_dir, trainer)
    if adapting is not None:
        adapting.start()
    try:
        if use_tui(args):
            return run_tui("monitor", session=Session(run_dir, trainer, health, **kw))
        return _watch(args, Session(run_dir, trainer, health, notify=False, **kw))
    finally:
        if adapting is not None:
            adapting.stop()


def _watch(args: Namespace, session: Session) -> int:
    from cockpit.headless import HeadlessPrinter  # here: the TUI starts without it

    run_dir = session.run_dir
    printer = HeadlessPrinter(session.model, every_s=args.every)
    printer.say(f"cockpit: watching {run_dir}")
    if not (run_dir / "events.jsonl").exists():
        printer.say("cockpit: no events.jsonl yet; waiting for the trainer to write it")

    def on_ctrl_c(t: float) -> str:
        printer.say(f"cockpit: detached; the run goes on (re-attach: cockpit watch {run_dir})")
        return "detach"

    code = follow(session, printer, on_ctrl_c)
    return 130 if code is None else code
