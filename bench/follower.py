"""EventsFollower: replay speed of a 1M-line events.jsonl, and live latency.

    python bench/follower.py [--lines 1000000] [--live-s 10]

Replay: a realistic file (steps, with a heartbeat every 20 steps, an eval every
1000, a checkpoint every 5000, all through core.events.encode) read from the
top to EOF by a fresh follower, 3 times. Live: a writer process appends a step
event every 20 ms while the consumer loops `wait(0.25); poll()`; latency is
from the event's `t` (written just before the write) to poll's return, for the
watchdog and the polling mode.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from cockpit.collect.follow import EventsFollower  # noqa: E402
from core.events import Checkpoint, Eval, Heartbeat, Step, encode  # noqa: E402

WRITER = """
import sys, time
from core.events import JsonlSink, Step
sink = JsonlSink(sys.argv[1])
n = int(float(sys.argv[2]) * 50)
due = time.monotonic()
for i in range(1, n + 1):
    sink.write(Step(step=i, epoch=0, loss=2.0, lr=3e-4, grad_norm=1.0, tokens=4096 * i,
                    step_ms=20.0, tokens_per_s=2e5))
    due += 0.02  # a schedule, not a sleep after each write: 50/s however long a write takes
    time.sleep(max(0.0, due - time.monotonic()))
sink.close()
"""


def make_file(path: Path, n: int) -> None:
    t0 = 1.7e9
    with open(path, "w", encoding="utf-8") as f:
        buf = []
        step = 0
        for i in range(n):
            t = t0 + i * 0.05
            if i % 5000 == 4999:
                ev = Checkpoint(
                    step=step,
                    path=f"checkpoints/step-{step:07d}.pt",
                    bytes=123456789,
                    sha256="ab" * 32,
                    seconds=1.25,
                    tags=["latest"],
                    t=t,
                )
            elif i % 1000 == 999:
                ev = Eval(
                    step=step,
                    epoch=step // 10000,
                    val_loss=2.5 - i * 1e-7,
                    val_ppl=12.18,
                    metrics={"acc": 0.41},
                    t=t,
                )
            elif i % 20 == 19:
                ev = Heartbeat(step=step, t=t)
            else:
                step += 1
                ev = Step(
                    step=step,
                    epoch=step // 10000,
                    loss=3.0 - step * 1e-6,
                    lr=3e-4,
                    grad_norm=0.8 + (step % 7) * 0.01,
                    tokens=4096 * step,
                    step_ms=48.25,
                    tokens_per_s=84901.3,
                    mfu=0.31,
                    t=t,
                )
            buf.append(encode(ev))
            if len(buf) == 10000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))


def replay(path: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    f = EventsFollower(path, notify=False)
    n = 0
    while batch := f.poll():
        n += len(batch)
    dt = time.perf_counter() - t0
    assert f.malformed == 0, f.malformed_lines
    f.close()
    return dt, n


def floor(path: Path) -> float:
    """The parse alone, for scale on a shared machine: read, split, orjson each line."""
    t0 = time.perf_counter()
    data = path.read_bytes()
    out = list(map(orjson.loads, data.split(b"\n")[:-1]))
    dt = time.perf_counter() - t0
    del data, out
    return dt


def live(folder: Path, notify: bool, seconds: float) -> tuple[str, list[float]]:
    path = folder / f"live-{notify}.jsonl"
    f = EventsFollower(path, notify=notify)
    mode = f.notify_mode
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(seconds)], cwd=ROOT)
    lat_ms: list[float] = []
    while proc.poll() is None:
        f.wait(0.25)
        batch = f.poll()
        now = time.time()
        lat_ms += [(now - e["t"]) * 1e3 for e in batch]
    lat_ms += [(time.time() - e["t"]) * 1e3 for e in f.poll()]  # the tail after the writer ends
    f.close()
    return mode, lat_ms


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--live-s", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "events.jsonl"
        t0 = time.perf_counter()
        make_file(path, args.lines)
        mb = os.path.getsize(path) / 1e6
        print(f"generated {args.lines} lines, {mb:.1f} MB in {time.perf_counter() - t0:.1f} s")

        times, floors = [], []
        for _ in range(3):
            dt, n = replay(path)
            assert n == args.lines, n
            times.append(dt)
            floors.append(floor(path))
        best, med = min(times), statistics.median(times)
        print(
            f"replay: {n} lines, {mb:.1f} MB: best {best:.3f} s, median {med:.3f} s, "
            f"{n / best:,.0f} events/s (best), {n / med:,.0f} events/s (median)"
        )
        print(
            f"orjson floor (read + split + loads each line, no follower): best {min(floors):.3f} s, "
            f"median {statistics.median(floors):.3f} s; follower/floor {best / min(floors):.2f}x"
        )

        for notify in (True, False):
            mode, lat = live(tmp, notify, args.live_s)
            print(
                f"live {mode:>8}: {len(lat)} events at 50/s, latency p50 {pct(lat, 0.5):.1f} ms, "
                f"p95 {pct(lat, 0.95):.1f} ms, max {max(lat):.1f} ms"
            )


if __name__ == "__main__":
    main()
