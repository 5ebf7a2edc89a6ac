"""What watching costs: the trainer's tokens per wall-clock second with the headless cockpit attached
vs without, alternating in one run, and the cockpit's own CPU while it watches.

    python bench/cockpit_overhead.py [--rounds 5] [--steps 300]
    python bench/cockpit_overhead.py --windows 12 [--window-s 20] [--tui]

Without: `python -m core.train` alone. With: `cockpit run --headless` (which
launches the same command under the supervisor and samples it at 1 Hz). The
trainer's throughput is tokens per wall-clock second: the tokens trained between
its first step event after a warm-up and its last, over the time between them
(a step event's own `tokens_per_s` covers the step's compute only, and leaves
out the time between steps, exactly where a watcher's cost would show); the cockpit's CPU is its user+system time over its wall time, read
with psutil while it runs (its child, the trainer, is not counted).

`--windows N` removes the run-to-run spread of this shared machine: one long
trainer run, with `cockpit watch` attached in every other window of
`--window-s` seconds, compared with the window before it. `--tui` attaches the
Textual monitor instead (`cockpit watch` in a 160x48 tmux pane), and reports its CPU.
"""

import argparse
import json
import math
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARMUP = 20  # steps dropped from each run


def sets(steps: int) -> list[str]:
    pairs = [
        "model.n_layer=2", "model.n_head=4", "model.n_embd=128", "data.context=64",
        "train.batch_size=32", f"train.max_steps={steps}", "train.epochs=null",
        "eval.every_epoch=false", "eval.every_steps=100", "eval.val_batches=2", "gate.metrics={}",
        "eval.patience=null", "gate.stop_on_pass=false", "checkpoint.every_epoch=false",
        "checkpoint.every_steps=200", "train.device=cpu",
    ]  # fmt: skip
    out = []
    for p in pairs:
        out += ["--set", p]
    return out


def wall_rate(steps: list[tuple[float, int]]) -> float:
    """Tokens per wall-clock second over (t, tokens) step events: first to last."""
    if len(steps) < 2 or steps[-1][0] <= steps[0][0]:
        return math.nan
    return (steps[-1][1] - steps[0][1]) / (steps[-1][0] - steps[0][0])


def tokens_per_s(run_dir: Path) -> float:
    evs = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    return wall_rate([(e["t"], e["tokens"]) for e in evs if e["type"] == "step"][WARMUP:])


def without(steps: int, tmp: Path) -> tuple[float, float]:
    rd = tmp / f"bare-{time.time_ns()}"
    cmd = [sys.executable, "-m", "core.train", "--run-dir", str(rd), *sets(steps)]
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return tokens_per_s(rd), time.time() - t0


def with_cockpit(steps: int, tmp: Path) -> tuple[float, float, float]:
    rd = tmp / f"cockpit-{time.time_ns()}"
    cmd = [sys.executable, "-m", "cockpit.cli", "run", "--headless", "--run-dir", str(rd)]
    cmd += ["--skip-preflight", "--skip-postflight"]  # the watching is measured, not the checks
    t0 = time.time()
    p = subprocess.Popen(cmd + sets(steps), cwd=ROOT, stdout=subprocess.DEVNULL)
    me = psutil.Process(p.pid)
    cpu, t_start = None, None
    while p.poll() is None:
        try:
            ct = me.cpu_times()
            if t_start is None and (rd / "events.jsonl").exists():
                # from the trainer's first event on: the watching, not the cockpit's imports
                t_start, cpu0 = time.time(), ct.user + ct.system
            if t_start is not None:
                cpu, t_end = ct.user + ct.system - cpu0, time.time()
        except psutil.Error:
            break
        time.sleep(0.2)
    assert p.wait() == 0
    share = cpu / (t_end - t_start) if cpu is not None and t_end > t_start else float("nan")
    return tokens_per_s(rd), time.time() - t0, share


class _TuiWatcher:
    """`cockpit watch RUN` in a detached tmux pane: a real terminal for the TUI."""

    def __init__(self, rd: Path, name: str):
        self.name = name
        cmd = f"cd {ROOT} && {sys.executable} -m cockpit.cli watch {rd}"
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "48", cmd])
        pid = subprocess.run(
            ["tmux", "list-panes", "-t", name, "-F", "#{pane_pid}"], capture_output=True, text=True
        ).stdout.split()[0]
        self.proc = psutil.Process(int(pid))

    def cpu(self) -> float:
        procs = [self.proc, *self.proc.children(recursive=True)]
        return sum(p.cpu_times().user + p.cpu_times().system for p in procs)

    def stop(self) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "q"])
        time.sleep(1)
        subprocess.run(["tmux", "kill-session", "-t", self.name], stderr=subprocess.DEVNULL)


