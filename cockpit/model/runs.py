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
from core.checkpoint import atomic_write_text
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


# -----------------------------------------------------------------------------
# finding runs: a filter, and pins that keep runs on top

LIVE = ("live", "starting")
STATUS_GROUPS = {
    "live": LIVE,
    "running": LIVE,
    "ended": ("completed", "gate_passed", "early_stopped", "interrupted", "diverged", "failed"),
    "ok": ("completed", "gate_passed", "early_stopped"),
    "bad": ("diverged", "failed"),
}
PINS = ".pins"  # under logs/: one pinned run id a line


@dataclass(frozen=True)
class RunFilter:
    """What the runs list shows: `profile:P` (part of the profile's name), `status:S`
    (a status, or a group: live, ended, ok, bad; several with commas), and words
    that must all be in the run id or the profile (case ignored)."""

    profile: str = ""
    statuses: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> RunFilter:
        profile, statuses, words = "", list[str](), list[str]()
        for part in text.lower().split():
            key, colon, val = part.partition(":")
            if colon and key in ("profile", "p"):
                profile = val
            elif colon and key in ("status", "s"):
                for s in val.split(","):
                    statuses += STATUS_GROUPS.get(s, (s,)) if s else ()
            else:
                words.append(part)
        return cls(profile, tuple(statuses), tuple(words))

    def __bool__(self) -> bool:
        return bool(self.profile or self.statuses or self.words)

    def matches(self, r: RunRow) -> bool:
        prof = r.profile.lower()
        if self.profile and self.profile not in prof:
            return False
        if self.statuses and r.status not in self.statuses:
            return False
        hay = f"{r.run_id.lower()} {prof}"
        return all(w in hay for w in self.words)

    def describe(self) -> str:
        parts = ([f"profile ~ {self.profile}"] if self.profile else []) + (
            [f"status in {', '.join(dict.fromkeys(self.statuses))}"] if self.statuses else []
        )
        parts += [f"“{w}”" for w in self.words]
        return " · ".join(parts)


def load_pins(logs: Path = LOGS) -> set[str]:
    """The pinned run ids (logs/.pins); none when the file is missing or unreadable."""
    try:
        text = (logs / PINS).read_text(errors="replace")
    except OSError:
        return set()
    return {line.strip() for line in text.splitlines() if line.strip()}


def save_pins(pins: set[str], logs: Path = LOGS) -> None:
    """Write logs/.pins atomically (a crash leaves the old list or the new, whole)."""
    atomic_write_text(logs / PINS, "".join(f"{p}\n" for p in sorted(pins)))


def arrange(rows: list[RunRow], pins: set[str], flt: RunFilter | None = None) -> list[RunRow]:
    """The rows a list shows: those the filter lets through, pinned first (newest
    first within each group, as given)."""
    shown = [r for r in rows if flt is None or flt.matches(r)]
    return [r for r in shown if r.run_id in pins] + [r for r in shown if r.run_id not in pins]
