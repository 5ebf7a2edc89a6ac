"""Stdout adapters: parse speed per format, and a live wrapped run at 10k lines/s.

    python bench/adapters.py [--lines 200000] [--live-s 10] [--rate 10000]

Parse: each format's lines (made with the trainers' own print formats, numbers
varying line to line) through an Adapter with the format given, 3 times, best
and median: `feed` alone (str lines); bytes to events (bytes read from
stdout.log: \\r -> \\n, split, decode, feed: parsing only); and the whole path a
wrapped run takes, bytes to events.jsonl (the same, then each event typed with
event_dict, encoded with orjson and appended to a file in one write per 64 KiB
read, as cockpit.wrap.wrapped does). The target is 200k lines/s for every adapter.

Live: launch_wrapped on a script printing nanoGPT lines at --rate lines/s
(on a schedule, not a sleep after each print) for --live-s seconds; the
follower thread reads every 0.1 s. Lag: bytes of stdout.log not yet parsed,
sampled every 50 ms, in lines (and in ms at that rate); loss: steps printed
vs step events written; cost: this process's CPU seconds per second of run.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from cockpit.wrap.adapters import Adapter  # noqa: E402
from cockpit.wrap.adapters.runinfo import event_dict  # noqa: E402
from cockpit.wrap.wrapped import launch_wrapped  # noqa: E402
from core.events import read_events  # noqa: E402


def corpus(fmt: str, n: int) -> list[str]:
    out = []
    for i in range(n):
        loss = 4.0 - i * 1e-6
        if fmt == "nanogpt" or fmt == "nanogpt+rank+ansi":
            line = f"iter {i}: loss {loss:.4f}, time {50 + i % 7:.2f}ms, mfu {7 + i % 3:.2f}%"
            if fmt != "nanogpt":
                line = f"[default0]:\x1b[32m{line}\x1b[0m" if i % 2 else f"[default1]:{line}"
        elif fmt == "nanochat":
            line = (
                f"step {i:05d}/{n:05d} ({100 * i / n:.2f}%) | loss: {loss:.6f} | lrm: 1.00 | "
                f"dt: {461 + i % 9:.2f}ms | tok/sec: {1136470 - i % 97:,} | bf16_mfu: 41.66 | "
                f"epoch: 1 pq: 0 rg: {i % 50} | total time: {i / 130:.2f}m | eta: 164.8m"
            )
        elif fmt == "hf":
            if i % 20 == 19:
                line = (
                    f"{{'loss': '{loss:.4g}', 'grad_norm': '1.234', 'learning_rate': "
                    f"'{5e-5 * (1 - i / n):.4g}', 'epoch': '{i / 1000:.4g}'}}"
                )
            else:
                line = f" {100 * i // n:2d}%|██▌       | {i}/{n} [01:02<03:04,  9.98it/s]"
        elif fmt == "lightning":
            b = i // 2
            line = (
                f"Epoch {b // 1000}:  45%|████▌     | {b % 1000 + 1}/1000 [00:01<00:02, 25.00it/s, "
                f"v_num=0, train_loss_step={loss:.3f}]"
            )
        elif fmt == "jsonl":
            line = f'{{"step": {i}, "loss": {loss:.5f}, "lr": 0.0003, "grad_norm": 0.91, "tok/s": 41250.5}}'
        else:  # kv
            line = f"step={i} loss={loss:.4f} lr=3.00e-04 grad_norm=0.910 tok/s=41250 dt=0.1021"
        out.append(line)
    return out


def parse_feed(fmt: str, lines: list[str]) -> tuple[float, int]:
    a = Adapter(fmt.split("+")[0])
    feed, n = a.feed, 0
    t0 = time.perf_counter()
    for line in lines:
        evs = feed(line)
        if evs:
            n += len(evs)
    return time.perf_counter() - t0, n


def parse_bytes(fmt: str, data: bytes) -> tuple[float, int]:
    a = Adapter(fmt.split("+")[0])
    feed, n = a.feed, 0
    t0 = time.perf_counter()
    for raw in data.replace(b"\r", b"\n").split(b"\n"):
        if raw:
            evs = feed(raw.decode("utf-8", "replace"))
            if evs:
                n += len(evs)
    return time.perf_counter() - t0, n


def parse_write(fmt: str, data: bytes, out: Path) -> tuple[float, int]:
    """The whole path: 64 KiB reads, parsed, each event typed, encoded and written."""
    a = Adapter(fmt.split("+")[0])
    feed, n = a.feed, 0
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        tail = b""
        for i in range(0, len(data) + 1, 65536):
            chunk = tail + data[i : i + 65536].replace(b"\r", b"\n")
            if i + 65536 >= len(data):
                chunk, tail = chunk + b"\n", b""
            *whole, tail = chunk.split(b"\n")
            buf = []
            for raw in whole:
                if raw:
                    for ev in feed(raw.decode("utf-8", "replace")) or ():
                        d, _ = event_dict(ev, t0)
                        if d is not None:
                            buf.append(orjson.dumps(d) + b"\n")
                            n += 1
            f.write(b"".join(buf))
    return time.perf_counter() - t0, n


WRITER = """
import sys, time
n = int(float(sys.argv[1]) * float(sys.argv[2])); rate = float(sys.argv[2])
print("tokens per iteration will be: 16,384", flush=True)
t0 = time.monotonic()
for i in range(n):
    print(f"iter {i}: loss {4.0 - i * 1e-6:.4f}, time 12.50ms, mfu 7.10%")
    if i % 100 == 99:
        sys.stdout.flush()
        d = t0 + (i + 1) / rate - time.monotonic()
        if d > 0:
            time.sleep(d)
