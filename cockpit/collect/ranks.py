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

At scale the reader reads `ranks/node-<NODE>.jsonl` instead: one file per node,
where each rank appends its start and end lines and, once a second, one summary of
its steps with its own medians (core/ranklog.py), so a tick at a thousand ranks
reads a file per node and a line per rank, and judges from medians the ranks
computed. Runs without node files (older runs, other writers) are read rank file
by rank file as before.

Why fwd_ms: under DDP every rank waits for the slowest in the gradient
all-reduce, so step_ms is nearly the same on all of them; the time a rank
spends on its own data and forward is what shows the slow one.

SIGUSR1 (save) and SIGUSR2 (stacks) go to the rank processes running here
(`running_pids`), not to torchrun (cockpit.supervisor says why).
"""

from __future__ import annotations

import functools
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
    # from a node file's `steps` summaries: the rank's own medians over `window` steps
    med_step_ms: float | None = None
    med_fwd_ms: float | None = None
    window: int = 0
    version: int = 0  # lines fed so far: a snapshot rebuilds the figures of ranks that moved
    _fig: tuple | None = field(default=None, repr=False)  # (version, gone, RankFigures)

    def feed(self, d: dict) -> None:
        self.version += 1
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
        elif typ == "steps":  # a node file's summary of the rank's steps since the last
            self.step = _int(d.get("step")) or self.step
            self.last, self.t_last = d, _num(t)
            self.med_step_ms, self.med_fwd_ms = (
                _num(d.get("step_ms_med")),
                _num(d.get("fwd_ms_med")),
            )
            self.window = _int(d.get("window")) or 0
        elif typ == "end":
            self.end = d

    def median(self, key: str) -> float | None:
        """The median of the recent `key` (step_ms or fwd_ms): the rank's own when it sent
        one, else over the lines read."""
        sent = self.med_step_ms if key == "step_ms" else self.med_fwd_ms
        if sent is not None:
            return sent
        q = self.step_ms if key == "step_ms" else self.fwd_ms
        return statistics.median(q) if q else None

    def points(self, key: str) -> int:
        sent = self.med_step_ms if key == "step_ms" else self.med_fwd_ms
        return (
            self.window
            if sent is not None
            else len(self.step_ms if key == "step_ms" else self.fwd_ms)
        )


def _num(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _int(x: object) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


RANK_FILE = re.compile(r"^rank-(\d+)\.jsonl$")
NODE_FILE = re.compile(r"^node-[A-Za-z0-9._-]{1,64}\.jsonl$")


class RankReader:
    """Follows every ranks/rank-N.jsonl of a run: each poll reads only what was
    appended since the last one, and keeps a torn last line until it is complete."""

    def __init__(self, run_dir: Path, window: int = WINDOW):
        self.dir = Path(run_dir) / "ranks"
        self.window = window
        self.states: dict[int, RankState] = {}
        self._readers: dict[int, JsonlReader] = {}
        self._node_readers: dict[str, JsonlReader] = {}

    def poll(self) -> dict[int, RankState]:
        try:
            names = os.listdir(self.dir)
        except OSError:
            return self.states
        nodes = [n for n in names if NODE_FILE.match(n)]
        if nodes:  # a file a node, a line a rank a second: what keeps a big run cheap
            for name in nodes:
                self._read_node(name)
            return self.states
        for name in names:
            m = RANK_FILE.match(name)
            if m:
                self._read(int(m.group(1)), self.dir / name)
        return self.states

    def _state(self, rank: int) -> RankState:
        st = self.states.get(rank)
        if st is None:
            st = self.states[rank] = RankState(rank)
            st.step_ms, st.fwd_ms = deque(maxlen=self.window), deque(maxlen=self.window)
        return st

    def _read(self, rank: int, path: Path) -> None:
        reader = self._readers.get(rank)
        if reader is None:
            reader = self._readers[rank] = JsonlReader(path)
        for d in reader:  # what was appended since the last poll; a torn line waits
            self._state(rank).feed(d)

    def _read_node(self, name: str) -> None:
        reader = self._node_readers.get(name)
        if reader is None:
            reader = self._node_readers[name] = JsonlReader(self.dir / name)
        for d in reader:
            rank = _int(d.get("rank"))
            if rank is not None and 0 <= rank < 1 << 20:
                self._state(rank).feed(d)

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


@functools.lru_cache(maxsize=1)
def _this_host() -> str:
    return socket.gethostname()  # asked once: a tick at 1024 ranks asks for every rank


def pid_alive(st: RankState) -> bool | None:
    """Whether a rank's process lives; None when it runs on another host (cannot tell)."""
    if not st.pid or (st.host and st.host != _this_host()):
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
    return stragglers_from_medians(meds, frac, min_diff_ms, key)


def stragglers_from_medians(
    meds: Mapping[int, float],
    frac: float = STRAGGLER_FRAC,
    min_diff_ms: float = 1.0,
    key: str = "fwd_ms",
) -> list[Straggler]:
    """find_stragglers from each rank's median. The median of the others is read off
    the sorted medians with the rank's own taken out: O(N log N) for N ranks, where
    building each rank's list of the others was O(N^2) (0.6 s a tick at 1024 ranks)."""
    order = sorted(meds.items(), key=lambda kv: kv[1])
    vals = [v for _, v in order]
    n = len(vals) - 1  # how many "others" each rank has
    if n < 1:
        return []

    def other(k: int, i: int) -> float:  # the k-th smallest of vals without index i
        return vals[k] if k < i else vals[k + 1]

    out = []
    for i, (r, m) in enumerate(order):
        base = other(n // 2, i) if n % 2 else (other(n // 2 - 1, i) + other(n // 2, i)) / 2
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
        if rep is None and end is None and st is not None and alive(st) is not False:
            continue  # running, or on another host: the common case, decided first
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
        elif end is None and st is not None:  # alive() said False above
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
    """One rank's figures; `gone`: it failed without an end line (killed, crashed hard).
    Kept on the state until it is fed again: at a thousand ranks most have not moved."""
    if st._fig is not None and st._fig[0] == st.version and st._fig[1] == gone:
        return st._fig[2]
    fig = _figures(st, gone)
    st._fig = (st.version, gone, fig)
    return fig


def _figures(st: RankState, gone: bool) -> RankFigures:
    last = st.last
    cuda = _num(last.get("cuda_max_alloc_mib"))
    return RankFigures(
        rank=st.rank,
        pid=st.pid,
        host=st.host,
        step=st.step,
        step_ms=_num(last.get("step_ms")),
        fwd_ms=_num(last.get("fwd_ms")),
        median_step_ms=st.median("step_ms"),
        median_fwd_ms=st.median("fwd_ms"),
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
    figs = [figures(st) for st in ranks]  # cached unless the rank moved (gone ones redone below)
    key = "fwd_ms" if ranks and all(st.points("fwd_ms") for st in ranks) else "step_ms"
    meds = {}
    for st, f in zip(ranks, figs, strict=True):
        m = f.median_fwd_ms if key == "fwd_ms" else f.median_step_ms
        if m is not None and st.points(key) >= 5:  # find_stragglers' min_points
            meds[st.rank] = m
    failures = find_failures(states, log_text, alive)
    failed = {f.rank for f in failures}
    return RanksSnapshot(
        t=time.time(),
        ranks=tuple(
            figures(st, True) if st.rank in failed else f for st, f in zip(ranks, figs, strict=True)
        ),
        stragglers=tuple(stragglers_from_medians(meds, key=key)),
        failures=tuple(failures),
    )
