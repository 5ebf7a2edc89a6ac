"""The loop that drives a session for a live display, on its own thread: the
history first (a quick preview of a long one, then the full replay), then a
tick whenever the events file changes (at most every `min_tick_s`) and at
least every second, the tail of stdout.log, and the user's commands (save,
stop, kill, dump). It hands the display frozen RunViews through a callback, and
only when something shown changed (or the clock moved, while the run lives).

Display-free: the TUI runs `Pump.run` in a thread worker and posts each view
as a message. Everything that touches the session happens on this thread.
"""

from __future__ import annotations

import gc
import queue
import signal
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from cockpit.collect.logtail import LogTail
from cockpit.model.runmodel import ENDED, RunModel
from cockpit.model.view import RunView, ViewBuilder
from cockpit.session import Session

REPLAY_BATCH = 2 << 20  # bytes of events a replay batch reads (~10k steps; bounds memory)
LOG_LINES_SHOWN = 500  # the newest log lines a view carries
POLL_S = 0.05  # how often the events file is looked at while the trainer writes fast
BUSY_S = 1.0  # fast: 3 changes seen within this long (heartbeats alone never are)
CURVES_EVERY_S = 0.5  # a live run's curves copied into views at most this often (charts: 1/s)
QUIET_S = 3.0  # not fast for this long: back to notifications

COMMANDS = {
    "save": (signal.SIGUSR1, "asked the trainer to save a checkpoint now (SIGUSR1)"),
    "stop": (
        signal.SIGINT,
        "asked the trainer to stop gracefully (SIGINT): it finishes the step, saves and exits",
    ),
}


ASKS = {"save": signal.SIGUSR1, "dump": signal.SIGUSR2}  # sent only to a trainer that handles them


