"""`cockpit run`: the pre-flight, the run (our core, the core under torchrun, or
any command after --) followed in the TUI or as plain lines, and the
post-flight. Ctrl+C as a user expects: first stop gracefully, a second within
3 s kills."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cockpit.checks.engine import overall
from cockpit.checks.preflight import prepare
from cockpit.checks.preflight import save as save_preflight
from cockpit.collect.energy import meter_for_wrapped
from cockpit.commands.follow import HARD_KILL_WINDOW_S, extras, follow, parse_health, use_tui
from cockpit.commands.postflight import postflight_after_run
from cockpit.commands.preflight import run_printed
from cockpit.headless import HeadlessPrinter
from cockpit.model.runmodel import OK_STATUSES, status_code
from cockpit.session import Session
from cockpit.supervisor import Trainer, new_run_dir, torchrun_command, trainer_command
from cockpit.ui.app import run_tui, run_wizard
from cockpit.wrap.adapters.runinfo import command_name
from cockpit.wrap.wrapped import launch_wrapped
from core.config import ProfileError, load_profile

if TYPE_CHECKING:
    from argparse import Namespace

    from cockpit.checks.base import Context
    from cockpit.checks.engine import StepResult
    from cockpit.model.health import HealthConfig
    from core.config import Profile


def _preflight_printed(args: Namespace) -> tuple[Context, list[StepResult]] | int:
    """The pre-flight without questions: (context, results), or an exit code."""

    try:
        cl, ctx = prepare(args.profile, args.set, getattr(args, "checklist", None))
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ctx.gpus = getattr(args, "gpus", None)
    results = run_printed(cl, ctx, fix=args.fix)
    if overall(results) == "FAIL":
        print(
            "cockpit: pre-flight FAILED; nothing launched. Fix what it says "
            + ("(--fix applies the built-in fixes) " if not args.fix else "")
            + "and run again, or --skip-preflight to launch anyway.",
            file=sys.stderr,
        )
        return 1
    return ctx, results


def _launch(
    args: Namespace,
    p: Profile,
    health: HealthConfig,
    sets: list[str],
    checked: tuple[Context, list[StepResult]] | None = None,
    notify: bool = False,
    extras: dict | None = None,
) -> Session:
    """Make the run directory (with preflight.json), start the trainer, follow it."""
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(p.name)
    n, nodes = getattr(args, "nproc_per_node", 1) or 1, getattr(args, "nnodes", 1) or 1
    # this machine's launcher files: the run directory's own on node 0, nodes/node-R/ on
    # the others (they share the run directory; the core writes its files there as one)
    node = getattr(args, "node_rank", 0) or 0
    here = run_dir if node == 0 else run_dir / "nodes" / f"node-{node}"
    if checked is not None:
        save_preflight(here, *checked)
    if n > 1 or nodes > 1:  # DDP under torchrun (no launcher of our own)
        extra = [*rendezvous_args(args, run_dir), *args.torchrun_arg]
        cmd = torchrun_command(args.profile, run_dir, sets, n, nodes, extra)
    else:
        cmd = trainer_command(args.profile, run_dir, sets)
    # the TUI repaints on change notification; the headless loop ticks at its own pace
    trainer = Trainer.launch(cmd, here)
    return Session(run_dir, trainer, health, notify=notify, **(extras or {}))


def rendezvous_args(args: Namespace, run_dir: Path) -> list[str]:
    """torchrun's c10d rendezvous for --nnodes > 1 (none for one machine)."""
    if (getattr(args, "nnodes", 1) or 1) <= 1 or not getattr(args, "rdzv_endpoint", None):
        return []
    return [
        f"--node-rank={args.node_rank}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={args.rdzv_endpoint}",
        f"--rdzv-id={args.rdzv_id or run_dir.name}",
    ]


ENDPOINT = re.compile(r"[A-Za-z0-9._\-]{1,253}:\d{1,5}|\[[0-9A-Fa-f:]{2,39}\]:\d{1,5}")


