"""Every run under logs/, summarised from its files without loading it whole:
result.json when the run finished, else the events (only run_start, eval and
run_end lines are parsed) and whether its process still lives."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from cockpit.supervisor import LOGS, pid_is, read_info


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


def _scan_events(path: Path) -> dict:
    out: dict = {"best": None, "step": 0, "gate": None}
    try:
        f = open(path, "rb")
    except OSError:
        return out
    with f:
        for line in f:
            # parse only the lines that matter; step lines are most of a long run
            if b'"type": "step"' in line[:64] or b'"type": "heartbeat"' in line[:64]:
                continue
            try:
                d = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            typ = d.get("type") if isinstance(d, dict) else None
            if typ == "run_start":
                out["start"] = d
                out.pop("end", None)  # resumed into the same directory: that end is history
            elif typ == "eval":
                v = d.get("val_loss")
                if isinstance(v, int | float) and math.isfinite(v):
                    out["best"] = v if out["best"] is None else min(out["best"], v)
                out["step"] = max(out["step"], d.get("step") or 0)
            elif typ == "gate":
                out["gate"] = (
                    "passed" if d.get("passed") or out["gate"] == "passed" else "not passed"
                )
            elif typ == "run_end":
                out["end"] = d
            elif typ == "checkpoint":
                out["step"] = max(out["step"], d.get("step") or 0)
        out["t_last"] = _last_step(f)
    return out


def _last_step(f) -> int | None:
    """The step of the newest step/heartbeat line, from the file's last 64 KiB."""
    f.seek(0, 2)
    f.seek(max(0, f.tell() - (64 << 10)))
    for line in reversed(f.read().splitlines()):
        try:
            d = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(d, dict) and isinstance(d.get("step"), int):
            return d["step"]
    return None


def summarize(run_dir: Path) -> RunRow:
    ev = _scan_events(run_dir / "events.jsonl")
    start, end = ev.get("start") or {}, ev.get("end")
    sup = read_info(run_dir) or {}
    pid, ctime = sup.get("pid") or start.get("pid"), sup.get("create_time")
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
    )


def list_runs(logs: Path = LOGS) -> list[RunRow]:
    return [summarize(d) for d in run_dirs(logs)]