def windows(n: int, window_s: float, tmp: Path, tui: bool = False) -> None:
    """One long trainer run; a `cockpit watch` attached in every other window. The same
    process, data and memory layout on both sides: only the watching differs."""
    rd = tmp / "windows"
    cmd = [sys.executable, "-m", "core.train", "--run-dir", str(rd), *sets(10**6)]
    # steps only: an eval (greedy walks) can outlast a window
    cmd += ["--set", "eval.every_steps=1000000", "--set", "checkpoint.every_steps=1000000"]
    core = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    while not (rd / "events.jsonl").exists() or b'"step"' not in (rd / "events.jsonl").read_bytes():
        time.sleep(0.5)
    time.sleep(5)  # past the first steps
    spans, shares = [], []
    for k in range(n):
        watcher = None
        if k % 2 and tui:
            watcher = _TuiWatcher(rd, f"overhead-{k}")
            time.sleep(5)  # its start-up and history replay are not the steady state
            cpu0 = watcher.cpu()
        elif k % 2:
            watcher = subprocess.Popen(
                [sys.executable, "-m", "cockpit.cli", "watch", str(rd), "--headless"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            time.sleep(3)  # its start-up and history replay are not the steady state
        t0 = time.time()
        time.sleep(window_s)
        spans.append((watcher is not None, t0, time.time()))
        if isinstance(watcher, _TuiWatcher):
            shares.append((watcher.cpu() - cpu0) / (time.time() - t0))
            watcher.stop()
        elif watcher is not None:
            watcher.send_signal(signal.SIGINT)  # detach
            watcher.wait()
    alive = core.poll() is None
    core.send_signal(signal.SIGINT)
    core.wait()
    evs = [json.loads(x) for x in (rd / "events.jsonl").read_text().splitlines()]
    if not alive:
        print(f"the trainer ended early: {evs[-1]}")
    steps = [(e["t"], e["tokens"]) for e in evs if e["type"] == "step"]
    med = [wall_rate([(t, n) for t, n in steps if t0 <= t < t1]) for _, t0, t1 in spans]
    ratios = [b / a for a, b in zip(med[0::2], med[1::2], strict=False)]
    for a, b in zip(med[0::2], med[1::2], strict=False):
        print(f"window pair: without {a:,.0f} tokens per wall second   with cockpit watch {b:,.0f}")
    what = "the TUI" if tui else "cockpit watch --headless"
    print(
        f"same run, {window_s:.0f} s windows, {what}: with / without = "
        f"{statistics.median(ratios):.3f} (median of {len(ratios)} pairs; "
        f"range {min(ratios):.3f}-{max(ratios):.3f}; target >= 0.99)"
    )
    if shares:
        print(
            f"the TUI's CPU while watching: median {100 * statistics.median(shares):.1f}% of one "
            f"core, max {100 * max(shares):.1f}% (target <= 10%)"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument(
        "--windows", type=int, default=0, help="instead: this many windows of one long run"
    )
    ap.add_argument("--window-s", type=float, default=20.0)
    ap.add_argument("--tui", action="store_true", help="with --windows: attach the Textual UI")
    args = ap.parse_args()
    if args.windows:
        with tempfile.TemporaryDirectory() as d:
            windows(args.windows, args.window_s, Path(d), args.tui)
        return
    bare, watched, shares = [], [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for r in range(args.rounds):
            # ABBA: which goes first alternates, so a drift of the shared machine cancels
            if r % 2 == 0:
                a, wa = without(args.steps, tmp)
                b, wb, share = with_cockpit(args.steps, tmp)
            else:
                b, wb, share = with_cockpit(args.steps, tmp)
                a, wa = without(args.steps, tmp)
            bare.append(a)
            watched.append(b)
            shares.append(share)
            print(
                f"round {r + 1}: without {a:,.0f} tok/s ({wa:.1f} s)   with cockpit {b:,.0f} tok/s "
                f"({wb:.1f} s), cockpit CPU {100 * share:.2f}% of one core"
            )
    ratio = statistics.median(w / b for w, b in zip(watched, bare, strict=True))
    print(
        f"trainer tokens per wall second with the headless cockpit / without: {ratio:.3f} (median of "
        f"{args.rounds} pairs in ABBA order; target >= 0.99)"
    )
    print(
        f"cockpit CPU while watching: median {100 * statistics.median(shares):.2f}% of one core, "
        f"max {100 * max(shares):.2f}% (target < 2%)"
    )


if __name__ == "__main__":
    main()
