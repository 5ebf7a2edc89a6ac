"""Sharded checkpoints with torch.distributed.checkpoint (DCP), synchronous or not.

A save is a directory `checkpoints/step-NNNNNNN/`: every rank writes its own
shard (`__R_0.distcp`), the coordinator DCP's `.metadata`, and rank 0 the
trainer's own state (`trainer.pt`: step, progress through the data, RNGs,
hashes; loaded with weights_only, as a one-file checkpoint is). It is written as
`.step-NNNNNNN.tmp-PID/` and renamed by rank 0 once complete, then the sidecar
lists the size and sha256 of every file, then `latest` (core/checkpoint.publish).

Model and optimizer go through `get_state_dict`/`set_state_dict`, which give
the same keys for a plain module, DDP and FSDP2, so a checkpoint saved by N
ranks loads into M (DCP reshards on load). The optimizer's state is keyed by
parameter name, not by position.

`checkpoint.async: true` uses `dcp.async_save`: the state is copied to CPU
memory (pinned on CUDA, kept between saves) while training waits, then written
by a background thread while training goes on. At most one save is in flight:
the next save, the end of the run and a stop wait for it. Its collectives run on
a process group of their own (gloo), so they never interleave with the training
loop's on the default group.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from core import checkpoint as C
from core.optim import Optimizers
from core.runtime import Dist, share

# one process saves and loads without a process group, as DCP allows; it says so each time
warnings.filterwarnings(
    "ignore", message="torch.distributed is disabled, unavailable or uninitialized"
)

from core.dcp_read import TRAINER_STATE  # noqa: E402  the read side, core.checkpoint's too

# -----------------------------------------------------------------------------
# saving


class ShardedSaver:
    """Every rank's side of sharded saves. Create it on every rank at the same point
    (it may create a process group); `save` and `close` are collective too."""

    def __init__(self, ckpt_dir: Path, d: Dist, device: torch.device, use_async: bool):
        self.dir, self.d, self.use_async = Path(ckpt_dir), d, use_async
        # DCP gathers plans and results over a group: a group of its own, so a save
        # written on a thread never interleaves with the loop's all-reduces
        self.pg = dist.new_group(backend="gloo") if d.world_size > 1 else None
        self.stager: Any = None
        if use_async:
            from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

            cuda = device.type == "cuda"
            # staged synchronously (training changes the weights right after), into pinned
            # buffers on CUDA that later saves reuse; plain CPU copies otherwise
            self.stager = DefaultStager(
                StagingOptions(
                    use_pinned_memory=cuda,
                    use_shared_memory=False,
                    use_async_staging=False,
                    use_non_blocking_copy=cuda,
                )
            )
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(
        self,
        model: torch.nn.Module,
        opt: Optimizers | torch.optim.Optimizer,
        trainer_state: dict,
        meta: dict,
        done: Callable[[C.Saved], None],
    ) -> Path:
        """Save model, optimizer and `trainer_state` (rank 0's) as step meta["step"];
        `done(saved)` runs on rank 0 once the checkpoint is complete (sidecar and
        `latest` written), on a background thread when async. Returns the path the
        checkpoint will have."""
        t0, w0 = time.time(), time.perf_counter()
        self.wait()  # at most one in flight: its remaining time counts as blocked
        step = meta["step"]
        tmp = share(self.d, self.dir / f".{C.ckpt_name(step, sharded=True)}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        no_dist = self.d.world_size == 1
        try:
            if self.d.master:
                C._atomic_write(tmp / TRAINER_STATE, lambda f: torch.save(trainer_state, f))
            msd, osd = get_state_dict(model, torch_optimizers(opt))
            state = {"model": msd, "optimizer": osd}
            if not self.use_async:
                dcp.save(state, checkpoint_id=tmp, process_group=self.pg, no_dist=no_dist)
                if self.d.master:  # hashed and published on the training thread: all blocks
                    done(C.publish(tmp, meta, t0))
                return self.dir / C.ckpt_name(step, sharded=True)
            fut = dcp.async_save(
                state, checkpoint_id=tmp, process_group=self.pg, async_stager=self.stager,
                no_dist=no_dist,
            )  # fmt: skip
        except BaseException:
            self._discard(tmp)
            raise
        # a Future, or with a stager that stages on a thread an AsyncSaveResponse
        upload: Future = fut.upload_completion if hasattr(fut, "upload_completion") else fut
        blocked = time.perf_counter() - w0

        def finish() -> None:
            try:
                upload.result()
                if self.d.master:
                    done(C.publish(tmp, meta, t0, blocked))
            except BaseException as e:  # handed to the main thread by wait()
                self._discard(tmp)
                self._error = e

        self._thread = threading.Thread(target=finish, name="ckpt-async-save")
        self._thread.start()
        return self.dir / C.ckpt_name(step, sharded=True)

    def _discard(self, tmp: Path) -> None:
        """A failed save (a full disk) leaves no half directory to fill the disk further."""
        if self.d.master:
            C.remove(tmp)

    def in_flight(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the save in flight, if any; re-raise its error here. With a timeout
        (an error path, where a peer may be gone) give up after it, with a warning."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                print(
                    f"warning: the checkpoint save in flight did not finish in {timeout:.0f}s; "
                    "latest still names the last complete one",
                    file=sys.stderr,
                )
                return
            self._thread = None
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def close(self, timeout: float | None = None) -> None:
        """Wait for the save in flight, then free the staging buffers."""
        try:
            self.wait(timeout)
        finally:
            if self.stager is not None and not self.in_flight():
                self.stager.close()
                self.stager = None


# -----------------------------------------------------------------------------
# loading


def torch_optimizers(opt: Optimizers | torch.optim.Optimizer) -> tuple[torch.optim.Optimizer, ...]:
    """The torch optimizers behind the loop's optimizer: core.optim.Optimizers steps one
    or two (AdamW, Muon + AdamW) as one; DCP's state-dict helpers take them all, keyed by
    parameter name, so a checkpoint loads whichever parallelism holds the parameters."""
    return tuple(opt.named.values()) if isinstance(opt, Optimizers) else (opt,)


def load_sharded(
    path: Path,
    model: torch.nn.Module,
    opt: Optimizers | torch.optim.Optimizer,
    saver: ShardedSaver | None,
) -> None:
    """Load a sharded checkpoint's model and optimizer into the live (wrapped or sharded)
    ones, at any world size. Collective: every rank calls it."""
    opts = torch_optimizers(opt)
    msd, osd = get_state_dict(model, opts)
    pg = saver.pg if saver is not None else None
    no_dist = not (dist.is_available() and dist.is_initialized())
    # filled in place (DCP reads every rank's part of each tensor from whichever shards hold
    # it); values that are no tensors (the optimizer's param groups) are put back in `state`
    state: dict[str, Any] = {"model": msd, "optimizer": osd}
    dcp.load(state, checkpoint_id=Path(path), process_group=pg, no_dist=no_dist)
    set_state_dict(
        model, opts, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
    )
