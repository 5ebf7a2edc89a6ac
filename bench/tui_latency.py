"""The TUI following a live run: how long from a step event written by the
trainer to that step on screen, and how much CPU the cockpit takes while it
watches (a trainer writing 50 steps/s), while the run is idle (heartbeats
only, its process alive and sampled) and once it has ended. Targets:
p95 latency <= 150 ms at 50 steps/s; <= 6% of one core watching; < 1% idle.

    .venv/bin/python bench/tui_latency.py [--rate 50] [--live-s 20] [--idle-s 50]

The "trainer" is a small process under the supervisor writing real events
(run_start, step, heartbeat) and log lines, so the session samples and follows
it as it would a real one. The TUI runs headless at 160x48 in this process;
"on screen" is the moment the compositor paints the header panel showing the
step (the frame goes to the terminal right after). CPU is this process's CPU time (every thread:
the UI, the session pump, the file watcher) over wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cockpit.session import Session  # noqa: E402
from cockpit.supervisor import Trainer  # noqa: E402
from cockpit.ui.app import CockpitApp  # noqa: E402
from cockpit.ui.widgets.header import RunHeader  # noqa: E402

WRITER = r"""
import json, os, sys, time
run_dir, rate, live_s, idle_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
f = open(os.path.join(run_dir, "events.jsonl"), "a", buffering=1)
def w(d):
    d = {"v": 1, "t": time.time(), **d}
    f.write(json.dumps(d) + "\n")
time.sleep(1.0)
w({"type": "run_start", "run_id": os.path.basename(run_dir), "profile": "bench", "pid": os.getpid(),
   "device": "cpu", "world_size": 1, "dtype": "float32", "n_params": 1000, "tokens_per_step": 4096,
   "total_steps": 10**6, "total_epochs": 1})
step, t0 = 0, time.time()
next_t, last_print = t0, t0
while time.time() - t0 < live_s:
    step += 1
    w({"type": "step", "step": step, "epoch": 0, "loss": 2 + 1 / step, "lr": 3e-4, "grad_norm": 1.0,
       "tokens": 4096 * step, "step_ms": 1000 / rate, "tokens_per_s": 4096 * rate, "mfu": None})
    if time.time() - last_print > 0.5:
        print(f"step {step} | loss {2 + 1 / step:.4f}", flush=True)
        last_print = time.time()
    next_t += 1 / rate
    time.sleep(max(0.0, next_t - time.time()))
print("idle from step", step, flush=True)
t1 = time.time()
while time.time() - t1 < idle_s:
    time.sleep(2.0)
    w({"type": "heartbeat", "step": step})
w({"type": "run_end", "status": "completed", "step": step, "reason": "bench", "wall_s": time.time() - t0})
"""


TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of each of this process's threads, by thread name (Linux
    /proc; empty elsewhere): which part of the cockpit the CPU goes to."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue
        f = stat.rsplit(")", 1)[1].split()
        name = names.get(int(tid), "other")
        name = "watcher" if name.startswith("Thread-") else name  # watchdog's threads
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / TICK
    return out


def by_thread(before: dict[str, float], wall: float) -> str:
    now = thread_cpu()
    parts = sorted(((now[k] - before.get(k, 0.0)) / wall * 100, k) for k in now)
    return ", ".join(f"{k} {p:.1f}%" for p, k in reversed(parts) if p >= 0.05)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def watch(run_dir: Path, trainer: Trainer, args) -> dict:
    shown: list[tuple[int, float]] = []  # (step on screen, when painted)
    render = RunHeader.render_lines  # the compositor takes the header's lines for a frame

    def spy(self, crop):
        if self.view is not None:
            shown.append((self.view.figures.step, time.time()))
        return render(self, crop)

    RunHeader.render_lines = spy
    app = CockpitApp("monitor", session=Session(run_dir, trainer))
    out: dict = {}
    async with app.run_test(size=(160, 48)) as pilot:
        t0 = time.monotonic()
        while not shown or shown[-1][0] < 10:
            await pilot.pause(0.1)
            if time.monotonic() - t0 > 60:
                raise SystemExit("no steps on screen after 60 s")
        # live: the trainer writes `rate` steps a second
        await pilot.pause(2.0)
        c0, w0, t0s = time.process_time(), time.monotonic(), thread_cpu()
        await pilot.pause(args.live_s - 5)
        out["live_cpu_pct"] = 100 * (time.process_time() - c0) / (time.monotonic() - w0)
        out["live_threads"] = by_thread(t0s, time.monotonic() - w0)
        while not (run_dir / "stdout.log").read_text().count("idle from step"):
            await pilot.pause(0.2)
        # the idle run's sparklines fill up first (a minute of samples at most in view)
        await pilot.pause(max(3.0, args.idle_s - 25))
        c0, w0, t0s = time.process_time(), time.monotonic(), thread_cpu()
        await pilot.pause(min(20.0, args.idle_s - 6))
        out["idle_cpu_pct"] = 100 * (time.process_time() - c0) / (time.monotonic() - w0)
        out["idle_threads"] = by_thread(t0s, time.monotonic() - w0)
        # the run over (its process gone), still on screen
        while app.screen.view.status != "completed" or not app.screen.pump.finished:
            await pilot.pause(0.2)
        await pilot.pause(2.0)
        c0, w0, t0s = time.process_time(), time.monotonic(), thread_cpu()
        await pilot.pause(10.0)
        out["ended_cpu_pct"] = 100 * (time.process_time() - c0) / (time.monotonic() - w0)
        out["ended_threads"] = by_thread(t0s, time.monotonic() - w0)
        await pilot.press("q")
    RunHeader.render_lines = render
    writes = {}
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["type"] == "step":
            writes[e["step"]] = e["t"]
    lat, j = [], 0
    for step in sorted(writes):
        while j < len(shown) and shown[j][0] < step:
            j += 1
        if j < len(shown) and step > 10:
            lat.append(shown[j][1] - writes[step])
    out.update(
        steps=len(writes),
        frames=len(shown),
        latency_ms_p50=1000 * statistics.median(lat),
        latency_ms_p95=1000 * pct(lat, 0.95),
        latency_ms_max=1000 * max(lat),
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=50.0, help="steps per second written")
    ap.add_argument("--live-s", type=float, default=20.0)
    ap.add_argument("--idle-s", type=float, default=50.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "bench-live"
        cmd = [
            sys.executable,
            "-c",
            WRITER,
            str(run_dir),
            str(args.rate),
            str(args.live_s),
            str(args.idle_s),
        ]
        trainer = Trainer.launch(cmd, run_dir)
        try:
            r = asyncio.run(watch(run_dir, trainer, args))
        finally:
            trainer.kill_group()
            trainer.wait(10)
    print(f"steps written: {r['steps']} at {args.rate:g}/s; frames with the header: {r['frames']}")
    print(
        f"event written -> on screen: p50 {r['latency_ms_p50']:.0f} ms, "
        f"p95 {r['latency_ms_p95']:.0f} ms (target <= 150), max {r['latency_ms_max']:.0f} ms"
    )
    print(f"cockpit CPU while watching: {r['live_cpu_pct']:.1f}% of one core (target <= 6%)")
    print(f"  by thread: {r['live_threads']}")
    print(f"cockpit CPU while the run is idle: {r['idle_cpu_pct']:.2f}% of one core (target < 1%)")
    print(f"  by thread: {r['idle_threads']}")
    print(f"cockpit CPU once the run has ended: {r['ended_cpu_pct']:.2f}% of one core")
    print(f"  by thread: {r['ended_threads']}")


if __name__ == "__main__":
    main()
