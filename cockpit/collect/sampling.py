"""The process sampler: what the trainer's process tree is doing (the machine: cockpit.collect.system).

Display-free collectors. Each `sample()` returns a timestamped frozen snapshot and never
raises: a reading that cannot be taken is None. `to_dict()` gives the JSON-ready line the
cockpit appends to `system.jsonl`; the run model reads the same dicts live and on replay,
so the key names are a contract (units in the names).

    ps = ProcessSampler(trainer_pid)
    snap = ps.sample()  # root first, then every descendant, each with its threads

CPU% is a delta of the kernel's 10 ms ticks over the wall time between two samples:
sample every ~0.5 s or more for readings good to a few percent.

Speed: a 64-thread trainer costs ~1.2-1.6 ms of CPU a sample (bench/sampler.py). Per-thread
times come from our own reads of /proc/<pid>/task/<tid>/stat, whose line also carries the
thread's name: 2-3x cheaper than psutil's threads() plus a comm read per thread. The two
costly readings, USS (smaps_rollup walks the page tables, ~30 ms per GiB) and the open
files list, refresh every `slow_every_s`; the descendant scan (it reads the stat of every
process on the machine) every `tree_every_s`. A USS read over 50 ms of CPU (a process of
a few GiB) stretches its own cadence to keep the walk under 1% of the time.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def plain(obj: DataclassInstance) -> dict:
    """A snapshot dataclass as a JSON-ready dict: floats rounded (non-finite -> None, so
    no NaN reaches system.jsonl), tuples as lists, nested snapshots through their to_dict."""
    return {f.name: _plain(getattr(obj, f.name), 3 if f.name == "t" else 2) for f in fields(obj)}


def _plain(v: Any, nd: int = 2) -> Any:
    if isinstance(v, float):
        return round(v, nd) if math.isfinite(v) else None
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v.to_dict() if hasattr(v, "to_dict") else v


# -----------------------------------------------------------------------------
# snapshots


@dataclass(frozen=True, slots=True)
class ThreadSample:
    tid: int
    name: str  # the OS thread name (comm), as torch / the trainer set it
    cpu_pct: float | None  # % of one core since the previous sample (None on a thread's first)
    user_s: float  # cumulative
    system_s: float

    def to_dict(self) -> dict:
        return plain(self)


@dataclass(frozen=True, slots=True)
class ProcSample:
    pid: int
    ppid: int
    name: str
    cmd: str  # first 120 chars of the joined cmdline
    status: str  # psutil status: running / sleeping / disk-sleep / stopped / zombie / ...
    cpu_pct: float | None  # % of one core since the previous sample (None on the first)
    num_threads: int
    rss_mib: float
    uss_mib: float | None  # slow cadence; the last value in between
    num_fds: int | None
    open_files: int | None  # slow cadence
    read_mib: float | None  # cumulative bytes fetched from storage
    write_mib: float | None  # cumulative bytes sent to storage
    threads: tuple[ThreadSample, ...]  # by cpu_pct, highest first, None last

    def to_dict(self) -> dict:
        return plain(self)


@dataclass(frozen=True, slots=True)
class ProcessSnapshot:
    t: float  # unix seconds
    root_pid: int
    alive: bool  # False once the root is gone or a zombie
    status: str | None  # the root's status ("stopped" when SIGSTOPped)
    procs: tuple[ProcSample, ...]  # root first, then every descendant
    cpu_pct: float | None  # totals over procs
    rss_mib: float
    uss_mib: float | None
    num_threads: int
    error: str | None  # why the root could not be read, else None

    def to_dict(self) -> dict:
        return plain(self)


# -----------------------------------------------------------------------------
# /proc readers (Linux); each returns None or [] when the file is gone


def _read(path: str, size: int = 4096) -> bytes | None:
    # os.open/os.read: a third of the cost of open() for these tiny generated files
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_threads(pid: int) -> list[tuple[int, str, int, int, int]]:
    """(tid, name, utime ticks, stime ticks, starttime ticks) for each live thread."""
    base = f"/proc/{pid}/task/"
    try:
        tids = os.listdir(base)
    except OSError:
        return []
    out = []
    for tid in tids:
        d = _read(base + tid + "/stat", 1024)
        if not d:
            continue  # thread exited between listdir and read
        rp = d.rfind(b")")  # the name may itself hold ") "
        f = d[rp + 2 :].split(b" ", 20)
        name = d[d.find(b"(") + 1 : rp].decode(errors="replace")
        out.append((int(tid), name, int(f[11]), int(f[12]), int(f[19])))
    return out


def _read_uss_mib(pid: int) -> float | None:
    d = _read(f"/proc/{pid}/smaps_rollup", 8192)
    if not d:
        return None
    kib = 0
    for line in d.split(b"\n"):
        if line.startswith((b"Private_Clean:", b"Private_Dirty:", b"Private_Hugetlb:")):
            kib += int(line.split()[1])
    return kib / 1024


# -----------------------------------------------------------------------------
# process tree sampler


@dataclass
class _Entry:
    """What we keep about one pid between samples."""

    proc: psutil.Process
    start: int | None = None  # main thread's starttime ticks: a changed value = reused pid
    cmd: str | None = None
    t: float | None = None  # monotonic time of the previous sample
    cpu_s: float | None = None
    thr_s: dict[int, float] = field(default_factory=dict)  # tid -> user+system s
    slow_next: float = -math.inf  # monotonic time of the next USS / open files reading
    uss_mib: float | None = None
    open_files: int | None = None


class ProcessSampler:
    """Samples a process and all its descendants (DataLoader workers, torchrun ranks)."""

    def __init__(self, pid: int, *, slow_every_s: float = 5.0, tree_every_s: float = 2.0):
        self.pid = pid
        self.slow_every_s = slow_every_s
        self.tree_every_s = tree_every_s
        self._cache: dict[int, _Entry] = {}
        self._tree: list[int] = []  # descendant pids from the last scan
        self._tree_t = -math.inf
        self._gone: str | None = None  # sticky: a dead root's pid may be reused by a stranger

    def sample(self) -> ProcessSnapshot:
        t, now = time.time(), time.monotonic()
        if self._gone:
            return _dead(t, self.pid, None, self._gone)
        try:
            return self._sample(t, now)
        except Exception as e:  # never raise into the UI
            return _dead(t, self.pid, None, f"sampler error: {e!r}", psutil.pid_exists(self.pid))

    def _sample(self, t: float, now: float) -> ProcessSnapshot:
        root = self._cache.get(self.pid)
        if root is None:
            try:
                root = self._cache[self.pid] = _Entry(psutil.Process(self.pid))
            except psutil.AccessDenied:
                return _dead(t, self.pid, None, "access denied", alive=True)
            except (psutil.Error, ValueError):
                self._gone = "no such process"
                return _dead(t, self.pid, None, self._gone)
        if now - self._tree_t >= self.tree_every_s:
            self._scan_tree(root)
            self._tree_t = now
        try:
            rs = self._sample_proc(self.pid, root, now)
        except psutil.AccessDenied:
            return _dead(t, self.pid, None, "access denied", alive=True)
        if rs is None:
            self._cache.clear()
            self._gone = "no such process"
            return _dead(t, self.pid, None, self._gone)
        if isinstance(rs, str):  # psutil.STATUS_ZOMBIE: exited; its parent has not reaped it yet
            return _dead(t, self.pid, rs, "exited (zombie, not yet reaped)")
        procs: list[ProcSample] = [rs]
        for pid in self._tree:
            e = self._cache.get(pid)
            try:
                ps = self._sample_proc(pid, e, now) if e else None
            except psutil.Error:
                ps = None
            if not isinstance(ps, ProcSample):
                self._cache.pop(pid, None)  # vanished mid-sample: dropped silently
                continue
            procs.append(ps)
        cpus = [p.cpu_pct for p in procs if p.cpu_pct is not None]
        usss = [p.uss_mib for p in procs if p.uss_mib is not None]
        return ProcessSnapshot(
            t=t,
            root_pid=self.pid,
            alive=True,
            status=rs.status,
            procs=tuple(procs),
            cpu_pct=sum(cpus) if cpus else None,
            rss_mib=sum(p.rss_mib for p in procs),
            uss_mib=sum(usss) if usss else None,
            num_threads=sum(p.num_threads for p in procs),
            error=None,
        )

    def _scan_tree(self, root: _Entry) -> None:
        try:
            kids = root.proc.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            kids = []
        except psutil.Error:  # access denied: keep the last known tree
            return
        for k in kids:
            e = self._cache.get(k.pid)
            if e is None or e.proc != k:  # psutil compares (pid, create_time)
                self._cache[k.pid] = _Entry(k)
        self._tree = [k.pid for k in kids]
        keep = {self.pid, *self._tree}
        for pid in [p for p in self._cache if p not in keep]:
            del self._cache[pid]

    def _sample_proc(self, pid: int, e: _Entry, now: float) -> ProcSample | str | None:
        """None when the process is gone (or its pid now belongs to another process),
        "zombie" when it has exited but is not reaped yet."""
        p = e.proc
        try:
            with p.oneshot():
                status, ppid, name = p.status(), p.ppid(), p.name()
                if status == psutil.STATUS_ZOMBIE:
                    return status  # exited, not yet reaped: nothing left to read
                ct = p.cpu_times()
                rss_mib = p.memory_info().rss / MIB
                read_mib: float | None
                write_mib: float | None
                try:
                    io = p.io_counters()
                    read_mib, write_mib = io.read_bytes / MIB, io.write_bytes / MIB
                except (psutil.AccessDenied, AttributeError):
                    read_mib = write_mib = None
                try:
                    num_fds = p.num_fds()
                except psutil.AccessDenied:
                    num_fds = None
            slow = now >= e.slow_next
            if slow or e.cmd is None:  # slow cadence too: setproctitle may change it
                try:
                    e.cmd = " ".join(p.cmdline())[:120] or name
                except psutil.AccessDenied:
                    e.cmd = name
            if slow:
                c0 = time.thread_time()  # CPU, not wall: being preempted is not the walk's cost
                e.uss_mib = _read_uss_mib(pid)
                try:
                    e.open_files = len(p.open_files())
                except psutil.AccessDenied:
                    e.open_files = None
                # smaps_rollup walks the page tables under the mmap lock, ~30 ms per GiB:
                # a big trainer's reads space out to keep the walk under 1% of its time
                cost = time.thread_time() - c0
                e.slow_next = now + max(self.slow_every_s, 100 * cost if cost > 0.05 else 0.0)
        except psutil.ZombieProcess:  # turned zombie after status() was read
            return psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return None
        raw = _read_threads(pid)
        start = next((r[4] for r in raw if r[0] == pid), None)
        if not raw or (e.start is not None and start is not None and start != e.start):
            return None  # gone, or the pid now belongs to a process that is not ours
        e.start = e.start if e.start is not None else start
        dt = now - e.t if e.t is not None else 0.0
        cpu_s = ct.user + ct.system
        cpu_pct = 100 * max(0.0, cpu_s - e.cpu_s) / dt if e.cpu_s is not None and dt > 0 else None
        threads, thr_s = [], {}
        for tid, tname, ut, st, _ in raw:
            s = (ut + st) / CLK_TCK
            prev = e.thr_s.get(tid)
            # clamped: 10 ms ticks over a short interval can read above one core
            tp = min(100.0, 100 * max(0.0, s - prev) / dt) if prev is not None and dt > 0 else None
            threads.append(ThreadSample(tid, tname, tp, ut / CLK_TCK, st / CLK_TCK))
            thr_s[tid] = s
        threads.sort(key=lambda th: -1.0 if th.cpu_pct is None else th.cpu_pct, reverse=True)
        e.t, e.cpu_s, e.thr_s = now, cpu_s, thr_s
        return ProcSample(
            pid=pid,
            ppid=ppid,
            name=name,
            cmd=e.cmd,
            status=status,
            cpu_pct=cpu_pct,
            num_threads=len(raw),
            rss_mib=rss_mib,
            uss_mib=e.uss_mib,
            num_fds=num_fds,
            open_files=e.open_files,
            read_mib=read_mib,
            write_mib=write_mib,
            threads=tuple(threads),
        )


def _dead(
    t: float, pid: int, status: str | None, error: str, alive: bool = False
) -> ProcessSnapshot:
    return ProcessSnapshot(t, pid, alive, status, (), None, 0.0, None, 0, error)
