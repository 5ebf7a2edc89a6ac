"""What the collectors cost: ProcessSampler on a 64-thread trainer look-alike, SystemSampler,
GpuSampler.

    python bench/sampler.py [--samples 1000] [--hz 100] [--threads 64] [--busy 3]

The child has `--threads` OS threads named like a trainer's (intra-op pool, DataLoader,
pin-memory, event writer, ...), `--busy` of them working half of each 10 ms (GIL-free
hashing, like intra-op kernels) and the rest asleep, and holds ~200 MiB. Each sampler is
timed over `--samples` calls at `--hz` after a warm-up, the way the cockpit calls it. The
slow-cadence readings (USS from smaps_rollup, open files) and the descendant scan are timed
on their own, and psutil's threads() + comm reads are timed next to ours for reference.
Target: ProcessSampler.sample() < 2 ms median, < 5 ms p99.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from cockpit.collect.gpu import GpuSampler  # noqa: E402
from cockpit.collect.sampling import ProcessSampler, _read_threads, _read_uss_mib  # noqa: E402
from cockpit.collect.system import SystemSampler  # noqa: E402

CHILD = """
import hashlib, os, sys, threading, time
N, BUSY = int(sys.argv[1]), int(sys.argv[2])

def named(name):
    with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
        f.write(name[:15])

def busy(name):  # half of each 10 ms in hashing, which releases the GIL like a kernel does
    named(name); buf = b"x" * (1 << 20)
    while True:
        t = time.perf_counter()
        while time.perf_counter() - t < 0.005:
            hashlib.sha256(buf).digest()
        time.sleep(0.005)

def asleep(name):
    named(name)
    while True:
        time.sleep(1)

names = [f"intra-op-{i}" for i in range(BUSY)]
rest = ["pin_memory", "event-writer", "heartbeat", "watchdog"]
rest += [f"loader-{i}" for i in range(N)] + [f"pool-{i}" for i in range(N)]
names += rest[: N - 1 - BUSY]
blob = b"x" * (200 * 1024 * 1024)  # written, so resident
for i, name in enumerate(names):
    threading.Thread(target=busy if i < BUSY else asleep, args=(name,), daemon=True).start()
time.sleep(0.5)
print(threading.active_count(), flush=True)
sys.stdin.read()
"""


def stats(run: tuple[list[float], list[float]]) -> str:
    """Wall ms (what the caller waits, preemption included) and this thread's CPU ms (what
    the sampler itself costs) per call."""
    wall, cpu = sorted(run[0]), sorted(run[1])
    q = lambda s, p: s[min(len(s) - 1, int(p * len(s)))]  # noqa: E731
    return (
        f"wall median {statistics.median(wall):6.3f} p95 {q(wall, 0.95):6.3f} "
        f"p99 {q(wall, 0.99):6.3f} max {wall[-1]:6.3f} | cpu median {statistics.median(cpu):6.3f} "
        f"p99 {q(cpu, 0.99):6.3f} ms (n={len(wall)})"
    )


def timed(fn, n: int, hz: float, warmup: int = 20) -> tuple[list[float], list[float]]:
    """(wall ms, cpu ms) per call of fn, called at ~hz, after `warmup` untimed calls."""
    period, wall, cpu = 1.0 / hz, [], []
    for i in range(warmup + n):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        if i >= warmup:
            wall.append(dt * 1000)
            cpu.append(dc * 1000)
        time.sleep(max(0.0, period - dt))
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--hz", type=float, default=100.0)
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--busy", type=int, default=3)
    args = ap.parse_args()

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(args.threads), str(args.busy)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        n_threads = int(child.stdout.readline())
        pid = child.pid
        print(
            f"python {platform.python_version()}, psutil {psutil.__version__}, "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; child {pid}: "
            f"{n_threads} threads ({args.busy} busy at 50%), "
            f"rss {psutil.Process(pid).memory_info().rss / 2**20:.0f} MiB"
        )

        ps = ProcessSampler(pid)
        sysm = SystemSampler(ROOT / "logs")
        gpu = GpuSampler(min_interval_s=0.0)  # every call a query round (no-GPU path here)
        gpu_cached = GpuSampler()  # the default 1 s rate limit: almost every call is cached
        ms = timed(ps.sample, args.samples, args.hz)
        snap = ps.sample()
        top = snap.procs[0].threads[:3]
        print(f"\nProcessSampler.sample()         {stats(ms)}")
        print(
            f"  last: {snap.num_threads} threads, cpu {snap.cpu_pct:.0f}%, "
            f"rss {snap.rss_mib:.0f} MiB, uss {snap.uss_mib:.0f} MiB; top "
            + ", ".join(f"{t.name} {t.cpu_pct:.0f}%" for t in top)
        )
        print(f"SystemSampler.sample()          {stats(timed(sysm.sample, args.samples, args.hz))}")
        print(f"GpuSampler.sample() (query)     {stats(timed(gpu.sample, args.samples, args.hz))}")
        print(
            f"GpuSampler.sample() (cached)    {stats(timed(gpu_cached.sample, args.samples, args.hz))}"
        )
        print(f"  gpu: available={gpu.sample().available}, reason={gpu.sample().reason!r}")

        # the costs kept off the per-sample path
        n = max(50, args.samples // 20)
        slow = ProcessSampler(pid, slow_every_s=0.0)
        tree = ProcessSampler(pid, tree_every_s=0.0)
        proc = psutil.Process(pid)
        print(f"\nslow cadence (every {ps.slow_every_s:g} s by default):")
        print(f"  sample() with USS + open files {stats(timed(slow.sample, n, 20))}")
        print(f"  USS alone (smaps_rollup)       {stats(timed(lambda: _read_uss_mib(pid), n, 20))}")
        print(f"  open_files alone (psutil)      {stats(timed(lambda: proc.open_files(), n, 20))}")
        print(f"  psutil memory_full_info (ref)  {stats(timed(proc.memory_full_info, n, 20))}")
        print(
            f"descendant scan (every {ps.tree_every_s:g} s by default; "
            f"{len(psutil.pids())} processes on this machine):"
        )
        print(f"  sample() with the scan         {stats(timed(tree.sample, n, 20))}")
        print(
            f"  children(recursive) alone      "
            f"{stats(timed(lambda: proc.children(recursive=True), n, 20))}"
        )

        def psutil_threads_and_comm():
            for th in proc.threads():
                with open(f"/proc/{pid}/task/{th.id}/comm", "rb") as f:
                    f.read()

        print("per-thread times for all threads:")
        print(f"  ours (task/<tid>/stat)         {stats(timed(lambda: _read_threads(pid), n, 20))}")
        print(f"  psutil threads() + comm (ref)  {stats(timed(psutil_threads_and_comm, n, 20))}")
        print(f"  psutil threads() alone (ref)   {stats(timed(proc.threads, n, 20))}")
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    main()
