"""Python stacks of a trainer that cannot dump its own: `py-spy dump --pid PID`.

A trainer of ours writes its stacks on SIGUSR2; a wrapped command usually has no
handler (the signal's default action would kill it), so after a stall the
session asks py-spy instead: it reads the stacks from outside, through ptrace,
without stopping or changing the process. py-spy is an optional extra
(`pip install 'train-cockpit[stalls]'`; `make setup` installs it); its wheel
ships the binary. Where it is missing, or ptrace is not allowed, the result says
so and how to fix it. Never raises.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

DUMP_TIMEOUT_S = 10.0
DUMP_CHARS = 16 << 10  # one process's dump is cut here (a thread pool can be long)
YAMA = Path("/proc/sys/kernel/yama/ptrace_scope")


@dataclass(frozen=True)
class Dump:
    pid: int
    rank: int | None  # under torchrun
    text: str  # py-spy's output ("" when it failed)
    error: str | None  # why there is no dump, with the fix


def py_spy() -> str | None:
    """The py-spy binary: beside this Python (a venv's bin/, where the wheel puts it),
    else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("py-spy")


def ptrace_scope(path: Path = YAMA) -> int | None:
    """Yama's ptrace_scope (0 classic, 1 descendants only, 2 admin only, 3 none), None
    where Yama is not in the kernel (ptrace then follows the classic rules)."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def ptrace_hint(scope: int | None) -> str:
    """How to let py-spy read another process, for the scope in force."""
    if scope == 3:
        return (
            "ptrace is disabled until reboot (kernel.yama.ptrace_scope=3); set "
            "kernel.yama.ptrace_scope=0 in /etc/sysctl.d/ and reboot to allow py-spy"
        )
    fix = (
        "allow it with `sudo sysctl kernel.yama.ptrace_scope=0`, or give py-spy the "
        "capability: `sudo setcap cap_sys_ptrace+ep $(which py-spy)` (in a container: "
        "--cap-add SYS_PTRACE)"
    )
    if scope in (1, 2):
        return f"ptrace is restricted (kernel.yama.ptrace_scope={scope}): {fix}"
    return f"ptrace was refused: {fix}"


def _denied(err: str) -> bool:
    e = err.lower()
    return "permission denied" in e or "operation not permitted" in e or "ptrace" in e


def dump(pid: int, rank: int | None = None, timeout_s: float = DUMP_TIMEOUT_S) -> Dump:
    """py-spy's dump of one process."""
    exe = py_spy()
    if exe is None:
        return Dump(
            pid,
            rank,
            "",
            "py-spy is not installed: pip install 'train-cockpit[stalls]' (or pip install "
            "py-spy) to see where a wrapped trainer is stuck",
        )
    try:
        r = subprocess.run(
            [exe, "dump", "--pid", str(pid)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return Dump(pid, rank, "", f"py-spy dump --pid {pid} took over {timeout_s:.0f} s")
    except OSError as e:
        return Dump(pid, rank, "", f"cannot run py-spy: {e}")
    if r.returncode == 0 and r.stdout.strip():
        return Dump(pid, rank, r.stdout[:DUMP_CHARS], None)
    err = (r.stderr or r.stdout).strip().splitlines()
    first = err[0][:300] if err else f"exit code {r.returncode}"
    if _denied(r.stderr or ""):
        return Dump(
            pid,
            rank,
            "",
            f"py-spy could not read pid {pid}: {first}. {ptrace_hint(ptrace_scope())}",
        )
    return Dump(pid, rank, "", f"py-spy could not read pid {pid}: {first}")


def dump_all(targets: list[tuple[int, int | None]]) -> list[Dump]:
    """One dump per (pid, rank), in the order given (the slowest rank first)."""
    return [dump(pid, rank) for pid, rank in targets]


def rank_processes(pid: int) -> list[tuple[int, int]]:
    """The (pid, rank) of the descendants of `pid` that torchrun (or any launcher setting
    RANK) started, by rank: a wrapped `torchrun …` has no rank files to say which is
    slowest."""
    out = []
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    for k in kids:
        try:
            rank = k.environ().get("RANK")
        except psutil.Error:
            continue
        if rank is not None and rank.isdigit():
            out.append((k.pid, int(rank)))
    return sorted(out, key=lambda x: x[1])


def dump_trainer(pid: int) -> list[Dump]:
    """A wrapped command's stacks: one per rank under a launcher that sets RANK, else its
    main process, else (a shell or `uv run` in front of Python) its first descendant
    that py-spy can read."""
    ranks = rank_processes(pid)
    if ranks:
        return dump_all([(p, r) for p, r in ranks])
    d = dump(pid)
    if d.text or (d.error and "ptrace" in d.error):
        return [d]
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        kids = []
    for k in kids[:8]:
        got = dump(k.pid)
        if got.text:
            return [got]
    return [d]


def as_text(dumps: list[Dump]) -> str:
    """The dumps one after another, each headed by its rank and pid."""
    parts = []
    for d in dumps:
        head = f"--- rank {d.rank} (pid {d.pid})" if d.rank is not None else f"--- pid {d.pid}"
        parts.append(f"{head}\n{d.text.rstrip() if d.text else d.error}")
    return "\n".join(parts)
