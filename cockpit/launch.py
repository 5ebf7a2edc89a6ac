"""`cockpit run`, `cockpit watch` and `cockpit runs` in headless mode: the
supervisor, a session and the headless printer wired together, with Ctrl+C
handled the way a user expects (first: stop gracefully; second within 3 s:
kill)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from cockpit.headless import HeadlessPrinter, fmt_duration, fmt_num
from cockpit.health import HealthConfig
from cockpit.runmodel import OK_STATUSES
from cockpit.runs import list_runs, resolve
from cockpit.session import Session
from cockpit.supervisor import Trainer, new_run_dir, trainer_command
from core.config import ProfileError, load_profile

HARD_KILL_WINDOW_S = 3.0
# The headless loop's pace, whatever the event rate. Lines every few seconds need no
# change notification: sleeping between ticks is what keeps the trainer's cores free.
TICK_S = 0.5


def _health(pairs: list[str]) -> HealthConfig | None:
    try:
        return HealthConfig.from_pairs(pairs)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def status_code(status: str) -> int:
    """The trainer's exit code for a run status, when nobody saw the process exit."""
    return 0 if status in OK_STATUSES else 130 if status == "interrupted" else 1


class _Interrupts:
    """Counts Ctrl+C presses; the loop acts on them (a handler only records)."""

    def __init__(self):
        self.presses: list[float] = []
        self.handled = 0

    def install(self) -> None:
        signal.signal(signal.SIGINT, lambda s, f: self.presses.append(time.monotonic()))

    def take(self) -> list[float]:
        new = self.presses[self.handled :]
        self.handled = len(self.presses)
        return new


def _follow(session: Session, printer: HeadlessPrinter, on_ctrl_c) -> int | None:
    """Replay, then follow until the run ends (the exit code) or the user detaches (None)."""
    intr = _Interrupts()
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


# -----------------------------------------------------------------------------
# commands


def _use_tui(args) -> bool:
    return not args.headless and sys.stdout.isatty()


def _preflight_printed(args):
    """The pre-flight without questions: (context, results), or an exit code."""
    from cockpit import preflight as pf

    try:
        cl, ctx = pf.prepare(args.profile, args.set, getattr(args, "checklist", None))
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = pf.run_printed(cl, ctx, fix=args.fix)
    if pf.overall(results) == "FAIL":
        print(
            "cockpit: pre-flight FAILED; nothing launched. Fix what it says "
            + ("(--fix applies the built-in fixes) " if not args.fix else "")
            + "and run again, or --skip-preflight to launch anyway.",
            file=sys.stderr,
        )
        return 1
    return ctx, results


def _launch(args, p, health, sets: list[str], checked=None, notify: bool = False) -> Session:
    """Make the run directory (with preflight.json), start the trainer, follow it."""
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(p.name)
    if checked is not None:
        from cockpit.preflight import save

        save(run_dir, *checked)
    n, nodes = getattr(args, "nproc_per_node", 1) or 1, getattr(args, "nnodes", 1) or 1
    if n > 1 or nodes > 1:  # DDP under torchrun (no launcher of our own)
        from cockpit.torchrun import torchrun_command

        cmd = torchrun_command(args.profile, run_dir, sets, n, nodes, args.torchrun_arg)
    else:
        cmd = trainer_command(args.profile, run_dir, sets)
    # the TUI repaints on change notification; the headless loop ticks at its own pace
    return Session(run_dir, Trainer.launch(cmd, run_dir), health, notify=notify)


def _postflight(args, session: Session) -> None:
    """Seed 000_'s checks on the finished run's best checkpoint; they never change the
    run's exit code."""
    if args.skip_postflight or session.model.status not in OK_STATUSES:
        return
    from cockpit.postflight_cmd import postflight_after_run

    print(f"cockpit: post-flight on {session.run_dir} (skip with --skip-postflight)", flush=True)
    postflight_after_run(session.run_dir)


def cmd_run(args) -> int:
    cmd = list(getattr(args, "cmd", None) or [])
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if cmd:
        return cmd_run_wrapped(args, cmd)
    try:
        p = load_profile(args.profile, args.set)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    health = _health(args.health)
    if health is None:
        return 2
    if args.skip_preflight:
        print(
            "cockpit: --skip-preflight: no data, secrets, sizing, memory or disk checks",
            file=sys.stderr,
        )
    tui = _use_tui(args)
    if tui and not args.skip_preflight:
        from cockpit import preflight as pf
        from cockpit.preflight import run_wizard

        try:
            cl, ctx = pf.prepare(args.profile, args.set, getattr(args, "checklist", None))
        except ProfileError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        sessions: list[Session] = []

        def launcher(ctx, results) -> Session:
            sessions.append(_launch(args, ctx.profile, health, ctx.sets, (ctx, results), True))
            return sessions[-1]

        # --yes: the screen still shows the checks, then launches unless one failed
        auto = ("fix" if args.fix else True) if args.yes else False
        code = run_wizard(cl, ctx, launcher, auto=auto)
        if sessions:
            _postflight(args, sessions[-1])
        return code
    sets, checked = list(args.set), None
    if not args.skip_preflight:
        checked = _preflight_printed(args)
        if isinstance(checked, int):
            return checked
        sets = checked[0].sets  # a fix may point the run at redacted copies
    session = _launch(args, p, health, sets, checked, notify=tui)
    if tui:
        from cockpit.app import run_tui

        code = run_tui("monitor", session=session)
        _postflight(args, session)
        return code
    code = _headless(args, session, f"training '{p.name}'")
    if args.nproc_per_node > 1 or args.nnodes > 1:
        # torchrun exits 1 after a clean stop: the run's own word is rank 0's run_end
        m = session.model
        code = status_code(m.status) if m.status in (*OK_STATUSES, "interrupted") else code
    _postflight(args, session)
    return code


