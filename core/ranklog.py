"""Per-rank figures: `ranks/rank-N.jsonl` in the run directory, one file per rank.

Under torchrun (world size > 1) every rank, rank 0 included, writes its own
small record of each step, so the cockpit can show each rank's step time and
memory, flag a straggler, and tell which rank died. events.jsonl stays rank
0's alone (docs/architecture.md); these files are a side channel, not events.
A single process writes none (NullRankLog).

Schema version 1, one JSON object a line, each with `v`, `t` (unix seconds)
and `type`; readers ignore unknown fields and types and skip a torn last line:

    {"type": "start", "rank", "local_rank", "world_size", "pid", "host", "device"}
    {"type": "step", "step", "step_ms", "fwd_ms", "rss_mib", "cuda_alloc_mib", "cuda_max_alloc_mib",
     "cuda_max_reserved_mib"}
    {"type": "end", "rank", "step", "status", "exit_code"}

- `step_ms`: the rank's wall time of the step. Nearly the same on every rank:
  the gradient all-reduce makes each rank wait for the slowest.
- `fwd_ms`: data + forward time of the rank's micro-batches, which no
  collective touches (DDP is built with broadcast_buffers=False), so the
  straggler is the rank whose fwd_ms is larger. On CUDA it is timed with CUDA
  events (the GPU's own time, read after the step's sync), on CPU with a clock.
- `rss_mib`: the rank's resident memory (/proc/self/statm; None elsewhere);
  `cuda_*_mib`: torch's allocated / peak-allocated memory on its GPU (None on CPU).

Cheap by design: lines are buffered in memory and written and flushed at most
once a second (and at the end), so a fast loop pays a dict and a list append a
step. A rank killed hard loses at most its last second of figures, and its
file then has no `end` line: that, with its pid gone, tells a rank that died.

**The node file, for the cockpit at scale.** Reading a thousand rank files every
second costs the cockpit ~0.1 ms each, and on shared storage (NFS: no inotify)
a thousand opens a second is worse. So each flush also appends ONE line for the
rank to `ranks/node-<NODE>.jsonl`, shared by the ranks of its node (torchrun's
GROUP_RANK; the host name outside torchrun): the rank's `start` and `end` lines
as above, and in place of its step lines one summary of them,

    {"type": "steps", "rank", "step", "n", "step_ms", "fwd_ms", "step_ms_med", "fwd_ms_med",
     "window", "rss_mib", "cuda_alloc_mib", "cuda_max_alloc_mib", "cuda_max_reserved_mib"}

(`n` steps since the last summary, the newest step's figures, the medians over
the rank's last `window` steps, the newest memory figures). The cockpit reads
the node files (one per node) and no rank file when they exist. Each line goes
out in one write() on a file opened O_APPEND, which Linux keeps whole between
the processes of one machine, local disk or NFS; the ranks of another node
append to a file of their own, as appends from two NFS clients can interleave.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch

SCHEMA_VERSION = 1
MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


WINDOW = 50  # recent steps a rank's medians cover (cockpit.collect.ranks.WINDOW too)


def rank_path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / "ranks" / f"rank-{rank}.jsonl"


def node_name() -> str:
    """This rank's node: torchrun's GROUP_RANK (the node rank), else the host name."""
    group = os.environ.get("GROUP_RANK")
    if group and group.isdigit():
        return group
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"


def node_path(run_dir: Path, node: str | None = None) -> Path:
    return Path(run_dir) / "ranks" / f"node-{node if node is not None else node_name()}.jsonl"


def rss_mib() -> float | None:
    """This process's resident memory, from one read of /proc/self/statm (~10 µs)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE / MIB
    except (OSError, ValueError, IndexError):
        return None


# -----------------------------------------------------------------------------
# forward timing: a clock on CPU, CUDA events on a GPU (launches return at once)


class FwdTimer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._pairs: list = []
        self._cpu_s = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._pairs.append([ev, None])
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._pairs[-1][1] = ev
        else:
            self._cpu_s += time.perf_counter() - self._t0

    def take_ms(self) -> float:
        """The step's total, then reset. Call after the step synchronized (loss.item())."""
        if self.cuda:
            ms = sum(a.elapsed_time(b) for a, b in self._pairs if b is not None)
            self._pairs = []
            return ms
        ms, self._cpu_s = self._cpu_s * 1000, 0.0
        return ms


# -----------------------------------------------------------------------------
# the writers


class NullRankLog:
    """One process: nothing to compare, nothing written."""

    def step(self, step: int, step_ms: float, fwd_ms: float | None) -> None:
        pass

    def close(self, step: int, status: str, exit_code: int) -> None:
        pass


