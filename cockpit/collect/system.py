"""The machine around the trainer: CPU per core, RAM, swap, and free disk on the
run directory's filesystem. A display-free collector like cockpit.collect.sampling: a
timestamped snapshot, never an exception."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from cockpit.collect.sampling import MIB, plain
from core.jsonl import read_jsonl


@dataclass(frozen=True, slots=True)
class SystemSnapshot:
    t: float
    cpu_pct: float | None  # all cores, since the previous sample (or since construction)
    cpu_pct_per_core: tuple[float, ...]
    ram_used_mib: float  # total - available: what new allocations cannot have
    ram_total_mib: float
    ram_pct: float
    swap_used_mib: float
    swap_total_mib: float
    disk_free_mib: float | None  # free to a non-root user on the filesystem of disk_path
    disk_total_mib: float | None
    disk_path: str

    def to_dict(self) -> dict:
        return plain(self)


def _cpu_busy_total() -> list[tuple[float, float]]:
    """(busy s, total s) per core, from one read of /proc/stat."""
    out = []
    for ct in psutil.cpu_times(percpu=True):
        # guest time is already counted in user/nice (psutil's cpu_percent does the same)
        total = sum(ct) - getattr(ct, "guest", 0.0) - getattr(ct, "guest_nice", 0.0)
        out.append((total - ct.idle - getattr(ct, "iowait", 0.0), total))
    return out


class SystemSampler:
    """CPU from our own deltas (psutil.cpu_percent keeps one state per interpreter, which
    any other caller would disturb), RAM, swap, and free disk under the run directory."""

    def __init__(self, disk_path: str | Path):
        self.disk_path = str(disk_path)
        try:
            self._prev = _cpu_busy_total()  # baseline: the first sample already has a delta
        except Exception:
            self._prev = []
        self._cpu: tuple[float | None, tuple[float, ...]] = (None, (0.0,) * len(self._prev))

    def sample(self) -> SystemSnapshot:
        t = time.time()
        try:
            cur = _cpu_busy_total()
            if len(cur) != len(self._prev):  # a core went on/offline: restart the deltas
                self._prev, self._cpu = cur, (None, (0.0,) * len(cur))
            d = [(c[0] - p[0], c[1] - p[1]) for c, p in zip(cur, self._prev, strict=True)]
            total = sum(x[1] for x in d)
            if total > 0:  # else no tick has passed: keep the last figures
                per = tuple(min(100.0, max(0.0, 100 * b / n)) if n > 0 else 0.0 for b, n in d)
                busy = min(100.0, max(0.0, 100 * sum(x[0] for x in d) / total))  # float noise
                self._cpu, self._prev = (busy, per), cur
        except Exception:
            pass
        try:
            vm, sw = psutil.virtual_memory(), psutil.swap_memory()
            ram = ((vm.total - vm.available) / MIB, vm.total / MIB, vm.percent)
            swap = (sw.used / MIB, sw.total / MIB)
        except Exception:
            ram, swap = (0.0, 0.0, 0.0), (0.0, 0.0)
        disk: tuple[float | None, float | None] = (None, None)
        path = Path(self.disk_path)
        while not path.exists() and path != path.parent:
            path = path.parent  # the run directory may not exist yet
        try:
            du = shutil.disk_usage(path)
            disk = (du.free / MIB, du.total / MIB)
        except OSError:
            pass
        return SystemSnapshot(t, *self._cpu, *ram, *swap, *disk, self.disk_path)


# -----------------------------------------------------------------------------
# system.jsonl, as the session records and replays it


def system_lines(path: Path) -> Iterator[dict]:
    """system.jsonl's samples, one at a time (a day of them is too many to hold); a
    torn last line from a killed cockpit is left out."""
    for d in read_jsonl(path):
        if isinstance(d.get("t"), int | float):
            yield d


def without_threads(proc: dict) -> dict:
    return dict(proc, procs=[dict(p, threads=[]) for p in proc.get("procs") or []])