"""


def live(seconds: float, rate: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        script = Path(tmp) / "writer.py"
        script.write_text(WRITER)
        c0 = os.times()
        trainer, a = launch_wrapped(
            [sys.executable, str(script), str(seconds), str(rate)], run_dir, "auto"
        )
        a.start()
        lag: list[int] = []
        t0 = time.time()
        while trainer.alive():
            try:
                lag.append(max(0, os.path.getsize(run_dir / "stdout.log") - a.off))
            except OSError:
                pass
            time.sleep(0.05)
        wall = time.time() - t0
        a.stop()
        c1 = os.times()
        evs = read_events(run_dir / "events.jsonl")
        steps = [e.step for e in evs if e.type == "step"]
        n = int(seconds * rate)
        line_bytes = os.path.getsize(run_dir / "stdout.log") / max(1, n)
        lag_lines = sorted(x / line_bytes for x in lag)
        p = lambda q: lag_lines[min(len(lag_lines) - 1, int(q * len(lag_lines)))]  # noqa: E731
        cpu = (c1.user - c0.user) + (c1.system - c0.system)
        print(
            f"live: {n} lines at {rate:,.0f}/s for {wall:.1f} s: {len(steps)} step events "
            f"({'no loss' if steps == list(range(n)) else 'LOSS OR DISORDER'}), "
            f"last event {evs[-1].type}; lag p50 {p(0.5):.0f} lines, p95 {p(0.95):.0f}, "
            f"max {lag_lines[-1]:.0f} ({1000 * lag_lines[-1] / rate:.0f} ms); "
            f"cockpit CPU {cpu / wall:.2f} s/s"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--live-s", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=10_000.0)
    args = ap.parse_args()
    ns = min(timeit.repeat("float(s)", "s = '3.9876'", number=200_000, repeat=5)) / 200_000 * 1e9
    print(f"for scale: float('3.9876') takes {ns:.0f} ns on this machine")
    fmts = ("nanogpt", "nanogpt+rank+ansi", "nanochat", "hf", "lightning", "jsonl", "kv")
    for fmt in fmts:
        lines = corpus(fmt, args.lines)
        data = "\n".join(lines).encode()
        feed_t, byte_t, whole_t = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(3):
                dt, n = parse_feed(fmt, lines)
                feed_t.append(dt)
                dt2, n2 = parse_bytes(fmt, data)
                byte_t.append(dt2)
                dt3, n3 = parse_write(fmt, data, Path(tmp) / "events.jsonl")
                whole_t.append(dt3)
        assert n == n2 == n3 and n > 0, (fmt, n, n2, n3)
        L = len(lines)
        print(
            f"{fmt:<18} {L} lines -> {n} events: feed {L / min(feed_t):>9,.0f} lines/s best, "
            f"{L / statistics.median(feed_t):>9,.0f} median; bytes to events {L / min(byte_t):>9,.0f} "
            f"best, {L / statistics.median(byte_t):>9,.0f} median; whole path to events.jsonl "
            f"{L / min(whole_t):>9,.0f} best, {L / statistics.median(whole_t):>9,.0f} median"
        )
    if args.live_s > 0:
        live(args.live_s, args.rate)


if __name__ == "__main__":
    main()
