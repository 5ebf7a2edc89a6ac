"""What the trainer needs from its process and machine: device and dtype,
distributed setup, the peak FLOP/s behind MFU, signals, the heartbeat thread,
and the environment recorded in run.yaml."""

from __future__ import annotations

import faulthandler
import inspect
import os
import platform
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from core.events import Heartbeat, Sink
from core.peaks import gpu_peak

T = TypeVar("T")


# -----------------------------------------------------------------------------
# device, dtype, distribution


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup_dist(device_pref: str) -> tuple[Dist, torch.device]:
    """DDP when torchrun set WORLD_SIZE>1 (gloo on CPU, NCCL on GPU)."""
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Dist()
    if world > 1:
        d = Dist(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), world)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(
                "train.device is 'cuda' but no CUDA device is available; use auto or cpu"
            )
        torch.cuda.set_device(d.local_rank)
        return d, torch.device("cuda", d.local_rank)
    return d, torch.device("cpu")


# Every helper below is a no-op for one process, so the loop calls them without
# branching on the world size. All ranks must call them at the same point.


def share(d: Dist, obj: T) -> T:
    """Rank 0's `obj` on every rank (a run directory, a resume path, an eval's verdict):
    a value that each rank would work out for itself can differ between them."""
    if d.world_size == 1:
        return obj

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def local_rank_first(d: Dist) -> Iterator[None]:
    """Local rank 0 goes first (it builds the token cache, trains the tokenizer), the
    other ranks of its node wait, then read what it wrote instead of racing it."""

    if d.world_size > 1 and d.local_rank != 0:
        dist.barrier()
    yield
    if d.world_size > 1 and d.local_rank == 0:
        dist.barrier()


