"""The bare replay of a finished run of a million steps without its events.idx:
`Session(run_dir, None, notify=False).replay()`, no TUI. Issue 14's target is the
whole TUI open under 3 s; this is the part of it that reads and parses
events.jsonl and builds the run model.

    .venv/bin/python bench/replay.py [--steps 1000000] [--runs 3] [--repo PATH ...]

Each round is a fresh process per checkout (imports not timed), the checkouts
taking turns so that a busy machine slows them alike: give --repo twice (a copy
of the code before a change, and this one) for a before/after side by side.
The replay's wall time is printed with its CPU time (steadier on a shared
machine: other processes' load shows in the first, less in the second). Besides
them each line prints a few of the model's figures, which
must be the same for every checkout.

The run (bench/tui_open.py's) is written once under the system temp folder and
reused. The replays read it through a scratch directory of links of this
script's own, so the events.idx a replay writes (deleted before each round)
never meets another reader of the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui_open import make_run, run_child  # noqa: E402 (a sibling script)

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from pathlib import Path
from cockpit.session import Session
d = Path(sys.argv[1])
(d / "events.idx").unlink(missing_ok=True)
s = Session(d, None, notify=False)
t, c = time.perf_counter(), time.process_time()
s.replay()
dt, cpu = time.perf_counter() - t, time.process_time() - c
m = s.model
s.close()
(d / "events.idx").unlink(missing_ok=True)
print(json.dumps({
    "replay_s": dt, "cpu_s": cpu, "events": s.replayed_events, "step": m.step, "status": m.status,
    "loss_max": m.loss.maximum, "loss_n": m.loss.n, "buckets": len(m.loss.xs),
    "ema": m.loss_ema, "evals": m.n_evals, "tokens": m.tokens,
}))
"""


def replay_once(d: Path, repo: Path) -> dict:
    return run_child(CHILD, d, repo)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3, help="rounds of fresh processes to time")
    ap.add_argument("--repo", type=Path, action="append", help="a checkout to time (repeatable)")
    args = ap.parse_args()
    repos = args.repo or [REPO]
    d = Path(tempfile.gettempdir()) / "cockpit-bench" / f"finished-{args.steps}"
    t = time.time()
    make_run(d, args.steps)
    size = (d / "events.jsonl").stat().st_size
    print(
        f"run: {d} ({args.steps:,} steps, events.jsonl {size / 2**20:.0f} MiB; made in {time.time() - t:.0f} s)"
    )
    with tempfile.TemporaryDirectory(prefix="cockpit-replay-") as tmp:
        scratch = Path(tmp) / d.name
        scratch.mkdir()
        for p in d.iterdir():
            if p.name != "events.idx":
                (scratch / p.name).symlink_to(p)
        times: dict[Path, list[float]] = {r: [] for r in repos}
        cpu: dict[Path, list[float]] = {r: [] for r in repos}
        for k in range(args.runs):
            for repo in repos:
                m = replay_once(scratch, repo)
                times[repo].append(m.pop("replay_s"))
                cpu[repo].append(m.pop("cpu_s"))
                figs = " ".join(f"{a}={b}" for a, b in m.items())
                print(
                    f"#{k + 1} {repo}: replay {times[repo][-1]:.2f} s (CPU {cpu[repo][-1]:.2f} s) · {figs}",
                    flush=True,
                )
    for repo, ts in times.items():
        cs = cpu[repo]
        print(
            f"{repo}: replay best {min(ts):.2f} s, median {sorted(ts)[len(ts) // 2]:.2f} s; "
            f"CPU best {min(cs):.2f} s, median {sorted(cs)[len(cs) // 2]:.2f} s; over {len(ts)} rounds"
        )


if __name__ == "__main__":
    main()