class Pump:
    def __init__(
        self,
        session: Session,
        *,
        clock: Callable[[], float] = time.time,
        min_tick_s: float = 0.12,
        clock_s: float = 1.0,
    ):
        self.session = session
        self.clock = clock
        self.min_tick_s, self.clock_s = min_tick_s, clock_s
        self.log = LogTail(session.run_dir / "stdout.log")
        self.builder = ViewBuilder(curves_every_s=CURVES_EVERY_S)
        self.finished = False  # the run ended and its last state was read
        self.final: RunView | None = None  # the first view posted once finished
        self._cmds: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._last_tick = 0.0
        self._changes: deque[float] = deque(maxlen=3)  # when the events file last changed
        self._busy_at = float("-inf")  # when it last changed fast
        self._froze = False

    def submit(self, cmd: str) -> None:
        """Queue a command for the loop: save | stop | kill | dump. Thread-safe."""
        self._cmds.put(cmd)
        self.wake()

    def wake(self) -> None:
        """Stop the loop's wait now: a command came, or it is being cancelled."""
        self.session.follower.wake()

    # --- the loop -------------------------------------------------------------

    def run(
        self,
        post: Callable[[RunView], object],
        notice: Callable[[str, str], object],
        cancelled: Callable[[], bool],
    ) -> None:
        """Until cancelled; closes the session at the end."""
        try:
            self._run(post, notice, cancelled)
        finally:
            if self._froze:
                gc.unfreeze()  # what was kept out of collections may be garbage now
            self.session.close()

    def _run(
        self,
        post: Callable[[RunView], object],
        notice: Callable[[str, str], object],
        cancelled: Callable[[], bool],
    ) -> None:
        s = self.session
        preview = s.preview()
        shown = 0.0  # when the last progress view went
        swapped = False

        def progress(done: int, total: int) -> bool:
            nonlocal preview, shown, swapped
            if cancelled():
                return False
            if s.snapshot_rejected and not swapped:
                # the run's events.idx, shown first, is not this run's: the history's
                # own preview instead while it loads
                preview, swapped = s.preview(snapshot_ok=False), True
            # a partial picture while it loads (not at the end: the whole one comes next)
            if done < total and time.monotonic() - shown >= 0.25:
                shown = time.monotonic()
                self.log.poll()
                post(self.build(preview or s.model, loading=done / total))
            return True

        if preview is not None:
            post(self.build(preview, loading=0.0))
            shown = time.monotonic()
        if not s.replay(progress, batch_bytes=REPLAY_BATCH):
            return
        preview = None
        # what is alive now (the app, the model, the history) lives as long as the
        # display: out of the collector's full passes, which would walk it all again
        # (~50 ms a pass on the main thread's clock too, the latency's worst frames)
        gc.freeze()
        self._froze = True
        self.log.poll()
        post(self.build(s.model))
        next_clock = time.monotonic() + self.clock_s
        live_seen = False
        if s.model.status in ENDED and s.model.proc_alive is not True:
            # over before we came: its records are all there is (sampling this machine
            # now would show figures that are not the run's)
            s.review(self.clock())
            s.settle()
            self.finished = True
            self._post(post, s.model)
        while not cancelled():
            self._commands(notice)
            if not self.finished:
                now = self.clock()
                if s.done(now):
                    self._finish(live_seen)
                    notice(f"the run ended: {s.model.status}", "info")
                else:
                    self._last_tick = time.monotonic()
                    s.tick(now)
                    live_seen = True
            self.log.poll()
            m = s.model
            clock_due = not self.finished and time.monotonic() >= next_clock
            if (
                clock_due
                or self.builder.changed(m, self.log.seq)
                or self.final is None
                and self.finished
            ):
                self._post(post, m)
                next_clock = time.monotonic() + self.clock_s
            self._wait(cancelled)

    def _finish(self, live_seen: bool) -> None:
        s = self.session
        if s.trainer is not None:
            s.trainer.wait(10)  # ours: reap it, for its exit code
        if live_seen:
            s.tick()  # a run that was over before we came shows its recorded samples only
        s.settle()
        self.finished = True

    def _wait(self, cancelled: Callable[[], bool]) -> None:
        """Until the events file changes (then no sooner than min_tick_s after the
        last tick), a command comes, or a second passes."""
        f = self.session.follower
        deadline = time.monotonic() + (self.clock_s if not self.finished else 0.5)
        while not cancelled() and self._cmds.empty():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            # a wait as long as it may be (commands and cancelling wake it): fewer wakes
            # while a run idles (0.9% of a core, was 1.2% with a wake each 0.1 s)
            self._watch_mode()
            if not self.finished and f.wait(left):
                self._changes.append(time.monotonic())
                rest = self._last_tick + self.min_tick_s - time.monotonic()
                if rest > 0:
                    time.sleep(rest)
                return
            if self.finished:
                time.sleep(min(left, 0.1))

    def _watch_mode(self) -> None:
        """While the trainer writes lines by the dozen a second, look at the file by
        stat() every 50 ms: the pump ticks at its own pace anyway, and inotify's
        three watchdog threads would wake for every line (2.3% of a core at 50 lines
        a second). Once it has been quiet a few seconds (an eval, heartbeats only),
        notifications again: a quiet file costs them nothing, where polling would
        wake this thread 20 times a second."""
        f, now = self.session.follower, time.monotonic()
        busy = len(self._changes) == self._changes.maxlen and now - self._changes[0] < BUSY_S
        if busy:
            self._busy_at = now
            if f.notify_mode == "watchdog":
                f.use_polling(POLL_S)
        elif f.notify_mode == "polling" and now - self._busy_at > QUIET_S:
            # slow changes (heartbeats every 2 s) are not busy: notified, they cost nothing
            f.use_notify()

    def _post(self, post: Callable[[RunView], object], m: RunModel) -> None:
        v = self.build(m)
        if self.finished and self.final is None:
            self.final = v
        post(v)

    def build(self, m: RunModel, loading: float | None = None) -> RunView:
        t = self.session.trainer
        return self.builder.build(
            m,
            self.clock(),
            log=tuple(self.log.lines)[-LOG_LINES_SHOWN:],
            log_seq=self.log.seq,
            loading=loading,
            pid=t.pid if t is not None else None,
        )

    # --- commands -------------------------------------------------------------

    def _commands(self, notice: Callable[[str, str], object]) -> None:
        while True:
            try:
                cmd = self._cmds.get_nowait()
            except queue.Empty:
                return
            t = self.session.trainer
            if self.finished or t is None or not t.alive():
                notice("the trainer is not running: nothing to signal", "warn")
            elif (sig := ASKS.get(cmd)) and t.handles(sig, self.session.rank_pids) is False:
                notice(
                    f"the trainer does not handle {sig.name} ({cmd}), and its default "
                    "action would kill it: not sent",
                    "warn",
                )
            elif cmd in COMMANDS:
                sig, said = COMMANDS[cmd]
                if t.signal(sig, self.session.rank_pids):
                    notice(said, "info")
                else:
                    notice("the trainer is gone: nothing to signal", "warn")
            elif cmd == "kill":
                t.kill_group()
                notice("killed the trainer and its process group (SIGKILL)", "warn")
            elif cmd == "dump":
                if self.session.dump_stacks():
                    notice("asked the trainer for a stack dump (SIGUSR2)", "info")
                else:
                    notice("the trainer is gone: no stacks to dump", "warn")


def load_view(run_dir: Path, *, clock: Callable[[], float] = time.time) -> RunView:
    """A run read once, for a side-by-side comparison: the preview of a long finished
    history (its whole loss curve from result.json), else the full replay."""
    s = Session(run_dir, None, notify=False)
    try:
        m = s.preview()
        if m is None:
            s.replay(batch_bytes=REPLAY_BATCH)
            s.settle(timeout=2.0)
            m = s.model
        return ViewBuilder().build(m, clock())
    finally:
        s.close()