def _headless(args, session: Session, what: str, wrapped: bool = False) -> int:
    """Follow a launched run with plain lines; Ctrl+C stops it (twice: kills it)."""
    trainer, run_dir = session.trainer, session.run_dir
    printer = HeadlessPrinter(session.model, every_s=args.every)
    printer.say(f"cockpit: {what} in {run_dir} (pid {trainer.pid}; log {run_dir / 'stdout.log'})")
    printer.say(
        "cockpit: Ctrl+C stops the run gracefully; closing this terminal does not "
        f"(re-attach with: cockpit watch {run_dir})"
    )
    last_press = [-1e9]
    saves = "it saves a checkpoint and exits 130" if not wrapped else "what it does is its own"

    def on_ctrl_c(t: float) -> str:
        if not trainer.alive():
            return "stay"  # it is already on its way out
        if t - last_press[0] <= HARD_KILL_WINDOW_S:
            trainer.kill_group()
            printer.say("cockpit: second Ctrl+C: killed the trainer (SIGKILL); nothing was saved")
        else:
            trainer.signal(signal.SIGINT)
            printer.say(
                f"cockpit: Ctrl+C: asking the trainer to stop gracefully ({saves}); press "
                f"Ctrl+C again within {HARD_KILL_WINDOW_S:.0f} s to kill it"
            )
        last_press[0] = t
        return "stay"

    return _follow(session, printer, on_ctrl_c)


def cmd_run_wrapped(args, cmd: list[str]) -> int:
    """`cockpit run [--format F] -- CMD...`: any trainer; its stdout becomes events."""
    from cockpit.adapters.runinfo import command_name
    from cockpit.wrap import launch_wrapped

    health = _health(args.health)
    if health is None:
        return 2
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(command_name(cmd))
    try:
        trainer, adapting = launch_wrapped(cmd, run_dir, args.format)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: cannot run {cmd[0]!r}: {e}", file=sys.stderr)
        return 2
    adapting.start()
    session = Session(run_dir, trainer, health, notify=False)
    try:
        if _use_tui(args):
            from cockpit.app import run_tui

            return run_tui("monitor", session=session)
        return _headless(args, session, f"running `{' '.join(cmd)}`", wrapped=True)
    finally:
        adapting.stop()


def cmd_watch(args) -> int:
    run_dir = resolve(args.run)
    if run_dir is None:
        what = (
            "no runs under logs/"
            if args.run in (None, "latest")
            else f"{args.run} is not a run directory, nor a run id under logs/"
        )
        print(f"error: {what}; `cockpit runs` lists them", file=sys.stderr)
        return 2
    health = _health(args.health)
    if health is None:
        return 2
    from cockpit.wrap import attach_wrapped

    trainer = Trainer.find(run_dir)
    adapting = attach_wrapped(
        run_dir, trainer
    )  # a wrapped run: go on turning its stdout into events
    if adapting is not None:
        adapting.start()
    try:
        if _use_tui(args):
            from cockpit.app import run_tui

            return run_tui("monitor", session=Session(run_dir, trainer, health))
        return _watch(args, Session(run_dir, trainer, health, notify=False))
    finally:
        if adapting is not None:
            adapting.stop()


def _watch(args, session: Session) -> int:
    run_dir = session.run_dir
    printer = HeadlessPrinter(session.model, every_s=args.every)
    printer.say(f"cockpit: watching {run_dir}")
    if not (run_dir / "events.jsonl").exists():
        printer.say("cockpit: no events.jsonl yet; waiting for the trainer to write it")

    def on_ctrl_c(t: float) -> str:
        printer.say(f"cockpit: detached; the run goes on (re-attach: cockpit watch {run_dir})")
        return "detach"

    code = _follow(session, printer, on_ctrl_c)
    return 130 if code is None else code


def cmd_runs(args) -> int:
    if _use_tui(args):
        from cockpit.app import run_tui

        return run_tui("runs", logs=Path(args.logs))
    rows = list_runs(Path(args.logs))
    if not rows:
        print(f"no runs under {args.logs}/ yet; start one with: cockpit run")
        return 0
    head = f"{'run':<40} {'profile':<14} {'status':<13} {'step':>13} {'best val':>9} {'gate':<10} {'started':<16} {'wall':>8}"
    print(head)
    for r in rows:
        step = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "–"
        print(
            f"{r.run_id:<40} {r.profile:<14} {r.status:<13} {step:>13} {fmt_num(r.best_val):>9} "
            f"{r.gate:<10} {started:<16} {fmt_duration(r.wall_s):>8}"
        )
    return 0
