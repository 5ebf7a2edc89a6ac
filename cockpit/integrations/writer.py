"""What every native integration shares: where the run directory is, one writer of
its events (rank 0) and of each rank's figures, a record that native events are
being written (so a wrapped command's stdout adapter stands down for them), and a
run_end that is written however the process ends: finished, an exception, Ctrl+C.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from core.events import (
    Checkpoint,
    Eval,
    Event,
    JsonlSink,
    NullSink,
    RunEnd,
    RunStart,
    Step,
)

ENV_RUN_DIR = "COCKPIT_RUN_DIR"
NATIVE = "native.json"  # in the run directory: who writes which event types natively
TYPES = ("run_start", "step", "eval", "checkpoint", "run_end")


def rank_and_world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) alone."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


def resolve_run_dir(run_dir: str | os.PathLike | None, name: str) -> Path:
    """COCKPIT_RUN_DIR when the cockpit launched us, else the one given, else
    logs/<YYYYmmdd-HHMMSS>-<name>/ (under torchrun every rank must be given the same
    directory, or be launched by the cockpit: a stamp could differ between ranks)."""
    env = os.environ.get(ENV_RUN_DIR)
    if env:
        return Path(env)
    if run_dir is not None:
        return Path(run_dir)
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name) or "run"
    return Path("logs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}"


def folder_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def number(x: Any) -> float | None:
    """A logged value as a float (tensors and numpy scalars too); None when it is none."""
    if hasattr(x, "item"):
        try:
            x = x.item()
        except (ValueError, RuntimeError):  # not a one-element tensor
            return None
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x)


class RunWriter:
    """The events of one run, written by rank 0 (others write nothing there), and
    each rank's step figures under torchrun. Safe to call from any hook: a figure
    that is unknown is None."""

    def __init__(self, run_dir: str | os.PathLike | None, name: str, writer: str):
        self.rank, self.local_rank, self.world = rank_and_world()
        self.run_dir = resolve_run_dir(run_dir, name)
        self.name, self.writer = name, writer
        self.t0 = time.time()
        self.step = 0
        self.started = self.ended = False
        self._exc: BaseException | None = None
        self._ranklog: Any = None
        self.sink: JsonlSink | NullSink = NullSink()
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.sink = JsonlSink(self.run_dir / "events.jsonl")
            tmp = self.run_dir / f".{NATIVE}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps({"writer": writer, "pid": os.getpid(), "types": TYPES}))
            os.replace(tmp, self.run_dir / NATIVE)
        atexit.register(self._at_exit)
        self._prev_hook = sys.excepthook
        sys.excepthook = self._excepthook

    # --- what the integrations call ------------------------------------------

    def start(self, **fields: Any) -> None:
        if self.started:
            return
        self.started = True
        base = {
            "run_id": self.run_dir.name,
            "profile": self.name,
            "pid": os.getpid(),
            "device": "cpu",
            "world_size": self.world,
            "dtype": "float32",
            "n_params": None,
            "tokens_per_step": None,
            "total_steps": None,
            "total_epochs": None,
        }
        self.write(RunStart(**{**base, **fields}))
        if self.world > 1:
            from core.ranklog import rank_log  # lazy: loads torch, which a rank has already

            device = str(fields.get("device") or "cpu")
            self._ranklog = rank_log(self.run_dir, self.rank, self.local_rank, self.world, device)

    def step_event(self, step: int, **fields: Any) -> None:
        self.step = max(self.step, step)
        base = {"epoch": 0, "loss": None, "lr": None, "grad_norm": None, "tokens": None}
        self.write(Step(step=step, **{**base, "step_ms": None, "tokens_per_s": None, **fields}))

    def rank_step(self, step: int, step_ms: float | None) -> None:
        if self._ranklog is not None and step_ms is not None:
            self._ranklog.step(step, step_ms, None)

    def eval_event(self, step: int, epoch: int, val_loss: float | None, metrics: dict) -> None:
        ppl = math.exp(val_loss) if val_loss is not None and val_loss < 50 else None
        self.write(Eval(step=step, epoch=epoch, val_loss=val_loss, val_ppl=ppl, metrics=metrics))  # type: ignore[arg-type]

    def checkpoint_event(
        self, path: Path, step: int, tags: list[str], seconds: float = 0.0
    ) -> None:
        size = folder_bytes(path) if path.is_dir() else path.stat().st_size if path.exists() else 0
        self.write(
            Checkpoint(step=step, path=str(path), bytes=size, sha256="", seconds=seconds, tags=tags)
        )

    def end(self, status: str, reason: str) -> None:
        if self.ended or not self.started:
            return
        self.ended = True
        self.write(
            RunEnd(status=status, step=self.step, reason=reason, wall_s=time.time() - self.t0)
        )
        if self._ranklog is not None:
            self._ranklog.close(self.step, status, 0 if status == "completed" else 1)
        self.sink.close()

    def failed(self, exc: BaseException) -> None:
        """The trainer raised: interrupted for Ctrl+C, failed otherwise, with the error."""
        if isinstance(exc, KeyboardInterrupt):
            self.end("interrupted", "KeyboardInterrupt")
        else:
            self.end("failed", f"{type(exc).__name__}: {exc}"[:500])

    def write(self, ev: Event) -> None:
        self.sink.write(ev)

    # --- however the process ends ---------------------------------------------

    def _excepthook(
        self, typ: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        self._exc = exc
        self._prev_hook(typ, exc, tb)

    def _at_exit(self) -> None:
        if self._exc is not None:
            self.failed(self._exc)
        else:
            self.end("failed", "the process exited before the trainer finished")
