"""The event stream: the one contract between a trainer and the cockpit.

Every event is a frozen dataclass written as one JSON object per line in
`events.jsonl` (schema version 1). Every line carries `v`, `t` (unix seconds)
and `type`. Readers ignore unknown fields and unknown types, and skip a torn
last line until it is complete.

Any training loop can write exact events with a few lines (rank 0 only; a
figure you do not have is None), and `cockpit watch logs/my-run` shows them
live, replays them later, and lists the run in `cockpit runs`:

    import os, time
    from core.events import JsonlSink, RunEnd, RunStart, Step

    os.makedirs("logs/my-run", exist_ok=True)
    sink = JsonlSink("logs/my-run/events.jsonl")  # appends; one flushed line per event
    sink.write(RunStart(run_id="my-run", profile="my-loop", pid=os.getpid(), device="cpu",
                        world_size=1, dtype="float32", n_params=None, tokens_per_step=4096,
                        total_steps=100, total_epochs=None))
    t0 = time.time()
    for step in range(1, 101):
        t = time.perf_counter()
        loss = 4.0 / step**0.5  # your forward, backward and optimizer step
        ms = (time.perf_counter() - t) * 1000
        sink.write(Step(step=step, epoch=0, loss=loss, lr=3e-4, grad_norm=None,
                        tokens=step * 4096, step_ms=ms, tokens_per_s=4096 / max(ms, 1e-6) * 1000))
    sink.write(RunEnd(status="completed", step=100, reason="done", wall_s=time.time() - t0))
    sink.close()

docs/events-from-your-loop.md has the rest: evals, checkpoints, DDP, and
StdoutSink for a loop that is run as `cockpit run --format jsonl -- CMD`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TextIO

from core.jsonl import read_jsonl

SCHEMA_VERSION = 1


# -----------------------------------------------------------------------------
# event types (docs/architecture.md, "Events")


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"
    t: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        d = {"v": SCHEMA_VERSION, "t": self.t, "type": self.type}
        for f in dataclasses.fields(self):
            if f.name != "t":
                d[f.name] = getattr(self, f.name)
        return d


@dataclass(frozen=True)
class RunStart(Event):
    type: ClassVar[str] = "run_start"
    run_id: str
    profile: str
    pid: int
    device: str
    world_size: int
    dtype: str
    n_params: int
    tokens_per_step: int
    total_steps: int
    total_epochs: int | None
    # one device's peak FLOP/s behind `mfu` (null: MFU unknown), and where it came from
    peak_flops: float | None = None
    peak_source: str | None = None


@dataclass(frozen=True)
class Phase(Event):
    type: ClassVar[str] = "phase"
    name: str
    done: float
    total: float | None


@dataclass(frozen=True)
class Step(Event):
    type: ClassVar[str] = "step"
    step: int
    epoch: int
    loss: float
    lr: float
    grad_norm: float
    tokens: int
    step_ms: float
    tokens_per_s: float
    mfu: float | None = None


@dataclass(frozen=True)
class Eval(Event):
    type: ClassVar[str] = "eval"
    step: int
    epoch: int
    val_loss: float
    val_ppl: float
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None  # the eval's wall time; None from writers that do not time it


@dataclass(frozen=True)
class Sample(Event):
    type: ClassVar[str] = "sample"
    step: int
    prompt: str
    text: str
    valid: bool | None = None


@dataclass(frozen=True)
class Gate(Event):
    type: ClassVar[str] = "gate"
    step: int
    passed: bool
    metrics: dict[str, float]
    thresholds: dict[str, float]


@dataclass(frozen=True)
class Checkpoint(Event):
    type: ClassVar[str] = "checkpoint"
    step: int
    path: str
    bytes: int
    sha256: str
    seconds: float  # from the start of the save until the checkpoint was complete
    tags: list[str]
    # how long training paused for it: all of `seconds` for a synchronous save, the
    # staging copy (and any wait for the save before) for an async one; null: not measured
    blocked_s: float | None = None


@dataclass(frozen=True)
class Heartbeat(Event):
    type: ClassVar[str] = "heartbeat"
    step: int


@dataclass(frozen=True)
class Alert(Event):
    type: ClassVar[str] = "alert"
    level: str  # info | warn | error
    code: str
    message: str


@dataclass(frozen=True)
class RunEnd(Event):
    type: ClassVar[str] = "run_end"
    status: str  # completed | gate_passed | early_stopped | interrupted | diverged | failed
    step: int
    reason: str
    wall_s: float


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (RunStart, Phase, Step, Eval, Sample, Gate, Checkpoint, Heartbeat, Alert, RunEnd)
}


# -----------------------------------------------------------------------------
# encoding and decoding


def finite_or_none(x: Any) -> Any:
    # JSON has no NaN/Inf; a diverged loss is written as null plus an alert,
    # so every line stays strict JSON that any reader can parse.
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_or_none(v) for v in x]
    return x


def encode(event: Event) -> str:
    """One event as one line of JSON, newline included."""
    return json.dumps(finite_or_none(event.to_dict()), ensure_ascii=False, allow_nan=False) + "\n"


def decode(line: str | bytes) -> Event | dict[str, Any] | None:
    """Parse one line. Known types become their dataclass; unknown types stay a
    dict; a malformed line (or one from a future schema version) gives None."""
    try:
        d = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return from_dict(d)


def from_dict(d: Any) -> Event | dict[str, Any] | None:
    """One parsed line as an event: its dataclass, a dict for an unknown type, or
    None when it is no event (or from a future schema version)."""
    if not isinstance(d, dict) or not isinstance(d.get("type"), str):
        return None
    cls = EVENT_TYPES.get(d["type"])
    if cls is None or d.get("v", SCHEMA_VERSION) > SCHEMA_VERSION:
        return d
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in d.items() if k in names})
    except TypeError:
        return d  # a required field is missing: keep what there is, as a dict


def read_events(path: str | os.PathLike) -> list[Event | dict[str, Any]]:
    """Every complete, well-formed event in a file; a torn last line is skipped."""
    out: list[Event | dict[str, Any]] = []
    for d in read_jsonl(path):
        ev = from_dict(d)
        if ev is not None:
            out.append(ev)
    return out


# -----------------------------------------------------------------------------
# sinks: where a trainer writes its events (no `if logger:` branches)


class Sink(Protocol):
    """What a trainer writes its events to: any of the sinks below."""

    def write(self, event: Event) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Writes nothing: ranks other than 0, and tests that need no stream."""

    def write(self, event: Event) -> None:
        pass

    def close(self) -> None:
        pass


class JsonlSink:
    """Appends to events.jsonl, one flushed line per event, safe across threads
    (the heartbeat thread writes beside the training loop)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._f = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, event: Event) -> None:
        line = encode(event)
        with self._lock:
            if self._f.closed:
                return
            self._f.write(line)
            self._f.flush()

    def close(self) -> None:
        with self._lock:
            self._f.close()


class StdoutSink:
    """Events as JSON lines on stdout, for trainers whose stdout is the channel."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def write(self, event: Event) -> None:
        with self._lock:
            self._stream.write(encode(event))
            self._stream.flush()

    def close(self) -> None:
        pass
