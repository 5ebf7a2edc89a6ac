"""The supervisor: launches the trainer so that nothing the cockpit does (quit,
`kill -9`, a dropped ssh session) stops it, and finds it again later.

The trainer gets its own session and process group (no terminal signal reaches
it), its stdout and stderr go straight to `stdout.log` (no pipe that breaks
when the cockpit dies), and `supervisor.json` records what identifies it: pid,
process group, the process's start time (a recycled pid is not our trainer),
command, host. The launching cockpit adds the exit code when it sees one.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cockpit.collect.ranks import read_all, running_pids
from core.checkpoint import atomic_write_text

LOGS = Path("logs")
RELAY = Path(__file__).parent / "wrap" / "ptyrelay.py"  # run as a file: no cockpit import
REQUESTS = (signal.SIGUSR1, signal.SIGUSR2)  # save now, dump stacks: asked, never forced


def new_run_dir(profile_name: str, logs: Path = LOGS) -> Path:
    """Create and claim logs/<YYYYmmdd-HHMMSS>-<profile> (-2, -3 ... if taken): two
    cockpits started in the same second never share a directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        d = logs / (f"{stamp}-{profile_name}" + (f"-{n}" if n > 1 else ""))
        try:
            d.mkdir()
            return d
        except FileExistsError:
            n += 1