def agree(d: Dist, device: torch.device, stop: int | None, save: bool) -> tuple[int | None, bool]:
    """(stop signal, save now) as any rank asked: torchrun forwards SIGINT/SIGTERM to
    every rank but each sees it at its own moment, and SIGUSR1 may reach only one.
    Ranks that stopped after different steps would wait in a collective forever."""
    if d.world_size == 1:
        return stop, save

    flags = torch.tensor([stop or 0, int(save)], dtype=torch.int64, device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    s, v = flags.tolist()
    return (s or None), bool(v)


def wrap_ddp(model: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """DDP under torchrun (the model unchanged for one process). Gradients are averaged
    over ranks in the backward. Buffers are not re-broadcast in each forward: the only
    ones are the fixed rotary tables, and a collective there would make a fast rank wait
    inside its forward and blur the per-rank fwd_ms that shows a straggler."""
    if d.world_size == 1:
        return model

    # torch 2.13 renamed broadcast_buffers (a FutureWarning) to forward_sync_buffers
    params = inspect.signature(DDP.__init__).parameters
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    ids = [d.local_rank] if device.type == "cuda" else None
    kw: dict[str, Any] = {no_sync: False}
    return DDP(model, device_ids=ids, **kw)


def checkpoint_blocks(model: torch.nn.Module) -> None:
    """Activation checkpointing, per block: each of `model.blocks` is wrapped (in place) so
    its forward keeps only its input and the backward recomputes the rest. The wrapper's
    state-dict hooks drop its prefix, so checkpoints keep the plain names (and resume with
    checkpointing on or off); torch.utils.checkpoint without reentrancy, which composes
    with torch.compile and with FSDP2 (torchtitan wraps blocks the same way)."""
    # a private module, but the one torchtitan and torch's own FSDP tests use
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        checkpoint_wrapper,
    )

    blocks = model.blocks
    assert isinstance(blocks, torch.nn.ModuleList)
    for i, block in enumerate(blocks):
        blocks[i] = checkpoint_wrapper(block)


def wrap_fsdp(
    model: torch.nn.Module, device: torch.device, dtype: torch.dtype, reshard_after_forward: bool
) -> torch.nn.Module:
    """FSDP2 in place: fully_shard on each block, then on the root (the embedding and the
    tied head), over all ranks. Parameters become DTensors sharded on dim 0, so build the
    optimizer afterwards. One process (plain `python -m core.train`) gets a process group
    of one, so fsdp runs there too, as world size 1. Under bf16 the blocks compute in bf16
    (parameters gathered as bf16) and reduce gradients in fp32; fp32 otherwise."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard  # lazy: torch>=2.6

    if not dist.is_initialized():  # one process: a group of one, in memory
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    mp = MixedPrecisionPolicy()
    if dtype == torch.bfloat16:
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    blocks = model.blocks
    assert isinstance(blocks, torch.nn.ModuleList)
    for block in blocks:
        fully_shard(block, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    # the root holds the embedding, used first in the forward and (tied) last as the head,
    # which the backward needs at once: kept gathered after the forward, as FSDP2's default
    fully_shard(model, reshard_after_forward=False, mp_policy=mp)
    return model


@contextmanager
def gathered(model: torch.nn.Module) -> Iterator[None]:
    """Every FSDP-sharded parameter of `model` gathered for the length of the block, and
    kept so through every forward in it: an eval runs forwards that differ between ranks
    (rank 0 alone generates; the ranks score different numbers of val batches), which a
    sharded model cannot, since each forward gathers with every rank. All ranks enter it
    together; nothing in it communicates. No-op for a model that is not sharded."""
    from torch.distributed.fsdp import FSDPModule  # lazy: torch>=2.6

    mods = [m for m in model.modules() if isinstance(m, FSDPModule)]
    if not mods:
        yield
        return
    keep = [_reshards(m) for m in mods]
    for m in mods:
        m.set_reshard_after_forward(False, recurse=False)
        m.unshard()
    try:
        yield
    finally:
        for m, k in zip(mods, keep, strict=True):
            m.reshard()
            m.set_reshard_after_forward(k, recurse=False)


def _reshards(m: Any) -> bool:
    """An FSDP module's reshard-after-forward setting (FSDP2 has no public getter)."""
    group = m._get_fsdp_state()._fsdp_param_group
    return bool(group is not None and group.post_forward_mesh_info is not None)


def end_dist(d: Dist, sync: bool) -> None:
    """Leave the process group. `sync`: wait for every rank first, so no rank exits
    (and makes torchrun stop the others) while rank 0 still saves or writes the result;
    not after an error, when the other ranks may be inside a collective that never ends."""
    if d.world_size == 1:
        if dist.is_available() and dist.is_initialized():  # fsdp's group of one
            dist.destroy_process_group()
        return

    if not dist.is_initialized():
        return
    try:
        if sync:
            dist.barrier()
        dist.destroy_process_group()
    except Exception:
        pass  # a peer is already gone: nothing left to leave cleanly


def pick_dtype(pref: str, device: torch.device) -> torch.dtype:
    """The dtype the forward computes in, which run.yaml records and the MFU peak is
    measured in. Autocast runs on CUDA only, so on a CPU it is float32 whatever was
    asked: bf16 autocast on a CPU without native bf16 (AVX2) measured 10x slower
    than fp32 (fwd+bwd, 4 layers x 256 wide), and a GPU profile run on a CPU box
    should not pay that. core/train.py warns when bfloat16 was asked and not given."""
    if device.type != "cuda":
        return torch.float32
    return torch.float32 if pref == "float32" else torch.bfloat16


def peak_flops(
    device: torch.device, dtype: torch.dtype, override: float | None = None
) -> tuple[float, str]:
    """(FLOP/s of one device, where the figure came from) for MFU; 0.0 when unknown.
    `override` is train.peak_flops. A GPU's figure comes from the data-sheet table
    (core/peaks.py) for the dtype its matmuls run in: fp32 runs as TF32 when torch
    allows it."""
    if override:
        return float(override), "train.peak_flops (set in the profile)"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        key = str(dtype).removeprefix("torch.")
        if key == "float32" and torch.get_float32_matmul_precision() != "highest":
            key = "tf32"
        return gpu_peak(name, key)
    # CPU: no data sheet to trust, so time a square matmul the size of a big
    # layer. A peak is the best the machine does, so take the fastest of many
    # short timings: one long window absorbs whatever else the box is doing.
    n = 1024
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm up
    best, t_end = float("inf"), time.perf_counter() + 0.3
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    threads = torch.get_num_threads()
    return (
        2 * n**3 / best,
        f"measured: fastest 1024x1024 {str(dtype).removeprefix('torch.')} matmul on {threads} threads",
    )


def environment(
    device: torch.device, dtype: torch.dtype, dist: Dist, peak: float, peak_src: str
) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "dtype": str(dtype).removeprefix("torch."),
        "world_size": dist.world_size,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "pid": os.getpid(),
        "peak_flops": peak,
        "peak_flops_source": peak_src,
    }
    return env


