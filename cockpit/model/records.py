"""What the run model keeps in its bounded lists (alerts, checkpoints), and a
reading of a process sample it and the health checks share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlertRecord:
    seq: int
    t: float
    level: str  # info | warn | error
    code: str
    message: str
    source: str  # "trainer" (an alert event) or "cockpit" (a health check)
    detail: str | None = None  # a stack dump, the last lines of the log, ...


@dataclass
class CheckpointInfo:
    name: str  # step-NNNNNNN.pt, or step-NNNNNNN (a sharded checkpoint's directory)
    step: int
    bytes: int  # a sharded checkpoint: all its files
    tags: list[str]
    t: float  # when it was written (event time, or the file's mtime)
    val_loss: float | None = None
    verified: bool | None = None  # None: not checked yet
    why: str | None = None  # the reason it failed verification
    present: bool = True  # False once retention removed it
    # ours: in the run's checkpoints/, which the watcher lists; a wrapped or natively
    # integrated trainer's own (elsewhere) is known from its event only
    ours: bool = True
    seconds: float | None = None  # from the save's start until it was complete (its event)
    blocked_s: float | None = None  # how long training paused for it; None: not measured
    shards: int | None = None  # files of a sharded checkpoint; None for one file


def main_thread_cpu(proc: dict) -> float | None:
    """CPU% of the trainer's main thread (its tid is the pid), from a process sample dict."""
    procs = proc.get("procs") or []
    if not procs:
        return None
    root = procs[0]
    for th in root.get("threads") or []:
        if th.get("tid") == root.get("pid"):
            return th.get("cpu_pct")
    return None