def trainer_command(profile: str, run_dir: Path, sets: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "core.train", "--profile", profile, "--run-dir", str(run_dir)]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def read_info(run_dir: Path) -> dict | None:
    try:
        d = json.loads((run_dir / "supervisor.json").read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def pid_is(pid: int | None, create_time: float | None) -> bool:
    """True when `pid` is alive (not a zombie) and is the process that started at
    create_time. Without a create_time nothing says the pid was not recycled: False."""
    if not pid or not isinstance(create_time, int | float):
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(p.create_time() - create_time) < 0.5
    except (psutil.Error, OSError):
        return False


def announced(pid: object, t_announced: float | None) -> float | None:
    """The create_time of the process that wrote a run_start with this pid, or None when
    that process is gone (a live process that started after the announcement only
    inherited the pid)."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        ct = p.create_time()
    except (psutil.Error, OSError):
        return None
    return ct if t_announced is None or ct <= t_announced + 1.0 else None


def caught(pid: int) -> int | None:
    """The signals process `pid` has handlers for, as a mask (SigCgt in
    /proc/PID/status: bit sig-1); None when it cannot be told (gone, not Linux)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"SigCgt:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def catches(pid: int, sig: int) -> bool | None:
    """Whether process `pid` has a handler for `sig`; None when it cannot be told."""
    mask = caught(pid)
    return None if mask is None else bool(mask >> (sig - 1) & 1)


def exit_code_of(returncode: int) -> int:
    """Popen's -N (killed by signal N) as a shell would say it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


# -----------------------------------------------------------------------------
# a trainer we launched, or one we found again


@dataclass
class Trainer:
    run_dir: Path
    pid: int
    pgid: int | None
    create_time: float | None
    proc: subprocess.Popen | None = None  # set only in the cockpit that launched it
    exit_code: int | None = None
    # called once, when alive() first finds the process gone, with the exit code when known
    # and before supervisor.json records it (a wrapped run writes its run_end there); another
    # thread's alive() returns False only once it has returned
    on_exit: Callable[[Trainer], None] | None = field(default=None, repr=False, compare=False)
    _exit_seen: bool = field(default=False, repr=False, compare=False)
    _exit_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def launch(
        cls,
        cmd: list[str],
        run_dir: Path,
        cwd: Path | None = None,
        pty: tuple[int, int] | None = None,
        env: dict[str, str] | None = None,
    ) -> Trainer:
        """Start `cmd` detached from us. pty=(columns, rows): under a pseudo-terminal of
        that size (cockpit/wrap/ptyrelay.py: the process is still `cmd` itself, its
        output still reaches stdout.log when we are gone)."""
        run_dir.mkdir(parents=True, exist_ok=True)
        # COCKPIT_RUN_DIR: where a native integration (cockpit.integrations) writes
        env = dict(os.environ, **(env or {}))  # `env`: variables added for this launch
        env.update(PYTHONUNBUFFERED="1", COCKPIT_RUN_DIR=str(run_dir.resolve()))
        argv = list(cmd)
        if pty is not None:
            path = env.get("PATH") if os.sep not in cmd[0] else ""
            exe = shutil.which(cmd[0], path=path) if path != "" else cmd[0]
            if exe is None or not os.access(Path(cwd or ".") / exe, os.X_OK):
                raise FileNotFoundError(f"no such command: {cmd[0]!r}")  # as Popen would say
            cols, rows = pty
            relay = [sys.executable, str(RELAY), "--cols", str(cols), "--rows", str(rows)]
            argv = [*relay, str((run_dir / "stdout.log").resolve()), "--", *cmd]
        with open(run_dir / "stdout.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group: Ctrl+C and SIGHUP stay with us
                env=env,
            )
        t = cls(run_dir, proc.pid, proc.pid, _create_time(proc.pid), proc)
        t._write_info(cmd=cmd, cwd=str(cwd or Path.cwd()), started=time.time(), pty=pty)
        return t

    @classmethod
    def find(cls, run_dir: Path) -> Trainer | None:
        """The trainer of a run, from supervisor.json (or the run_start event's pid)."""
        info = read_info(run_dir)
        if info and isinstance(info.get("pid"), int):
            t = cls(run_dir, info["pid"], info.get("pgid"), info.get("create_time"))
            t.exit_code = info.get("exit_code")
            return t
        return None

    def _write_info(self, **extra: Any) -> None:
        try:
            info = read_info(self.run_dir) or {}
        except OSError:
            info = {}
        info.update(
            pid=self.pid,
            pgid=self.pgid,
            create_time=self.create_time,
            host=socket.gethostname(),
            cockpit_pid=os.getpid(),
            run_dir=str(self.run_dir),
            exit_code=self.exit_code,
        )
        info.update(extra)
        try:
            atomic_write_text(self.run_dir / "supervisor.json", json.dumps(info, indent=2) + "\n")
        except OSError:
            pass  # a full disk must not take the cockpit down; the run goes on

    def _exit_code_from_info(self) -> None:
        # the cockpit that launched it writes the exit code once it has reaped it
        info = read_info(self.run_dir) or {}
        if info.get("pid") == self.pid and isinstance(info.get("exit_code"), int):
            self.exit_code = info["exit_code"]

    def alive(self) -> bool:
        if self.proc is not None:
            if self.proc.poll() is not None:
                with self._exit_lock:
                    if self.exit_code is None:
                        self.exit_code = exit_code_of(self.proc.returncode)
                        self._exited()
                        self._write_info(ended=time.time())
                return False
            return True
        alive = pid_is(self.pid, self.create_time)
        if not alive:
            with self._exit_lock:
                if self.exit_code is None:
                    self._exit_code_from_info()
                self._exited()
        return alive

    def _exited(self) -> None:
        if self.on_exit is not None and not self._exit_seen:
            self._exit_seen = True
            self.on_exit(self)

    def _targets(self, sig: int, ranks: list[int] | None) -> list[int]:
        """Under torchrun, save-now (SIGUSR1) and stack dumps (SIGUSR2) go to the ranks
        themselves (`ranks`: their pids, as the caller's RankReader knows them; read
        from the rank files when None): torchrun does not handle them."""
        if sig not in REQUESTS or not (self.run_dir / "ranks").is_dir():
            return [self.pid]
        if ranks is None:
            ranks = running_pids(read_all(self.run_dir))
        return ranks or [self.pid]

    def handles(self, sig: int, ranks: list[int] | None = None) -> bool | None:
        """Whether the trainer has a handler for `sig` (every rank, under torchrun);
        None when it cannot be told (gone, not Linux)."""
        return self.handles_requests(ranks)[REQUESTS.index(sig)] if sig in REQUESTS else None

    def handles_requests(self, ranks: list[int] | None = None) -> tuple[bool | None, ...]:
        """handles() for each of REQUESTS, from one read of each target's handlers."""
        masks = [caught(pid) for pid in self._targets(REQUESTS[0], ranks)]
        known = [m for m in masks if m is not None]
        if len(known) < len(masks):
            return (None,) * len(REQUESTS)
        return tuple(all(m >> (sig - 1) & 1 for m in known) for sig in REQUESTS)

    def signal(self, sig: int, ranks: list[int] | None = None) -> bool:
        """Send `sig` to the trainer; False when it is already gone. A request (SIGUSR1
        save-now, SIGUSR2 stack dump) goes only to a process that handles it: their
        default action kills, and a wrapped command may not handle them."""
        if not self.alive():
            return False
        sent = False
        for pid in self._targets(sig, ranks):
            if sig in REQUESTS and catches(pid, sig) is False:
                continue
            try:
                os.kill(pid, sig)
                sent = True
            except OSError:
                pass
        return sent

    def kill_group(self) -> None:
        """SIGKILL the trainer and everything in its process group (workers), and its
        descendants in other sessions (torchrun starts each rank in its own). Only a
        trainer that is still the process we started (alive(): its create_time) is
        killed, and its group only while it still leads it: a pid or pgid read from
        supervisor.json may have been recycled by a stranger's process since."""
        if not self.alive():
            return
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        try:
            leads = os.getpgid(self.pid) == (self.pgid or self.pid)
        except OSError:
            leads = False
        try:
            if leads:
                os.killpg(self.pgid or self.pid, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        for k in kids:
            try:
                k.kill()
            except psutil.Error:
                pass

    def wait(self, timeout: float | None = None) -> int | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.alive()
        return self.exit_code


def log_tail(run_dir: Path, n: int = 50, max_bytes: int = 256 << 10) -> str:
    """The last n lines of stdout.log (reads at most max_bytes from the end)."""
    try:
        with open(run_dir / "stdout.log", "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-n:])


# -----------------------------------------------------------------------------
# the core under torchrun
#
# The core under torchrun: the command `cockpit run --nproc-per-node N` runs
# (no launcher of our own).
#
# Signals under torchrun: SIGINT/SIGTERM go to torchrun (it forwards them to every
# rank, which finish the step together, save and exit 130/143; torchrun itself
# then exits 1). SIGUSR1 (save) and SIGUSR2 (stacks) must go to the rank
# processes (cockpit.collect.ranks.running_pids): torchrun does not handle them, and
# their default action would kill it and orphan the ranks. Each rank runs in a
# session of its own, so a kill must reach the ranks by pid, not by torchrun's
# process group.

SHUTDOWN_TIMEOUT_S = 300  # how long torchrun lets the ranks save after SIGINT before SIGKILL


@functools.lru_cache(maxsize=1)
def _torchrun_has(option: str) -> bool:
    """Whether the installed torchrun takes `option` (read from its source: no torch import)."""
    try:
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.origin is None:
            return False
        src = Path(spec.origin).parent / "distributed" / "run.py"
        return f'"{option}"' in src.read_text(encoding="utf-8", errors="replace")
    except (AttributeError, TypeError, OSError, ValueError):
        return False


def torchrun_command(
    profile: str,
    run_dir: Path,
    sets: list[str],
    nproc_per_node: int,
    nnodes: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """The core under torchrun: `python -m torch.distributed.run ... -m core.train ...`.

    One node: `--standalone` (a free local port). Several: pass the rendezvous in
    `extra` (`--rdzv-endpoint=HOST:PORT --rdzv-id=ID`, or `--node-rank` with
    `--master-addr`) and run the same command on every node. Each rank's output
    reaches stdout.log with a `[rankN]:` prefix (N: the local rank, the global one
    on a single node) and is kept whole under run_dir/torchrun/."""
    run_dir = Path(run_dir)
    cmd = trainer_command(profile, run_dir, sets)
    tr = [cmd[0], "-m", "torch.distributed.run"]
    if nnodes == 1 and not any(str(a).startswith(("--rdzv", "--master")) for a in extra):
        tr.append("--standalone")
    tr += [f"--nnodes={nnodes}", f"--nproc-per-node={nproc_per_node}"]
    tr += ["--role=rank", "--tee=3", f"--log-dir={run_dir / 'torchrun'}"]
    if _torchrun_has("--shutdown-timeout"):
        tr.append(f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}")  # rank 0's save after a stop
    return tr + [str(a) for a in extra] + cmd[1:]
