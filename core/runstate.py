"""Where a run lives, and what a checkpoint carries besides model and optimizer:
progress through the data, early-stopping state, curves, and every RNG."""

from __future__ import annotations

import fcntl
import math
import os
import random
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core import checkpoint as C
from core import events as E
from core.config import Profile
from core.errors import DataError
from core.optim import Optimizers

if TYPE_CHECKING:
    from core.dcp import ShardedSaver

Say = Callable[..., None]
"print on rank 0, nothing on the others"

LOGS = Path("logs")


def resolve_run_dir(args: Namespace, p: Profile) -> tuple[Path, Path | None]:
    """(run dir, checkpoint to resume from or None)."""
    resume_from = None
    if args.resume and args.resume != "auto":
        rp = Path(args.resume)
        if rp.is_file() or (rp.is_dir() and C.CKPT_RE.match(rp.name)):  # a sharded one is a dir
            return (Path(args.run_dir) if args.run_dir else rp.parent.parent), rp
        if not rp.is_dir():
            raise DataError(f"--resume {rp}: no such checkpoint or run directory")
        return (Path(args.run_dir) if args.run_dir else rp), None
    if args.run_dir:
        return Path(args.run_dir), resume_from
    if args.resume == "auto":
        runs = sorted(d for d in LOGS.glob(f"*-{p.name}") if C.list_checkpoints(d / "checkpoints"))
        if runs:
            return runs[-1], None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d, n = LOGS / f"{stamp}-{p.name}", 1
    while d.exists():
        n += 1
        d = LOGS / f"{stamp}-{p.name}-{n}"
    return d, None


# -----------------------------------------------------------------------------
# one writer per run directory

LOCK = ".trainer.lock"


def lock_run_dir(run_dir: Path) -> tuple[int | None, str]:
    """Take `run_dir`'s writer lock for the life of this process: (fd, "") when
    taken, (None, holder's pid or "unknown") when another process holds it. Two
    trainers writing one run would interleave their events and checkpoints. The fd
    is left open on purpose: the kernel drops an flock when its holder ends, however
    it ends, so a stale lock file never blocks anyone. Under torchrun rank 0 alone
    takes it (the other ranks write only their own files beside it)."""
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip()
        os.close(fd)
        return None, holder if holder.isdigit() else "unknown"
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd, ""


# -----------------------------------------------------------------------------
# state that a checkpoint carries besides model and optimizer