class RankLog:
    """Appends this rank's lines to ranks/rank-N.jsonl, flushed every `flush_s` seconds."""

    def __init__(
        self,
        run_dir: Path,
        rank: int,
        local_rank: int,
        world_size: int,
        device: torch.device | str,
        flush_s: float | None = None,
    ):
        path = rank_path(run_dir, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")
        # shared with this node's other ranks: one os.write per line batch, O_APPEND
        self._node = os.open(node_path(run_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.rank = rank
        self.device = torch.device(device)
        # once a second, and less often past 256 ranks (every 4 s at 1024): what the
        # cockpit reads a second stays ~256 lines however big the run
        self.flush_s = flush_s if flush_s is not None else max(1.0, world_size / 256)
        self._buf: list[str] = []
        self._node_buf: list[str] = []  # start/end lines for the node file
        self._steps: list[dict] = []  # step lines since the last flush, summarised there
        self._win_step: deque[float] = deque(maxlen=WINDOW)
        self._win_fwd: deque[float] = deque(maxlen=WINDOW)
        self._t_flush = time.monotonic()
        self._write(
            "start",
            rank=rank,
            local_rank=local_rank,
            world_size=world_size,
            pid=os.getpid(),
            host=socket.gethostname(),
            device=str(device),
        )
        self._flush()
        # ranks start together: spread their flushes over the interval, not all in one tick
        self._t_flush -= self.flush_s * (rank % 64) / 64

    def _write(self, typ: str, **fields: Any) -> None:
        d = {"v": SCHEMA_VERSION, "t": round(time.time(), 3), "type": typ, **fields}
        line = json.dumps(d) + "\n"
        self._buf.append(line)
        if typ == "step":
            self._steps.append(d)
        else:  # start and end go to the node file as they are, in order with the summaries
            self._node_buf.append(self._summary() + line)

    def _summary(self) -> str:
        """The step lines since the last flush as one `steps` line ('' when none)."""
        if not self._steps:
            return ""
        last = self._steps[-1]
        for d in self._steps:
            if d["step_ms"] is not None:
                self._win_step.append(d["step_ms"])
            if d["fwd_ms"] is not None:
                self._win_fwd.append(d["fwd_ms"])
        out = {k: v for k, v in last.items() if k != "type"}
        out.update(
            type="steps",
            rank=self.rank,
            n=len(self._steps),
            step_ms_med=round(statistics.median(self._win_step), 3) if self._win_step else None,
            fwd_ms_med=round(statistics.median(self._win_fwd), 3) if self._win_fwd else None,
            window=len(self._win_step),
        )
        self._steps = []
        return json.dumps(out) + "\n"

    def _flush(self) -> None:
        if self._buf and not self._f.closed:
            self._f.write("".join(self._buf))
            self._f.flush()
            node = "".join(self._node_buf) + self._summary()
            if node:
                try:
                    os.write(self._node, node.encode())  # one write: whole among the node's ranks
                except OSError:
                    pass  # the rank file has it all; a full disk must not stop training
        self._buf.clear()
        self._node_buf.clear()
        self._t_flush = time.monotonic()

    def step(self, step: int, step_ms: float, fwd_ms: float | None) -> None:
        cuda = self.device.type == "cuda"
        self._write(
            "step",
            step=step,
            step_ms=round(step_ms, 3),
            fwd_ms=None if fwd_ms is None else round(fwd_ms, 3),
            rss_mib=_round(rss_mib()),
            cuda_alloc_mib=_round(torch.cuda.memory_allocated(self.device) / MIB) if cuda else None,
            cuda_max_alloc_mib=_round(torch.cuda.max_memory_allocated(self.device) / MIB)
            if cuda
            else None,
            cuda_max_reserved_mib=_round(torch.cuda.max_memory_reserved(self.device) / MIB)
            if cuda
            else None,
        )
        if time.monotonic() - self._t_flush >= self.flush_s:
            self._flush()

    def flush(self) -> None:
        """Write what is buffered now (the loop flushes by itself every flush_s)."""
        if not self._f.closed:
            self._flush()

    def close(self, step: int, status: str, exit_code: int) -> None:
        if self._f.closed:
            return
        self._write("end", rank=self.rank, step=step, status=status, exit_code=exit_code)
        self._flush()
        self._f.close()
        os.close(self._node)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def rank_log(
    run_dir: Path, rank: int, local_rank: int, world_size: int, device: torch.device | str
) -> RankLog | NullRankLog:
    """The writer for this process: a RankLog under torchrun (or when CORE_RANK_LOG=1:
    the pre-flight probe reads one process's torch memory figures from it), else a
    NullRankLog."""
    if world_size > 1:
        return RankLog(run_dir, rank, local_rank, world_size, device)
    if os.environ.get("CORE_RANK_LOG") == "1":  # the probe stops us hard: every step counts
        return RankLog(run_dir, rank, local_rank, world_size, device, flush_s=0.0)
    return NullRankLog()