def multinode_problem(args: Namespace) -> str | None:
    """What is missing from a --nnodes > 1 command line, in one sentence; None when fine."""
    nodes = getattr(args, "nnodes", 1) or 1
    node = getattr(args, "node_rank", 0) or 0
    if nodes < 1:
        return f"--nnodes must be 1 or more, got {nodes}"
    if nodes == 1:
        return "--node-rank needs --nnodes 2 or more" if node else None
    if not 0 <= node < nodes:
        return f"--node-rank must be 0..{nodes - 1} with --nnodes {nodes}, got {node}"
    if not args.run_dir:
        return (
            f"--nnodes {nodes} needs --run-dir: one directory on storage every machine shares "
            "(NFS, Lustre...), the same on each, as rank 0 writes the events and every rank its "
            "figures there"
        )
    rdzv = any(
        a.startswith("--rdzv-endpoint") or a.startswith("--master-addr") for a in args.torchrun_arg
    )
    ep = getattr(args, "rdzv_endpoint", None)
    if not ep and not rdzv:
        return f"--nnodes {nodes} needs --rdzv-endpoint HOST:PORT (a free port on node 0)"
    if ep and not ENDPOINT.fullmatch(ep):
        return f"--rdzv-endpoint must be HOST:PORT (e.g. node0:29400), got {ep!r}"
    return None


def _postflight(args: Namespace, session: Session) -> None:
    """The post-flight checks on the finished run's best checkpoint; they never change the
    run's exit code."""
    if args.skip_postflight or session.model.status not in OK_STATUSES:
        return
    print(f"cockpit: post-flight on {session.run_dir} (skip with --skip-postflight)", flush=True)
    postflight_after_run(session.run_dir)


def cmd_run(args: Namespace) -> int:
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
    health = parse_health(args.health)
    if health is None:
        return 2
    if (problem := multinode_problem(args)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    kw = extras(args)
    if kw is None:
        return 2
    if args.skip_preflight:
        print(
            "cockpit: --skip-preflight: no data, secrets, sizing, memory or disk checks",
            file=sys.stderr,
        )
    tui = use_tui(args)
    if tui and not args.skip_preflight:
        try:
            cl, ctx = prepare(args.profile, args.set, getattr(args, "checklist", None))
        except ProfileError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        ctx.gpus = getattr(args, "gpus", None)
        sessions: list[Session] = []

        def launcher(ctx: Context, results: list[StepResult]) -> Session:
            sessions.append(_launch(args, ctx.profile, health, ctx.sets, (ctx, results), True, kw))
            return sessions[-1]

        # --yes: the screen still shows the checks, then launches unless one failed
        auto = ("fix" if args.fix else True) if args.yes else False
        code = run_wizard(cl, ctx, launcher, auto=auto)
        if sessions:
            _postflight(args, sessions[-1])
        return code
    sets = list(args.set)
    checked: tuple[Context, list[StepResult]] | None = None
    if not args.skip_preflight:
        got = _preflight_printed(args)
        if isinstance(got, int):
            return got
        checked = got
        sets = checked[0].sets  # a fix may point the run at redacted copies
    session = _launch(args, p, health, sets, checked, notify=tui, extras=kw)
    if tui:
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


def _headless(args: Namespace, session: Session, what: str, wrapped: bool = False) -> int:
    """Follow a launched run with plain lines; Ctrl+C stops it (twice: kills it)."""
    trainer, run_dir = session.trainer, session.run_dir
    assert trainer is not None  # a run we launched
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

    code = follow(session, printer, on_ctrl_c)
    assert code is not None  # only a detach gives None, and this Ctrl+C never detaches
    return code


def cmd_run_wrapped(args: Namespace, cmd: list[str]) -> int:
    """`cockpit run [--format F] -- CMD...`: any trainer; its stdout becomes events."""
    health = parse_health(args.health)
    if health is None:
        return 2
    kw = extras(args)
    if kw is None:
        return 2
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(command_name(cmd))
    tui = use_tui(args)
    pty: tuple[int, int] | None = None
    if not getattr(args, "no_pty", False):  # the bars draw as for a person at this terminal
        size = shutil.get_terminal_size((120, 40)) if tui else os.terminal_size((120, 40))
        pty = (size.columns, size.lines)
    try:
        ckpts = [Path(c) for c in getattr(args, "checkpoints", None) or []] or None
        trainer, adapting = launch_wrapped(cmd, run_dir, args.format, pty=pty, checkpoints=ckpts)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: cannot run {cmd[0]!r}: {e}", file=sys.stderr)
        return 2
    adapting.start()
    # a command we wrap does not meter itself: the cockpit does (energy.json)
    kw["meter"] = meter_for_wrapped().start()
    session = Session(run_dir, trainer, health, notify=False, **kw)
    try:
        if tui:
            return run_tui("monitor", session=session)
        return _headless(args, session, f"running `{' '.join(cmd)}`", wrapped=True)
    finally:
        adapting.stop()
