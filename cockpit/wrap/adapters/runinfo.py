"""What a wrapped command's run_start and run_end say (from its command line,
what its adapter learned and its exit code), and an adapter's event dict as
its core.events dataclass, the fields it does not know set to None."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cockpit.supervisor import log_tail
from cockpit.wrap.adapters import clean
from core import events as E

LAUNCHERS = ("torchrun", "accelerate", "deepspeed", "uv", "env", "nohup", "launch", "run")


@dataclass(frozen=True)
class WrappedRunStart(E.RunStart):
    wrapped: dict | None = None  # {"format", "command"}: readers that know no wrapping ignore it


def _constant(v: object) -> Callable[[], object]:
    return lambda: v


def _fields(cls: type[E.Event]) -> tuple[list[str], list[tuple[str, Callable[[], object]]]]:
    """(required names, [(optional name, its default or default factory)]) of an event class."""
    req: list[str] = []
    opt: list[tuple[str, Callable[[], object]]] = []
    for f in dataclasses.fields(cls):
        if f.name == "t":
            continue
        if f.default_factory is not dataclasses.MISSING:
            opt.append((f.name, f.default_factory))
        elif f.default is not dataclasses.MISSING:
            opt.append((f.name, _constant(f.default)))
        else:
            req.append(f.name)
    return req, opt


FIELDS = {name: _fields(cls) for name, cls in E.EVENT_TYPES.items()}
FIELDS["run_start"] = _fields(WrappedRunStart)


def event_dict(d: dict, t: float) -> dict | None:
    """An adapter's dict as the event its core.events dataclass would encode: the
    schema's fields in its order, the ones the adapter does not know None (or
    their default); None for a type the schema does not have."""
    typ = d.get("type", "")
    spec = FIELDS.get(typ)
    if spec is None:
        return None
    tt = d.get("t")
    out = {"v": E.SCHEMA_VERSION, "t": tt if isinstance(tt, int | float) else t, "type": typ}
    for n in spec[0]:
        out[n] = d.get(n)
    for n, default in spec[1]:
        out[n] = d[n] if n in d else default()
    return out


# -----------------------------------------------------------------------------
# what the command line says


def command_name(cmd: list[str]) -> str:
    """What to call a run of `cmd`: its script (train.py) or module (scripts.base_train)."""
    for i, a in enumerate(cmd):
        if a == "-m" and i + 1 < len(cmd):
            return cmd[i + 1]
        if a.endswith(".py"):
            return os.path.basename(a)
    for a in cmd:
        b = os.path.basename(a)
        if not (b in LAUNCHERS or b.startswith("python") or a.startswith("-") or "=" in a):
            return b
    return os.path.basename(cmd[0]) if cmd else "command"


def world_size(cmd: list[str]) -> int | None:
    """nproc_per_node x nnodes of a torchrun command line, when given as numbers."""
    if not any(
        os.path.basename(a) == "torchrun" or a.startswith("torch.distributed.") for a in cmd
    ):
        return None
    got: dict[str, str] = {}
    for i, a in enumerate(cmd):
        key, eq, val = a.partition("=")
        key = key.lstrip("-").replace("-", "_")
        if a.startswith("--") and key in ("nproc_per_node", "nnodes"):
            got[key] = val if eq else (cmd[i + 1] if i + 1 < len(cmd) else "")
    nproc, nnodes = got.get("nproc_per_node", ""), got.get("nnodes", "1")
    return int(nproc) * int(nnodes) if nproc.isdigit() and nnodes.isdigit() else None


def end_of(code: int, last_line: str) -> tuple[str, str]:
    """(status, reason) for a command's exit code."""
    if code == 0:
        return "completed", "the command exited with code 0"
    name = ""
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            pass
    if code in (130, 143):
        return "interrupted", f"stopped by {name} (exit {code})"
    why = f"killed by {name} (exit {code})" if name else f"exit code {code}"
    return "failed", f"{why}: {last_line.strip()[:200]}" if last_line.strip() else why


def last_words(run_dir: Path) -> str:
    """The command's last non-blank line (of rank 0) in stdout.log, for a failure's reason."""
    for line in reversed(log_tail(run_dir, 20, 16 << 10).replace("\r", "\n").split("\n")):
        text = clean(line)
        if text and not text.isspace():
            return text
    return ""
