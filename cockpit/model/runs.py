"""Every run under logs/, summarised from its files without loading it whole:
result.json when the run finished, else the events (only run_start, eval and
run_end lines are parsed) and whether its process still lives."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from cockpit.collect.energy import kwh_of, read_energy
from cockpit.supervisor import LOGS, announced, pid_is, read_info
from core.jsonl import JsonlReader, tail_objects, type_filter


@dataclass(frozen=True)
class RunRow:
    run_dir: Path
    run_id: str
    profile: str
    status: str  # live | completed | gate_passed | early_stopped | interrupted | diverged | failed | starting
    step: int
    total_steps: int | None
    best_val: float | None
    gate: str  # passed | not passed | –
    started: float | None
    wall_s: float | None
    energy_kwh: float | None = None  # result.json's or energy.json's (core.energy)


def is_run_dir(d: Path) -> bool:
    return d.is_dir() and any((d / f).exists() for f in ("events.jsonl", "supervisor.json"))


def run_dirs(logs: Path = LOGS) -> list[Path]:
    """Run directories, oldest first (names start with the start time)."""
    try:
        return sorted(d for d in logs.iterdir() if is_run_dir(d))
    except OSError:
        return []


def resolve(arg: str | None, logs: Path = LOGS) -> Path | None:
    """RUN_DIR, a run id under logs/, or `latest` (the newest run)."""
    if arg in (None, "latest"):
        dirs = run_dirs(logs)
        return dirs[-1] if dirs else None
    for p in (Path(arg), logs / arg):
        if is_run_dir(p):
            return p
    p = Path(arg)
    if p.is_dir() and not run_dirs(p):
        return p  # a run directory whose trainer has not written anything yet: wait for it
    return None


# step and heartbeat lines are most of a long run, and nothing here needs them
_BULK = type_filter("step", "heartbeat")


def _scan_events(path: Path) -> dict:
    out: dict = {"best": None, "step": 0, "gate": None}
    for d in JsonlReader(path, skip=_BULK):
        typ = d.get("type")
        if typ == "run_start":
            out["start"] = d
            out.pop("end", None)  # resumed into the same directory: that end is history
        elif typ == "eval":
            v = d.get("val_loss")
            if isinstance(v, int | float) and math.isfinite(v):
                out["best"] = v if out["best"] is None else min(out["best"], v)
            out["step"] = max(out["step"], _int(d.get("step")))
        elif typ == "gate":
            out["gate"] = "passed" if d.get("passed") or out["gate"] == "passed" else "not passed"
        elif typ == "run_end":
            out["end"] = d
        elif typ == "checkpoint":
            out["step"] = max(out["step"], _int(d.get("step")))
    out["t_last"] = _last_step(path)
    return out


def _int(x: object) -> int:
    return x if isinstance(x, int) and not isinstance(x, bool) else 0


def _last_step(path: Path) -> int | None:
    """The step of the newest step/heartbeat line, from the file's last 64 KiB."""
    for d in reversed(tail_objects(path, 64 << 10)):
        if isinstance(d.get("step"), int):
            return d["step"]
    return None


def summarize(run_dir: Path) -> RunRow:
    ev = _scan_events(run_dir / "events.jsonl")
    start, end = ev.get("start") or {}, ev.get("end")
    sup = read_info(run_dir) or {}
    pid, ctime = sup.get("pid") or start.get("pid"), sup.get("create_time")
    if ctime is None:  # a loop of its own (no supervisor): the pid that announced itself
        ctime = announced(pid, start.get("t"))
    step = max(ev["step"], ev.get("t_last") or 0, (end or {}).get("step") or 0)
    if end is not None:
        status = end.get("status") or "completed"
    elif pid_is(pid, ctime):
        status = "live" if start else "starting"
    else:
        status = "failed"  # gone without run_end: crashed or killed
    started = sup.get("started") or start.get("t")
    wall = (end or {}).get("wall_s")
    if wall is None and status in ("live", "starting") and started:
        wall = time.time() - started
    return RunRow(
        run_dir=run_dir,
        run_id=run_dir.name,
        profile=start.get("profile") or run_dir.name.split("-", 2)[-1],
        status=status,
        step=step,
        total_steps=start.get("total_steps"),
        best_val=ev["best"],
        gate=ev["gate"] or "–",
        started=started,
        wall_s=wall,
        energy_kwh=kwh_of(read_energy(run_dir)) if end is not None or status == "failed" else None,
    )


def list_runs(logs: Path = LOGS) -> list[RunRow]:
    return [summarize(d) for d in run_dirs(logs)]
