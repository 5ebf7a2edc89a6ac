"""Per-rank figures: `ranks/rank-N.jsonl` in the run directory, one file per rank.

Under torchrun (world size > 1) every rank, rank 0 included, writes its own
small record of each step, so the cockpit can show each rank's step time and
memory, flag a straggler, and tell which rank died. events.jsonl stays rank
0's alone (docs/architecture.md); these files are a side channel, not events.
A single process writes none (NullRankLog).

Schema version 1, one JSON object a line, each with `v`, `t` (unix seconds)
and `type`; readers ignore unknown fields and types and skip a torn last line:

    {"type": "start", "rank", "local_rank", "world_size", "pid", "host", "device"}
    {"type": "step", "step", "step_ms", "fwd_ms", "rss_mib", "cuda_alloc_mib", "cuda_max_alloc_mib"}
    {"type": "end", "step", "status", "exit_code"}

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
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch

SCHEMA_VERSION = 1
MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rank_path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / "ranks" / f"rank-{rank}.jsonl"


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
        flush_s: float = 1.0,
    ):
        path = rank_path(run_dir, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")
        self.device = torch.device(device)
        self.flush_s = flush_s
        self._buf: list[str] = []
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

    def _write(self, typ: str, **fields: Any) -> None:
        d = {"v": SCHEMA_VERSION, "t": round(time.time(), 3), "type": typ, **fields}
        self._buf.append(json.dumps(d) + "\n")

    def _flush(self) -> None:
        if self._buf and not self._f.closed:
            self._f.write("".join(self._buf))
            self._f.flush()
        self._buf.clear()
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
        )
        if time.monotonic() - self._t_flush >= self.flush_s:
            self._flush()

    def close(self, step: int, status: str, exit_code: int) -> None:
        if self._f.closed:
            return
        self._write("end", step=step, status=status, exit_code=exit_code)
        self._flush()
        self._f.close()


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def rank_log(
    run_dir: Path, rank: int, local_rank: int, world_size: int, device: torch.device | str
) -> RankLog | NullRankLog:
    """The writer for this process: a RankLog under torchrun, else a NullRankLog."""
    if world_size > 1:
        return RankLog(run_dir, rank, local_rank, world_size, device)
    return NullRankLog()
