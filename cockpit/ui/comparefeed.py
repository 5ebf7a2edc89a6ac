"""The loop that feeds the compare screen, on one worker thread: up to 8 runs,
each read once (a long finished one through its quick preview, as
cockpit.ui.pump.load_view does), then the live ones followed, a tick a second,
so their curves and figures keep moving. Display-free, like the pump: it hands
(index, RunView) pairs to a callback, only when something shown changed.

A run's session here samples its trainer once (its first tick) and then only
reads its events and checkpoints and checks that its process lives: no system
sampling a second per run, and no key here signals a trainer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cockpit.model.runmodel import ENDED, OK_STATUSES
from cockpit.model.view import RunView, ViewBuilder
from cockpit.session import Session
from cockpit.ui.pump import REPLAY_BATCH

MAX_RUNS = 8
TICK_S = 1.0
CLOCK_S = 5.0  # a live run's wall time moves even when no event came
SAMPLE_ONCE_S = 1e9  # "never again" for a session's system sampling (it samples at its first tick)


class Followed:
    """One compared run: its session, its view builder, and whether it still moves."""

    def __init__(self, run_dir: Path):
        self.session = Session(
            run_dir,
            None,
            notify=False,
            record=False,
            sample_every_s=SAMPLE_ONCE_S,
            ckpt_every_s=10.0,
        )
        self.builder = ViewBuilder()
        self.live = False
        self.shown = 0.0  # when its last view was posted


class CompareFeed:
    def __init__(
        self,
        runs: Sequence[Path],
        *,
        clock: Callable[[], float] = time.time,
        skip: Sequence[int] = (),
        tick_s: float = TICK_S,
    ):
        """`skip`: indexes whose view the screen already has and that need no reading
        (a finished run the monitor showed)."""
        if not 1 <= len(runs) <= MAX_RUNS:
            raise ValueError(f"compare takes 1 to {MAX_RUNS} runs, not {len(runs)}")
        self.runs = [Path(r) for r in runs]
        self.clock, self.skip, self.tick_s = clock, set(skip), tick_s

    def run(self, post: Callable[[int, RunView], object], cancelled: Callable[[], bool]) -> None:
        """Until cancelled; closes every session at the end."""
        followed: dict[int, Followed] = {}
        try:
            for i, path in enumerate(self.runs):
                if i in self.skip:
                    continue
                if cancelled():
                    return
                f = followed[i] = Followed(path)
                post(i, self._load(f))
            while not cancelled():
                live = [(i, f) for i, f in followed.items() if f.live]
                if not live:
                    return  # every run has ended: nothing will move
                t0 = time.monotonic()
                for i, f in live:
                    v = self._tick(f)
                    if v is not None:
                        post(i, v)
                time.sleep(max(0.0, self.tick_s - (time.monotonic() - t0)))
        finally:
            for f in followed.values():
                f.session.close()

    def _load(self, f: Followed) -> RunView:
        s = f.session
        preview = s.preview()
        if preview is not None and preview.status in OK_STATUSES:
            return f.builder.build(preview, self.clock())  # a long, finished history
        s.replay(batch_bytes=REPLAY_BATCH)
        m = s.model
        f.live = not (m.status in ENDED and m.proc_alive is not True)
        if not f.live:
            s.settle(timeout=2.0)
        f.shown = time.monotonic()
        return f.builder.build(m, self.clock())

    def _tick(self, f: Followed) -> RunView | None:
        s, now = f.session, self.clock()
        if s.done(now):
            s.settle(timeout=2.0)
            f.live = False
        else:
            s.tick(now)
        if f.builder.changed(s.model) or not f.live or time.monotonic() - f.shown >= CLOCK_S:
            f.shown = time.monotonic()
            return f.builder.build(s.model, self.clock())
        return None
