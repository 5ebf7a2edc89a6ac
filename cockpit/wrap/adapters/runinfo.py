"""What a wrapped command's run_start and run_end say (from its command line,
what its adapter learned and its exit code), and an adapter's event dict as
its core.events dataclass, the fields it does not know set to None."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cockpit.supervisor import log_tail
from cockpit.wrap.adapters import clean
from core import events as E

LAUNCHERS = ("torchrun", "accelerate", "deepspeed", "uv", "env", "nohup", "launch", "run")


@dataclass(frozen=True)
class WrappedRunStart(E.RunStart):
    wrapped: dict | None = None  # {"format", "command"}: readers that know no wrapping ignore it


def _kind(annotation: object) -> str:
    """A field's kind from its annotation ("int | None" -> "int"): what coerce() keeps."""
    base = str(annotation).split(" | ")[0].strip()
    if base in ("int", "float", "str", "bool"):
        return base
    return {"dict[str, float]": "numbers", "list[str]": "strings"}.get(base, "any")


def _fields(cls: type) -> tuple[list[tuple[str, str]], list[tuple[str, str, Callable[[], Any]]]]:
    """([(required name, kind)], [(optional name, kind, its default or default factory)])
    of an event class."""
    req, opt = [], []
    for f in dataclasses.fields(cls):
        if f.name == "t":
            continue
        if f.default_factory is not dataclasses.MISSING:
            opt.append((f.name, _kind(f.type), f.default_factory))
        elif f.default is not dataclasses.MISSING:
            opt.append((f.name, _kind(f.type), lambda v=f.default: v))
        else:
            req.append((f.name, _kind(f.type)))
    return req, opt


FIELDS = {name: _fields(cls) for name, cls in E.EVENT_TYPES.items()}
FIELDS["run_start"] = _fields(WrappedRunStart)

DROP = object()  # coerce()'s answer for a value of the wrong type


def _number(x: Any) -> float | None:
    if x.__class__ is float or x.__class__ is int:
        return x
    if isinstance(x, str):
        try:
            return float(x)  # "3.5", "nan": a number printed as a string
        except ValueError:
            return None
    return None


def coerce(kind: str, x: Any) -> Any:
    """`x` as the schema's `kind` says, or DROP: 2.0 -> 2 for an int, "3.5" -> 3.5
    for a float, 7 -> "7" for a string; "one" for an int, a dict for a string and the
    like are dropped. None is kept (every figure may be unknown)."""
    if x is None or kind == "any":
        return x
    if kind == "float":
        v = _number(x)
        return DROP if v is None else float(v)
    if kind == "int":
        v = _number(x)
        if v is None or not math.isfinite(v) or v != int(v):
            return DROP
        return int(v)
    if kind == "str":
        return x if isinstance(x, str) else str(x) if isinstance(x, int | float) else DROP
    if kind == "bool":
        return x if isinstance(x, bool) else DROP
    if kind == "numbers":  # metrics, thresholds: names to numbers; other entries dropped
        if not isinstance(x, dict):
            return DROP
        out = {str(k): _number(v) for k, v in x.items()}
        return {k: float(v) for k, v in out.items() if v is not None}
    if kind == "strings":  # tags
        if not isinstance(x, list):
            return DROP
        return [str(v) for v in x if isinstance(v, str | int | float)]
    return x


def event_dict(d: dict, t: float) -> tuple[dict | None, list[str]]:
    """An adapter's dict as the event its core.events dataclass would encode, and the
    names of the fields dropped for a wrong type: the schema's fields in its order,
    each coerced to its type (coerce()), the ones the adapter does not know (or that
    were dropped) None or their default; None for a type the schema does not have."""
    typ = d.get("type")
    spec = FIELDS.get(typ) if isinstance(typ, str) else None
    if spec is None:
        return None, []
    tt = d.get("t")
    ok_t = isinstance(tt, int | float) and not isinstance(tt, bool) and math.isfinite(tt)
    out = {"v": E.SCHEMA_VERSION, "t": tt if ok_t else t, "type": typ}
    dropped: list[str] = []
    fields = [(n, kind, None) for n, kind in spec[0]] + spec[1]
    for n, kind, default in fields:
        x = d[n] if n in d else None if default is None else default()
        v = coerce(kind, x)
        if v is DROP:
            v = None if default is None else default()
        if v is not x and (v is None or isinstance(x, dict | list) and len(v) < len(x)):
            dropped.append(n)  # the value, or some entries of it
        out[n] = v
    return out, dropped


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