# -----------------------------------------------------------------------------
# signals: SIGINT/SIGTERM stop (at once where the work can be dropped, else after
# the step or save under way), SIGUSR1 saves, SIGUSR2 dumps stacks


class Interrupted(BaseException):
    """SIGINT/SIGTERM inside an `abandonable` block. A BaseException, as
    KeyboardInterrupt is, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


@dataclass
class Signals:
    stop: int | None = None  # the signal number that asked to stop (the first one)
    save: bool = False
    stacks_dir: Path | None = None
    step: int = 0
    _abandon: bool = field(default=False, repr=False)
    _fh_file: object = field(default=None, repr=False)

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_save)
        signal.signal(signal.SIGUSR2, self._on_dump)
        if self.stacks_dir is not None:
            # C-level dump too: it works even while the main thread is stuck in
            # a native call, when the Python-level handler cannot run
            self.stacks_dir.mkdir(parents=True, exist_ok=True)
            self._fh_file = open(self.stacks_dir / "faulthandler.txt", "a")
            faulthandler.register(signal.SIGUSR2, file=self._fh_file, all_threads=True, chain=True)

    @contextmanager
    def abandonable(self) -> Iterator[None]:
        """A stop request raises Interrupted at once inside this block (on entry, if
        one came before). Only for work that changes nothing a checkpoint or the
        event log holds and can be dropped midway: data preparation, an eval. The
        handler runs between two Python bytecodes of the main thread, so a native
        call that holds the main thread for long belongs in a worker (see
        data.train_tokenizer); elsewhere (a step, a save, recording an eval) a stop
        only sets `stop`, read at the end of the step or save."""
        self.set_abandonable(True)
        try:
            yield
        finally:
            self._abandon = False

    def set_abandonable(self, on: bool) -> None:
        """Open (or close) an abandonable stretch without a `with` block."""
        if on and self.stop is not None:
            raise Interrupted(self.stop)
        self._abandon = on

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stop is None:
            self.stop = signum
        if self._abandon:
            self._abandon = False  # raise once: a second signal never cuts the save that follows
            raise Interrupted(self.stop)

    def _on_save(self, signum: int, frame: FrameType | None) -> None:
        self.save = True

    def _on_dump(self, signum: int, frame: FrameType | None) -> None:
        if self.stacks_dir is not None:
            dump_stacks(self.stacks_dir, self.step)

    @property
    def exit_code(self) -> int:
        return 128 + (self.stop or signal.SIGINT)


def dump_stacks(stacks_dir: Path, step: int) -> Path:
    """Every thread's stack, with thread names, into stacks/stacks-<time>.txt."""
    stacks_dir.mkdir(parents=True, exist_ok=True)
    path = (
        stacks_dir
        / f"stacks-{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}.txt"
    )
    names = {t.ident: t.name for t in threading.enumerate()}
    lines = [f"# pid {os.getpid()} step {step} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n"]
    for ident, frame in sys._current_frames().items():
        lines.append(f"\n## thread {names.get(ident, '?')} ({ident})\n")
        lines.extend(traceback.format_stack(frame))
    path.write_text("".join(lines))
    return path


# -----------------------------------------------------------------------------
# heartbeat: tells a slow step from a hung process


class HeartbeatThread:
    def __init__(self, sink: Sink, every_s: float, state: Signals):
        self.sink, self.every_s, self.state = sink, every_s, state
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sink.write(Heartbeat(step=self.state.step))

    def close(self) -> None:
        self._stop.set()