@dataclass
class RunProgress:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0
    best_val: float = float("inf")
    bad_evals: int = 0
    curves: dict = field(
        default_factory=lambda: {"train_loss": [], "val_loss": [], "eval_step": []}
    )
    gate: dict = field(default_factory=dict)
    # (batch, accum, world) of the steps batch_in_epoch counts; [] in older checkpoints
    shape: list = field(default_factory=list)


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=True)  # the default; numpy's stub assumes False
    assert isinstance(np_state, tuple)  # the legacy MT19937 state
    s = {
        "python": random.getstate(),
        # as plain lists so the checkpoint loads with weights_only=True
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in s["python"]))
    n = s["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def resume_from(resume_path: Path | None, ckpt_dir: Path, sink: E.Sink, say: Say) -> Path | None:
    """The checkpoint to resume from: the one named (it must verify), else the newest
    that verifies, skipping corrupt ones with a warning; None when there is none."""
    if resume_path is None:
        resume_path, skipped = C.find_resume(ckpt_dir)
        for skip in skipped:
            say(f"warning: skipping checkpoint: {skip}")
            sink.write(
                E.Alert(level="warn", code="checkpoint_corrupt", message=f"resume skipped {skip}")
            )
    elif (why := C.verify(resume_path)) is not None:
        raise DataError(f"--resume {resume_path}: {why}")
    if resume_path is None:
        say("resume: no checkpoint to resume from; starting fresh")
    return resume_path


def load_resume(
    resume_path: Path,
    tok_hash: str,
    cfg_hash: str,
    model: torch.nn.Module,
    opt: Optimizers,
    sink: E.Sink,
    say: Say,
) -> RunProgress:
    """Load a checkpoint (already chosen and verified) into model, optimizer and RNGs.
    A sharded checkpoint gives its trainer state here; its model and optimizer are loaded
    by core.dcp.load_sharded once the model is wrapped (FSDP needs the sharded model)."""
    state = C.load(resume_path, model=False)
    if state["tokenizer_hash"] != tok_hash:
        raise DataError(
            f"--resume {resume_path}: made with another tokenizer or graph "
            f"({state['tokenizer_hash']} != {tok_hash}); resume with the data it was trained on"
        )
    if state["config_hash"] != cfg_hash:
        msg = "resuming with a different config; the curve will not match an uninterrupted run"
        say(f"warning: {msg}")
        sink.write(E.Alert(level="warn", code="config_changed", message=msg))
    if not C.is_sharded(resume_path):
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    prog = RunProgress(**state["progress"])
    say(f"resume: from {resume_path} (step {prog.step}, epoch {prog.epoch})")
    sink.write(
        E.Alert(
            level="info",
            code="resumed",
            message=f"resumed from {resume_path.name} at step {prog.step}",
        )
    )
    return prog


def carry_position(
    prog: RunProgress,
    shape: list[int],
    steps_per_epoch: int,
    sink: E.Sink,
    say: Callable[[str], None],
) -> None:
    """Record the batch shape; after a resume in another shape, carry the place in the
    epoch over. A step takes the next batch x accum x world windows of the epoch's
    order, so the old count of steps means other windows in the new shape: go on at
    the step that holds the first unused window (no window skipped, fewer than one
    step's worth seen twice), or at the next epoch when less than a step is left."""
    old, prog.shape = prog.shape, list(shape)
    if not old or old == prog.shape:
        return
    per_old, per_new = math.prod(old), math.prod(shape)
    if per_old == per_new:
        # the same windows a step (16 x 1 x 2 on two ranks, 32 x 1 x 1 on one): a step takes
        # the same block of the epoch's order, so the data goes on exactly where it was
        msg = (
            f"resuming in another batch shape with the same {per_new} windows a step "
            f"(batch x accum x world: {' x '.join(map(str, old))} then "
            f"{' x '.join(map(str, shape))}); the data goes on from step {prog.batch_in_epoch} "
            f"of epoch {prog.epoch}, no window skipped or seen twice"
        )
        say(msg)
        sink.write(E.Alert(level="info", code="batch_shape_changed", message=msg))
        return
    used, epoch = prog.batch_in_epoch * per_old, prog.epoch
    prog.batch_in_epoch = used // per_new
    where = f"window {prog.batch_in_epoch * per_new} (step {prog.batch_in_epoch} of the epoch)"
    if prog.batch_in_epoch >= steps_per_epoch:
        prog.epoch, prog.batch_in_epoch = epoch + 1, 0
        where = f"epoch {prog.epoch}, as less than a step of windows was left"
    msg = (
        f"resuming in another batch shape (batch x accum x world): the checkpoint used "
        f"{' x '.join(map(str, old))} = {per_old} windows a step, this run "
        f"{' x '.join(map(str, shape))} = {per_new}; {used} windows of epoch {epoch} were "
        f"used, going on from {where}; the curve will not match an uninterrupted run"
    )
    say(f"warning: {msg}")
    sink.write(E.Alert(level="warn", code="batch_shape_changed", message=msg))


def save_checkpoint(
    ckpt_dir: Path, keep_last: int, model: torch.nn.Module, opt: Optimizers,
    prog: RunProgress, tags: list[str], val_loss: float | None, tokens: int,
    hashes: tuple[str, str], sink: E.Sink, sharded: ShardedSaver | None = None,
) -> Path:  # fmt: skip
    """Save the full state with its sidecar (`tokens` seen so far), apply retention, and
    write the checkpoint event; returns the checkpoint's path. `hashes`: (config hash,
    tokenizer hash). One file: rank 0 alone calls it. `sharded`: every rank calls it and
    writes its shard; with an async saver the sidecar, retention and event come when the
    files are written, on a background thread."""
    cfg_hash, tok_hash = hashes
    state: dict[str, Any] = {
        "rng": rng_state(),
        "progress": dict(vars(prog)),  # a copy: the loop goes on while an async save runs
        "step": prog.step,
        "config_hash": cfg_hash,
        "tokenizer_hash": tok_hash,
    }
    meta: dict[str, Any] = {
        "step": prog.step,
        "epoch": prog.epoch,
        "tokens": tokens,
        "val_loss": val_loss,
        "tags": ["latest", *tags],
        "config_hash": cfg_hash,
        "tokenizer_hash": tok_hash,
    }

    def done(s: C.Saved) -> None:
        C.retain(ckpt_dir, keep_last)
        sink.write(
            E.Checkpoint(
                step=meta["step"],
                path=str(s.path),
                bytes=s.bytes,
                sha256=s.sha256,
                seconds=s.seconds,
                tags=meta["tags"],
                blocked_s=s.seconds if s.blocked_s is None else s.blocked_s,
            )
        )

    if sharded is not None:
        state["progress"]["curves"] = {k: list(v) for k, v in prog.curves.items()}
        state["progress"]["gate"] = dict(prog.gate)
        return sharded.save(model, opt, state, meta, done)
    state.update(model=model.state_dict(), optimizer=opt.state_dict())
    s = C.save(ckpt_dir, state, meta)
    done(s)
    return s.path
