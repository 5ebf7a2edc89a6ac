"""Several ranks under torchrun: what each is doing (cockpit.supervisor launches them).

Display-free, like the other collectors. The core writes `ranks/rank-N.jsonl`
under torchrun (every rank, rank 0 too; core/ranklog.py has the schema);
`RankReader` follows those files incrementally, and the pure functions below
judge what they say:

    reader = RankReader(run_dir)
    snap = reader.sample(log_text=log_tail(run_dir, 400))  # RanksSnapshot, never raises
    snap.ranks        # per rank: step, step_ms, fwd_ms, memory, medians, status
    snap.stragglers   # ranks whose median fwd_ms (else step_ms) is > 20% above the others'
    snap.failures     # ranks that exited non-zero or vanished, with their last log lines

Why fwd_ms: under DDP every rank waits for the slowest in the gradient
all-reduce, so step_ms is nearly the same on all of them; the time a rank
spends on its own data and forward is what shows the slow one.

SIGUSR1 (save) and SIGUSR2 (stacks) go to the rank processes running here
(`running_pids`), not to torchrun (cockpit.supervisor says why).
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from core.jsonl import JsonlReader

WINDOW = 50  # recent steps kept per rank for the medians
STRAGGLER_FRAC = 0.2  # a rank this much slower than the median of the others is a straggler


# -----------------------------------------------------------------------------
# reading ranks/rank-N.jsonl


@dataclass
class RankState:
    """What one rank's file said so far."""

    rank: int
    pid: int | None = None
    host: str | None = None
    local_rank: int | None = None
    world_size: int | None = None
    device: str | None = None
    t_start: float | None = None
    step: int = 0
    last: dict = field(default_factory=dict)  # the newest step line
    t_last: float | None = None
    end: dict | None = None  # the end line of the newest start, if any
    step_ms: deque = field(default_factory=lambda: deque(maxlen=WINDOW))
    fwd_ms: deque = field(default_factory=lambda: deque(maxlen=WINDOW))

    def feed(self, d: dict) -> None:
        typ, t = d.get("type"), d.get("t")
        if typ == "start":  # a fresh start (a resume appends to the same file)
            self.pid, self.host = _int(d.get("pid")), d.get("host")
            self.local_rank, self.world_size = _int(d.get("local_rank")), _int(d.get("world_size"))
            self.device, self.t_start, self.end = d.get("device"), _num(t), None
        elif typ == "step":
            self.step = _int(d.get("step")) or self.step
            self.last, self.t_last = d, _num(t)
            for key, q in (("step_ms", self.step_ms), ("fwd_ms", self.fwd_ms)):
                v = _num(d.get(key))
                if v is not None:
                    q.append(v)
        elif typ == "end":
            self.end = d


