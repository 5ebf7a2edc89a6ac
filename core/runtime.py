"""What the trainer needs from its process and machine: device and dtype,
distributed setup, the peak FLOP/s behind MFU, signals, the heartbeat thread,
and the environment recorded in run.yaml."""

from __future__ import annotations

import faulthandler
import os
import platform
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.events import Heartbeat

# bf16 dense peaks (FLOP/s) of known GPUs, from the vendors' data sheets
GPU_PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


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
        import torch.distributed as dist

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


def pick_dtype(pref: str, device: torch.device) -> torch.dtype:
    if pref == "float32":
        return torch.float32
    if pref == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def peak_flops(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """(FLOP/s, where the figure came from) for MFU."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_PEAK_BF16.items():
            if key in name:
                return peak, f"{name}: bf16 dense data-sheet peak"
        return 0.0, f"{name}: unknown peak, MFU not reported"
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
# signals: SIGINT/SIGTERM stop after the step, SIGUSR1 saves, SIGUSR2 dumps stacks


@dataclass
class Signals:
    stop: int | None = None  # the signal number that asked to stop
    save: bool = False
    training: bool = False  # before the loop starts, a stop request interrupts at once
    stacks_dir: Path | None = None
    step: int = 0
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

    def _on_stop(self, signum, frame) -> None:
        self.stop = signum
        if not self.training:
            raise KeyboardInterrupt

    def _on_save(self, signum, frame) -> None:
        self.save = True

    def _on_dump(self, signum, frame) -> None:
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
    def __init__(self, sink, every_s: float, state: Signals):
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
