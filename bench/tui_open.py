"""Opening a finished run of a million steps in the TUI: time from the cockpit's
start to its first paint of the run, to the whole history replayed, and the
cockpit's memory. Targets: first paint < 1 s, whole history < 3 s (with the
run's events.idx, which the first open writes), RSS <= 200 MB.

    .venv/bin/python bench/tui_open.py [--steps 1000000] [--runs 3] [--repo PATH]

Each round opens the run twice: "cold" without events.idx (deleted first: a full
replay, which writes it) and "warm" with it; then a run of 2,000 steps, whose
first paint is the floor (imports and the TUI's own start). --repo times another
checkout of the cockpit (before/after, side by side on a busy machine).

The run directory (events.jsonl ~220 MB, result.json, a few system samples) is
written once under the system temp folder and reused. Each measurement is a
fresh process (imports included, their byte code cached as a user's Python
caches it, warmed once before the rounds), the TUI headless at 160x48: "first paint" is
the first frame that paints the run's header; "replayed" is when the header
stops saying "loading history".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_run(d: Path, steps: int) -> None:
    if (d / "result.json").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    t0 = 1.7e9
    losses = []
    with open(d / "events.jsonl", "w") as f:
        f.write(json.dumps({"v": 1, "t": t0, "type": "run_start", "run_id": d.name, "profile": "bench-1m",
                            "pid": 4194305, "device": "cuda", "world_size": 1, "dtype": "bfloat16",
                            "n_params": 124_000_000, "tokens_per_step": 524288, "total_steps": steps,
                            "total_epochs": 10}) + "\n")  # fmt: skip
        for i in range(1, steps + 1):
            loss = 2.5 + 8 * 2.718 ** (-i / (steps / 20)) + rng.gauss(0, 0.03)
            if i == steps // 3:
                loss += 5.0  # one spike the downsampled curve must keep
            losses.append(round(loss, 5))
            t = t0 + 0.3 * i
            f.write(
                f'{{"v": 1, "t": {t:.4f}, "type": "step", "step": {i}, "epoch": {i * 10 // steps}, '
                f'"loss": {losses[-1]}, "lr": 0.0006, "grad_norm": {1 + rng.random():.4f}, '
                f'"tokens": {524288 * i}, "step_ms": {300 + rng.random() * 20:.2f}, '
                f'"tokens_per_s": {1.7e6 + rng.random() * 1e5:.1f}, "mfu": 0.41}}\n'
            )
            if i % (steps // 20) == 0:
                f.write(json.dumps({"v": 1, "t": t + 0.1, "type": "eval", "step": i, "epoch": i * 10 // steps,
                                    "val_loss": loss + 0.1, "val_ppl": 2.718 ** (loss + 0.1), "metrics": {}}) + "\n")  # fmt: skip
        f.write(json.dumps({"v": 1, "t": t0 + 0.3 * steps + 1, "type": "run_end", "status": "completed",
                            "step": steps, "reason": "budget", "wall_s": 0.3 * steps + 1}) + "\n")  # fmt: skip
    (d / "result.json").write_text(
        json.dumps({"status": "completed", "curves": {"train_loss": losses}})
    )
    (d / "stdout.log").write_text("".join(f"step {i} | loss 2.5\n" for i in range(0, steps, 1000)))


CHILD = r"""
import asyncio, json, resource, sys, time
import psutil
t_start = psutil.Process().create_time()
from pathlib import Path
from cockpit.ui.app import CockpitApp
from cockpit.session import Session
from cockpit.ui.widgets.header import RunHeader

def rss_mib():
    return psutil.Process().memory_info().rss / 2**20

marks = {}
render = RunHeader.render_lines  # the compositor takes the header's lines for a frame
def spy(self, crop):
    v, now = self.view, time.time()
    if v is None:
        return render(self, crop)
    if "first_paint" not in marks:
        marks["first_paint"] = now - t_start
        marks["first_paint_step"] = v.figures.step
        marks["rss_at_first_paint"] = rss_mib()
    if v.loading is None and "replayed" not in marks:
        marks["replayed"] = now - t_start
    return render(self, crop)
RunHeader.render_lines = spy

async def main():
    run_dir = Path(sys.argv[1])
    app = CockpitApp("monitor", session=Session(run_dir, None))
    peak = 0.0
    async with app.run_test(size=(160, 48)) as pilot:
        while "replayed" not in marks and time.time() - t_start < 600:
            await pilot.pause(0.2)
            peak = max(peak, rss_mib())
        await pilot.pause(1.0)
        marks["rss_after_replay"] = rss_mib()
        marks["rss_peak_sampled"] = max(peak, marks["rss_after_replay"])
        marks["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        v = app.screen.view
        marks["steps_shown"], marks["loss_max"] = v.figures.step, v.curve("loss").maximum
        await pilot.press("q")
    print(json.dumps(marks))

asyncio.run(main())
"""


def open_once(d: Path, repo: Path) -> dict:
    return run_child(CHILD, d, repo)


def child_env(repo: Path) -> dict[str, str]:
    """A fresh Python as a user's runs: byte code cached. A sandbox that sets
    PYTHONDONTWRITEBYTECODE compiles every module of the cockpit again in each
    process (0.1-0.2 s of its start); the cache goes under the bench's temp folder,
    not into the checkout."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "cockpit-bench" / "pycache")
    return env


def warm_up(repo: Path) -> None:
    """Import what a first paint imports once, so the cache holds its byte code."""
    code = "import psutil, cockpit.session, cockpit.ui.app, cockpit.ui.widgets.header"
    subprocess.run([sys.executable, "-c", code], cwd=repo, env=child_env(repo), check=True)


def run_child(child: str, d: Path, repo: Path) -> dict:
    """`child` run by a fresh Python on the run `d` with `repo`'s cockpit: the JSON
    object its last line prints."""
    env = child_env(repo)
    r = subprocess.run([sys.executable, "-c", child, str(d)], cwd=repo, env=env,
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3, help="rounds of fresh processes to time")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout to time")
    args = ap.parse_args()
    root = Path(tempfile.gettempdir()) / "cockpit-bench"
    d, tiny = root / f"finished-{args.steps}", root / "finished-2000"
    t = time.time()
    make_run(d, args.steps)
    make_run(tiny, 2000)
    size = (d / "events.jsonl").stat().st_size
    print(
        f"run: {d} ({args.steps:,} steps, events.jsonl {size / 2**20:.0f} MiB; made in {time.time() - t:.0f} s)"
    )
    print(f"cockpit: {args.repo}")
    warm_up(args.repo)
    for k in range(args.runs):
        (d / "events.idx").unlink(missing_ok=True)
        for what in ("cold", "warm"):
            m = open_once(d, args.repo)
            idx = d / "events.idx"
            note = (
                f"events.idx {idx.stat().st_size / 2**10:.0f} KiB"
                if idx.exists()
                else "no events.idx"
            )
            print(
                f"#{k + 1} {what}: first paint {m['first_paint']:.2f} s (step {m['first_paint_step']:,} "
                f"shown; target < 1 s) · whole history {m['replayed']:.2f} s (target < 3 s) · RSS at "
                f"first paint {m['rss_at_first_paint']:.0f} MiB, after {m['rss_after_replay']:.0f} MiB, "
                f"peak {m['ru_maxrss']:.0f} MiB (target <= 200) · curve max {m['loss_max']:.2f} "
                f"(spike kept) · {note}"
            )
        m = open_once(tiny, args.repo)
        print(f"#{k + 1} floor: a 2,000-step run's first paint {m['first_paint']:.2f} s")


if __name__ == "__main__":
    main()