def _num(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _int(x: object) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


RANK_FILE = re.compile(r"^rank-(\d+)\.jsonl$")


class RankReader:
    """Follows every ranks/rank-N.jsonl of a run: each poll reads only what was
    appended since the last one, and keeps a torn last line until it is complete."""

    def __init__(self, run_dir: Path, window: int = WINDOW):
        self.dir = Path(run_dir) / "ranks"
        self.window = window
        self.states: dict[int, RankState] = {}
        self._readers: dict[int, JsonlReader] = {}

    def poll(self) -> dict[int, RankState]:
        try:
            names = os.listdir(self.dir)
        except OSError:
            return self.states
        for name in names:
            m = RANK_FILE.match(name)
            if m:
                self._read(int(m.group(1)), self.dir / name)
        return self.states

    def _read(self, rank: int, path: Path) -> None:
        reader = self._readers.get(rank)
        if reader is None:
            reader = self._readers[rank] = JsonlReader(path)
        for d in reader:  # what was appended since the last poll; a torn line waits
            st = self.states.get(rank)
            if st is None:
                st = self.states[rank] = RankState(rank)
                st.step_ms, st.fwd_ms = deque(maxlen=self.window), deque(maxlen=self.window)
            st.feed(d)

    def sample(
        self, log_text: str = "", alive: Callable[[RankState], bool | None] | None = None
    ) -> RanksSnapshot:
        """Poll, then judge: figures, stragglers and failures. Never raises."""
        try:
            states = self.poll()
            return snapshot(states, log_text, alive or pid_alive)
        except Exception as e:  # a collector never raises into the UI
            return RanksSnapshot(time.time(), (), (), (), f"ranks reader error: {e!r}")


def read_all(run_dir: Path) -> dict[int, RankState]:
    """Every rank file read to its end (a poll reads each to its end)."""
    return RankReader(run_dir).poll()


def rank_pids(run_dir: Path) -> dict[int, int]:
    """{rank: pid} from the newest start line of each rank file."""
    return {r: s.pid for r, s in sorted(read_all(run_dir).items()) if s.pid}


def running_pids(states: Mapping[int, RankState]) -> list[int]:
    """The pids of the ranks running now on this host (for SIGUSR1/SIGUSR2): a pid
    from another host, or one the system gave to another process since, is not one."""
    return [
        st.pid
        for _, st in sorted(states.items())
        if st.pid and st.end is None and pid_alive(st) is True
    ]


def pid_alive(st: RankState) -> bool | None:
    """Whether a rank's process lives; None when it runs on another host (cannot tell)."""
    if not st.pid or (st.host and st.host != socket.gethostname()):
        return None
    try:
        p = psutil.Process(st.pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return st.t_start is None or p.create_time() <= st.t_start + 1.0
    except (psutil.Error, OSError):
        return False


# -----------------------------------------------------------------------------
# judging: stragglers and failures (pure functions)


@dataclass(frozen=True)
class Straggler:
    rank: int
    median_ms: float
    others_ms: float  # the median of the other ranks' medians
    ratio: float
    key: str  # the figure compared: fwd_ms or step_ms


def find_stragglers(
    series: Mapping[int, Sequence[float]],
    frac: float = STRAGGLER_FRAC,
    min_points: int = 5,
    min_diff_ms: float = 1.0,
    key: str = "fwd_ms",
) -> list[Straggler]:
    """Ranks whose median over their recent values exceeds the median of the other
    ranks' medians by more than `frac` (and by `min_diff_ms`, so a 1 ms step's jitter
    is not a straggler), slowest first. Ranks with fewer than `min_points` values
    are left out; fewer than two ranks: none."""
    meds = {r: statistics.median(v) for r, v in series.items() if len(v) >= min_points}
    out = []
    for r, m in meds.items():
        others = [x for q, x in meds.items() if q != r]
        if not others:
            continue
        base = statistics.median(others)
        if base > 0 and m > base * (1 + frac) and m - base >= min_diff_ms:
            out.append(Straggler(r, m, base, m / base, key))
    return sorted(out, key=lambda s: -s.ratio)


@dataclass(frozen=True)
class RankFailure:
    rank: int
    reason: str  # one line: what happened
    exit_code: int | None  # as torchrun or the rank's end line says (negative: killed by signal)
    root: bool  # torchrun's "first observed failure"
    log: str  # the rank's last output lines (its `[rankN]:` lines in stdout.log)


FAILURE_RE = re.compile(
    r"rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)\s*\n\s*exitcode\s*:\s*(-?\d+)\s*\(pid:\s*(\d+)\)"
    r"(?:[ \t]*\((\w+)\))?"
)
ROOT_MARK = "Root Cause (first observed failure):"


def parse_torchrun_failures(text: str) -> dict[int, dict]:
    """torchrun's ChildFailedError summary: {global rank: {local_rank, exit_code, pid,
    signal, root}}. The newest summary wins (a resumed run appends to stdout.log)."""
    out: dict[int, dict] = {}
    root_at = text.rfind(ROOT_MARK)
    start = text.rfind("Failures:", 0, root_at) if root_at >= 0 else -1
    for m in FAILURE_RE.finditer(text, max(start, 0)):
        out[int(m.group(1))] = {
            "local_rank": int(m.group(2)),
            "exit_code": int(m.group(3)),
            "pid": int(m.group(4)),
            "signal": m.group(5),
            "root": root_at >= 0 and m.start() > root_at,
        }
    return out


def rank_log(text: str, local_rank: int, n: int = 20) -> str:
    """The last n lines a rank printed, from stdout.log's `[rankN]:` lines, prefix cut."""
    tag = f"[rank{local_rank}]:"
    lines = [ln[len(tag) :] for ln in text.splitlines() if ln.startswith(tag)]
    return "\n".join(lines[-n:])


def find_failures(
    states: Mapping[int, RankState],
    log_text: str,
    alive: Callable[[RankState], bool | None] = lambda st: None,
) -> list[RankFailure]:
    """Ranks that failed: torchrun reported a non-zero exit, the rank's end line says
    `failed`, or its process is gone (alive() False) without an end line. An
    interrupted rank (130/143 with its end line) is no failure; a run that diverged
    ends the same on every rank and is the run's status, not a rank's."""
    reported = parse_torchrun_failures(log_text)
    out = []
    for r in sorted(set(states) | set(reported)):
        st, rep = states.get(r), reported.get(r)
        end = st.end if st else None
        local = st.local_rank if st and st.local_rank is not None else (rep or {}).get("local_rank")
        code = _int((end or {}).get("exit_code"))
        reason = None
        if end is not None and end.get("status") == "failed":
            reason = f"rank {r} failed at step {end.get('step')} (exit code {code})"
        elif rep is not None and end is None:
            code = rep["exit_code"]
            how = f"killed by {rep['signal']}" if rep["signal"] else f"exit code {code}"
            at = f" after step {st.step}" if st else ""
            reason = f"rank {r} {how}{at}, with no end line"
        elif end is None and st is not None and alive(st) is False:
            reason = f"rank {r} (pid {st.pid}) is gone after step {st.step}, with no end line"
        if reason is None:
            continue
        log = rank_log(log_text, local if local is not None else r)
        out.append(RankFailure(r, reason, code, bool(rep and rep["root"]), log))
    return sorted(out, key=lambda f: (not f.root, f.rank))


# -----------------------------------------------------------------------------
# the snapshot a display reads


@dataclass(frozen=True)
class RankFigures:
    rank: int
    pid: int | None
    host: str | None
    step: int
    step_ms: float | None  # the newest step
    fwd_ms: float | None
    median_step_ms: float | None  # over the recent window
    median_fwd_ms: float | None
    mem_mib: float | None  # CUDA peak allocated on a GPU, else RSS
    mem_kind: str  # "cuda_max_alloc" | "rss"
    t_last: float | None
    status: str  # running | gone (failed without an end line) | its end line's status
    exit_code: int | None


@dataclass(frozen=True)
class RanksSnapshot:
    t: float
    ranks: tuple[RankFigures, ...]
    stragglers: tuple[Straggler, ...]
    failures: tuple[RankFailure, ...]
    error: str | None = None


def figures(st: RankState, gone: bool = False) -> RankFigures:
    """One rank's figures; `gone`: it failed without an end line (killed, crashed hard)."""
    last = st.last
    cuda = _num(last.get("cuda_max_alloc_mib"))
    return RankFigures(
        rank=st.rank,
        pid=st.pid,
        host=st.host,
        step=st.step,
        step_ms=_num(last.get("step_ms")),
        fwd_ms=_num(last.get("fwd_ms")),
        median_step_ms=statistics.median(st.step_ms) if st.step_ms else None,
        median_fwd_ms=statistics.median(st.fwd_ms) if st.fwd_ms else None,
        mem_mib=cuda if cuda is not None else _num(last.get("rss_mib")),
        mem_kind="cuda_max_alloc" if cuda is not None else "rss",
        t_last=st.t_last,
        status=(st.end or {}).get("status") or ("gone" if gone else "running"),
        exit_code=_int((st.end or {}).get("exit_code")),
    )


def snapshot(
    states: Mapping[int, RankState],
    log_text: str = "",
    alive: Callable[[RankState], bool | None] = lambda st: None,
) -> RanksSnapshot:
    ranks = [states[r] for r in sorted(states)]
    key = "fwd_ms" if ranks and all(st.fwd_ms for st in ranks) else "step_ms"
    series = {st.rank: list(getattr(st, key)) for st in ranks}
    failures = find_failures(states, log_text, alive)
    failed = {f.rank for f in failures}
    return RanksSnapshot(
        t=time.time(),
        ranks=tuple(figures(st, st.rank in failed) for st in ranks),
        stragglers=tuple(find_stragglers(series, key=key)),
        failures=tuple(failures),
    )
