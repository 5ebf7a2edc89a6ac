"""A session: the collectors of one run feeding one run model, tick by tick.

Each `tick()` reads new events, takes a system sample when one is due (and
records it to `system.jsonl`), rescans checkpoints, notices the trainer's
exit, runs the health checks and acts on a stall (a SIGUSR2 stack dump). The
displays (headless printer, TUI) only read `session.model`.

Only one cockpit records a run's system samples: the one holding an flock on
`.system.lock` in the run directory (the kernel drops it if that cockpit is
killed, and the next watcher takes over).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import orjson

from cockpit.collect import pyspy
from cockpit.collect.ckwatch import CheckpointWatcher
from cockpit.collect.energy import read_energy, with_price, write_energy
from cockpit.collect.follow import EventsFollower
from cockpit.collect.ranks import RankReader, running_pids
from cockpit.collect.sampling import ProcessSampler
from cockpit.collect.system import SystemSampler, without_threads
from cockpit.fmt import clean
from cockpit.model import snapshot
from cockpit.model.curve import Curve
from cockpit.model.health import EXIT_CODE_WAIT_S, Health, HealthConfig
from cockpit.model.runmodel import ENDED, RunModel
from cockpit.notify import RunNotices
from cockpit.supervisor import Trainer, announced, log_tail
from core.energy import EnergyMeter
from core.jsonl import JsonlReader, tail_objects

if TYPE_CHECKING:
    from cockpit.collect.gpu import GpuSampler

THREADS_EVERY_S = 10.0  # per-thread lists go to system.jsonl this often (the rest every sample)
END_GRACE_S = 30.0  # after run_end, how long to wait for the process to exit
POLL_BYTES = 8 << 20  # events read per poll at most (~40k events)
PREVIEW_BYTES = 32 << 20  # a history this big gets a quick preview before its replay
PREVIEW_TAIL_BYTES = 2 << 20  # the newest events a preview reads (~10k steps)


class Session:
    def __init__(
        self,
        run_dir: Path,
        trainer: Trainer | None,
        health: HealthConfig | None = None,
        *,
        sample_every_s: float = 1.0,
        ckpt_every_s: float = 2.0,
        notify: bool = True,
        notices: RunNotices | None = None,
        meter: EnergyMeter | None = None,
        price_kwh: float | None = None,
        record: bool = True,
    ):
        """record=False: never record system.jsonl (a view of many runs that samples
        once must not hold a run's .system.lock and keep a watcher from recording)."""
        self.run_dir = Path(run_dir)
        self.trainer = trainer
        self.model = RunModel(run_dir=self.run_dir, run_id=self.run_dir.name)
        self.health = Health(health)
        self.follower = EventsFollower(self.run_dir / "events.jsonl", notify=notify)
        self.ckpts = CheckpointWatcher(self.run_dir / "checkpoints")
        self.sys_sampler = SystemSampler(self.run_dir)
        self._gpu_sampler: GpuSampler | None = None  # made at the first sample (NVML's import)
        self.proc_sampler: ProcessSampler | None = None
        self.sample_every_s, self.ckpt_every_s = sample_every_s, ckpt_every_s
        self._next_sample = self._next_ckpt = 0.0
        self._last_threads = 0.0
        self._record: BinaryIO | None = None  # system.jsonl, opened when we hold the lock
        self._lock_fd: int | None = None if record else -1  # -1: never take the lock
        self._dump_wait: tuple[float, dict, str] | None = None  # (asked at, stacks/ before, why)
        self.rank_pids: list[int] | None = None  # under torchrun: the ranks running here
        self._ended_at: float | None = None
        self.replayed_events = 0
        # notifications (--notify), the energy meter of a wrapped command, the price per kWh
        self.notices, self.meter, self.price_kwh = notices, meter, price_kwh
        self._pyspy: threading.Thread | None = None  # a py-spy dump under way
        self._pyspy_out: list[pyspy.Dump] | None = None
        self._pyspy_order = ""
        self._settled = False
        self._peeked = False  # preview() gave a display the snapshot, unchecked
        self.snapshot_rejected = False  # ... and replay() found it is not this run's
        self._replayed_to: int | None = None  # events.jsonl bytes replay() read (the rest: live)
        self._indexer: subprocess.Popen | None = None

    # --- history ---------------------------------------------------------------

    def replay(
        self,
        progress: Callable[[int, int], object] | None = None,
        batch_bytes: int = POLL_BYTES,
        index_min_bytes: int | None = None,
    ) -> bool:
        """Everything the run wrote so far: events and system samples merged in time
        order (a replayed eval shows the memory of its moment), in batches.

        `progress(bytes read, bytes in the file)` is called after each batch; when it
        returns False the replay stops there (a display closing) and this returns False.
        A replay that read at least `index_min_bytes` (snapshot.MIN_BYTES unless given)
        writes the run's events.idx."""
        m, n = self.model, 0
        # a snapshot of this history (events.idx): only what was written after it is read
        covered = (
            snapshot.restore(m, self.run_dir, self.follower) if not self.follower.offset else 0
        )
        start = self.follower.offset
        self.snapshot_rejected = self._peeked and start == 0
        sys_reader = JsonlReader(self.run_dir / "system.jsonl", offset=covered)
        samples = (d for d in sys_reader if isinstance(t := d.get("t"), int | float) and t == t)
        pending = next(samples, None)
        try:
            size = (self.run_dir / "events.jsonl").stat().st_size
        except OSError:
            size = 0
        while True:
            evs = self.follower.poll(batch_bytes)
            ts = (
                [t if isinstance(t := e.get("t"), int | float) and t == t else 0.0 for e in evs]
                if pending is not None
                else []
            )
            i = 0
            while i < len(evs):
                # the events up to the next system sample go in bulk, then the sample
                j = i
                if pending is not None:
                    while j < len(evs) and ts[j] < pending["t"]:
                        j += 1
                else:
                    j = len(evs)
                m.feed_all(evs[i:j])
                i = j
                while pending is not None and i < len(evs) and pending["t"] <= ts[i]:
                    m.feed_system(pending)
                    pending = next(samples, None)
            n += len(evs)
            if progress is not None and progress(self.follower.offset, max(size, 1)) is False:
                return False
            if not self.follower.more:
                break
        while pending is not None:
            m.feed_system(pending)
            pending = next(samples, None)
        self.replayed_events = n
        self._replayed_to = self.follower.offset
        snapshot.store(
            m,
            self.run_dir,
            self.follower,
            sys_reader.offset,
            self.follower.offset - start,
            index_min_bytes,
        )
        self._find_trainer()
        self._check_process(time.time())
        if self.notices is not None:
            self.notices.baseline(m)  # the history is not news (a run resumed here: its past)
        return True

    def preview(self, snapshot_ok: bool = True) -> RunModel | None:
        """A quick picture of a long history, for a display to show while replay() reads
        it all: the run's events.idx as it stands (replay() then checks it: when it is
        not this run's, `snapshot_rejected` says so and preview(snapshot_ok=False) gives
        the picture without it); else the run_start line, the newest events, and for a
        finished run the whole train loss curve from result.json. None when the history
        is short enough to replay at once. The session's own model is not touched."""
        path = self.run_dir / "events.jsonl"
        if snapshot_ok and (pm := snapshot.peek(self.run_dir)) is not None:
            self._peeked = True
            return pm
        try:
            size = path.stat().st_size
        except OSError:
            return None
        if size < PREVIEW_BYTES:
            return None  # short: replayed at once
        m = RunModel(run_dir=self.run_dir, run_id=self.run_dir.name)
        head = next(iter(JsonlReader(path, max_line_bytes=1 << 20)), None)  # run_start
        evs = [d for d in [head, *tail_objects(path, PREVIEW_TAIL_BYTES)] if d is not None]
        evs = [d for d in evs if isinstance(d.get("type"), str)]
        m.feed_all(evs)
        curves = _result_curves(self.run_dir / "result.json")
        loss = curves.get("train_loss")
        if isinstance(loss, list) and loss:
            m.loss = Curve()
            m.loss.extend(range(1, len(loss) + 1), loss)
        vals, at = curves.get("val_loss"), curves.get("eval_step")
        if isinstance(vals, list) and isinstance(at, list) and len(vals) == len(at):
            m.val_loss = Curve(tail=500)
            m.val_loss.extend(at, vals)
            m.best_val = m.val_loss.minimum
        m.set_checkpoints(self.ckpts.scan())
        return m

    # --- one tick --------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        now = now or time.time()
        m = self.model
        m.feed_all(self.follower.poll(POLL_BYTES))
        m.malformed = self.follower.malformed
        sampled = now >= self._next_sample
        if sampled:
            self._next_sample = now + self.sample_every_s
            self._find_trainer()
            self._sample(now)
            self._sample_ranks()
            if self.trainer is not None and m.proc_alive:  # which keys can ask it things
                m.handles = self.trainer.handles_requests(self.rank_pids)
        if now >= self._next_ckpt:
            self._next_ckpt = now + self.ckpt_every_s
            m.set_checkpoints(self.ckpts.scan())
        was_alive = m.proc_alive
        self._check_process(now)
        if not sampled and m.proc_alive == was_alive and m.proc_alive is not False:
            self._collect_dump(now)
            self._notify(now)
            return  # the checks run at the sampling pace; every tick once the process is gone
        for f in self.health.update(m, now):
            m.add_alert(f.level, f.code, f.message, "cockpit", f.detail, t=now)
            if f.code == "stall" and not self._ask_dump(now):
                self._spy(now)  # no SIGUSR2 handler (a wrapped command): py-spy reads it
        self._collect_dump(now)
        self._notify(now)

    def _notify(self, now: float) -> None:
        """New alerts and a gate pass go out (the run's end waits for settle(), which has
        its energy); a target that fails is said once, as an alert."""
        n = self.notices
        if n is None:
            return
        for p in n.notifier.problems():
            self.model.add_alert("warn", "notify", p, "cockpit", t=now)
        n.observe(self.model, now, end=False)

    def _sample_ranks(self) -> None:
        """Under torchrun: every rank's figures, stragglers and failed ranks (with their log)."""
        if getattr(self, "_ranks", None) is None:
            if not (self.run_dir / "ranks").is_dir():
                return
            self._ranks = RankReader(self.run_dir)
        self.model.ranks = self._ranks.sample(log_tail(self.run_dir, 400))
        self.rank_pids = running_pids(self._ranks.states)  # where save-now and dumps go

    def review(self, now: float | None = None) -> None:
        """For a run that was over before this session looked: the health checks once
        (a crash with the log's end, a NaN, a spike in the history), without sampling
        this machine, whose figures now would not be the run's. Its process was gone
        already, so no launcher is about to record an exit code: nothing to wait for."""
        now, m = now or time.time(), self.model
        if m.proc_alive is False and m.exit_code is None:
            m.t_gone = None
        self._sample_ranks()  # the ranks' files say how each rank ended
        for f in self.health.update(m, now):
            m.add_alert(f.level, f.code, f.message, "cockpit", f.detail, t=now)

    def done(self, now: float | None = None) -> bool:
        """The run is over and its process gone (or it lingered past the grace period)."""
        m, now = self.model, now or time.time()
        if m.status not in ENDED:
            return False
        if self._ended_at is None:
            self._ended_at = now
        if m.proc_alive is True:
            return now - self._ended_at > END_GRACE_S
        t = self.trainer
        if m.exit_code is None and t is not None and t.proc is None:
            # another cockpit launched it and writes its exit code once it reaped it
            return now - self._ended_at > EXIT_CODE_WAIT_S
        return True

    def settle(self, timeout: float = 5.0) -> None:
        """At the end: the last events, and checkpoint verdicts (hashing takes a moment)."""
        deadline = time.time() + timeout
        self.model.set_checkpoints(self.ckpts.scan())
        while self.ckpts.pending() and time.time() < deadline:
            time.sleep(0.05)
            self.model.set_checkpoints(self.ckpts.scan())
        self._read_all()
        self._energy()
        self._settled = True
        self._index_later()
        if self.notices is not None:
            self.notices.observe(self.model, time.time())  # the run's end, with its energy

    def _index_later(self) -> None:
        """A long history this session read live, as it was written, was never
        replayed, so no events.idx covers it: `cockpit index` writes one, in a process
        of its own at low priority (a replay of the run's every line, which must not
        take the display's time), so that the next open of this run is quick."""
        if self._indexer is not None or self._replayed_to is None:
            return  # one a session; a session that never replayed is not a display's
        if self.follower.offset - self._replayed_to < snapshot.MIN_BYTES:
            return
        cmd = [sys.executable, "-m", "cockpit.cli", "index", "--background", str(self.run_dir)]
        try:
            self._indexer = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl+C at the cockpit is not its
            )
        except OSError:
            return
        threading.Thread(target=self._indexer.wait, name="indexer", daemon=True).start()

    def _energy(self) -> None:
        """The run's energy: what the cockpit measured for a wrapped command (written to
        energy.json), else what the trainer wrote in result.json."""
        m = self.model
        if self.meter is not None and m.status in ENDED:
            tokens = m.tokens or None
            e = self.meter.stop(tokens, self.price_kwh).to_dict()
            self.meter = None
            write_energy(self.run_dir, e)
            m.energy = with_price(e, self.price_kwh)
            return
        got = read_energy(self.run_dir, self.price_kwh)
        if got is None and m.status in ENDED and m.run_end is not None:
            # the trainer writes run_end, then result.json: give it a moment
            deadline = time.time() + 2.0
            while got is None and time.time() < deadline and (self.run_dir / "run.yaml").exists():
                time.sleep(0.1)
                got = read_energy(self.run_dir, self.price_kwh)
        if got is not None:
            m.energy = got

    @property
    def gpu_sampler(self) -> GpuSampler:
        """Made when first sampled: importing NVML's bindings is not on the way to a
        display's first paint."""
        if self._gpu_sampler is None:
            from cockpit.collect.gpu import GpuSampler

            self._gpu_sampler = GpuSampler(min_interval_s=max(1.0, self.sample_every_s))
        return self._gpu_sampler

    def close(self) -> None:
        if self.notices is not None:
            if self.model.status in ENDED and not self._settled:
                self.notices.observe(self.model, time.time())
            self.notices.notifier.close()
        if self.meter is not None:
            self.meter.stop()  # a detach: the wrapped command goes on, unmeasured
        self.follower.close()
        self.ckpts.close()
        if self._gpu_sampler is not None:
            self._gpu_sampler.close()
        if self._record is not None:
            self._record.close()
        if self._lock_fd is not None and self._lock_fd >= 0:
            os.close(self._lock_fd)

    # --- pieces ----------------------------------------------------------------

    def _read_all(self) -> int:
        """Every event written so far, in batches: a million-line history never sits
        in memory as dicts."""
        n = 0
        while True:
            evs = self.follower.poll(POLL_BYTES)
            self.model.feed_all(evs)
            n += len(evs)
            if not self.follower.more:
                return n

    def _find_trainer(self) -> None:
        """Who writes this run: the process in supervisor.json, or the one that
        announced itself in the newest run_start (a run started as `python -m
        core.train`, or resumed that way). A pid is trusted only if its process
        started before it announced itself: a recycled pid is never sampled or
        signalled."""
        m, t = self.model, self.trainer
        if t is not None and (t.proc is not None or m.info.get("pid") in (None, t.pid)):
            return  # ours (we launched it), or already the newest run's
        rs_pid = m.info.get("pid")
        found = Trainer.find(self.run_dir)
        if found is not None and rs_pid in (None, found.pid):
            self.trainer = found
        elif rs_pid is not None:
            ct = announced(rs_pid, m.info.get("t"))
            # -1: a create time no process has, so the trainer reads as gone
            self.trainer = Trainer(self.run_dir, rs_pid, None, ct if ct is not None else -1.0)
        if self.trainer is not t:
            self.proc_sampler = None

    def _check_process(self, now: float) -> None:
        t, m = self.trainer, self.model
        if t is None:
            return
        alive = t.alive()
        if m.proc_alive is not False and not alive:
            # it just ended (or was already gone): read what it wrote last
            self._read_all()
            m.t_gone = now
            if m.run_end is None:
                m.log_tail = log_tail(self.run_dir, self.health.cfg.crash_log_lines)
                m.status = "failed"
        if not alive:
            m.exit_code = t.exit_code  # may come later, from the cockpit that launched it
        m.proc_alive = alive

    def _sample(self, now: float) -> None:
        t, m = self.trainer, self.model
        d: dict = {"v": 1, "t": now, "type": "system"}
        if t is not None and m.proc_alive is not False:
            if self.proc_sampler is None:
                # USS (a page-table walk under the trainer's mmap lock) and the scan of
                # every process for descendants are the costly readings: space them out
                self.proc_sampler = ProcessSampler(t.pid, slow_every_s=10.0, tree_every_s=5.0)
            proc = self.proc_sampler.sample().to_dict()
            d["proc"] = proc
            pids = [p["pid"] for p in proc.get("procs") or []]
        else:
            pids = []
        d["sys"] = self.sys_sampler.sample().to_dict()
        d["gpu"] = self.gpu_sampler.sample(pids).to_dict()
        m.feed_system(d)
        if m.proc_alive and self._can_record():
            if "proc" in d and now - self._last_threads < THREADS_EVERY_S:
                d = dict(d, proc=without_threads(d["proc"]))
            else:
                self._last_threads = now
            assert self._record is not None  # _can_record() opened it
            try:
                self._record.write(orjson.dumps(d) + b"\n")
                self._record.flush()
            except OSError as e:  # a full disk: stop recording, say so, keep watching
                self._stop_recording(e, now)

    def _can_record(self) -> bool:
        if self._record is not None:
            return True
        if self._lock_fd == -1:
            return False
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self.run_dir / ".system.lock", os.O_RDWR | os.O_CREAT)
            except OSError:
                return False
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # another cockpit records this run
        try:
            self._record = open(self.run_dir / "system.jsonl", "ab")
        except OSError as e:
            self._stop_recording(e, time.time())
            return False
        return True

    def _stop_recording(self, e: OSError, now: float) -> None:
        try:
            if self._record is not None:
                self._record.close()
        except OSError:
            pass
        self._record = None
        if self._lock_fd is not None and self._lock_fd >= 0:
            os.close(self._lock_fd)
        self._lock_fd = -1  # never again: no retry loop on a full disk
        self.model.add_alert(
            "warn", "recording", f"stopped recording system.jsonl: {e}", "cockpit", t=now
        )

    def _stacks(self) -> dict:
        try:
            return {p.name: p.stat().st_size for p in (self.run_dir / "stacks").iterdir()}
        except OSError:
            return {}

    def dump_stacks(self, now: float | None = None) -> bool:
        """Ask the trainer for a stack dump (SIGUSR2); it shows up as a `stack_dump`
        alert with the stacks as its detail once written. False: no trainer to ask."""
        return self._ask_dump(now or time.time(), "on request")

    def _ask_dump(self, now: float, why: str = "after the stall") -> bool:
        before = self._stacks()  # (signal() sends it only to a process that handles it)
        if self.trainer is not None and self.trainer.signal(signal.SIGUSR2, self.rank_pids):
            self._dump_wait = (now, before, why)
            return True
        return False

    def _spy_targets(self) -> list[tuple[int, int | None]]:
        """The processes py-spy reads: under torchrun each rank's, the slowest first (the
        lowest step, then the longest silent); else the trainer's main process."""
        snap = self.model.ranks
        if self.rank_pids and snap is not None:
            alive = set(self.rank_pids)
            ranks = sorted(
                (r for r in snap.ranks if r.pid is not None and r.pid in alive),
                key=lambda r: (r.step or 0, r.t_last or 0.0),
            )
            if ranks:
                return [(r.pid, r.rank) for r in ranks if r.pid is not None]
        t = self.trainer
        return [(t.pid, None)] if t is not None and t.alive() else []

    def _spy(self, now: float) -> None:
        """py-spy dumps on a thread of their own (each takes a moment; a tick must not)."""
        targets = self._spy_targets()
        if not targets or self._pyspy is not None:
            return

        # the rank files say which rank is slowest; a wrapped torchrun's ranks come by rank
        self._pyspy_order = "the slowest rank first" if targets[0][1] is not None else "by rank"

        def work() -> None:
            if len(targets) == 1 and targets[0][1] is None:  # a wrapped command: find its ranks
                self._pyspy_out = pyspy.dump_trainer(targets[0][0])
            else:
                self._pyspy_out = pyspy.dump_all(targets)

        self._pyspy = threading.Thread(target=work, name="cockpit-pyspy", daemon=True)
        self._pyspy.start()

    def _collect_spy(self, now: float) -> None:
        if self._pyspy is None or self._pyspy.is_alive():
            return
        dumps, self._pyspy, self._pyspy_out = self._pyspy_out or [], None, None
        if not dumps:
            return
        ok = [d for d in dumps if d.text]
        who = ", ".join(f"rank {d.rank}" if d.rank is not None else f"pid {d.pid}" for d in dumps)
        if ok:
            msg = (
                f"py-spy dump after the stall ({who}; {self._pyspy_order})"
                if len(dumps) > 1
                else f"py-spy dump after the stall ({who})"
            )
            self.model.add_alert(
                "info",
                "stack_dump",
                msg,
                "cockpit",
                clean(pyspy.as_text(dumps), newlines=True),
                t=now,
            )
        else:
            err = dumps[0].error or "py-spy gave nothing"
            self.model.add_alert(
                "warn",
                "stack_dump",
                f"no stack dump after the stall: {clean(err)}",
                "cockpit",
                clean(pyspy.as_text(dumps), newlines=True),
                t=now,
            )

    def _collect_dump(self, now: float) -> None:
        """Show the stack dump a stall asked for, once the trainer wrote it (a stopped
        process writes it only when it runs again)."""
        self._collect_spy(now)
        if self._dump_wait is None:
            return
        _, before, why = self._dump_wait
        after = self._stacks()
        new = sorted(n for n in after if n.startswith("stacks-") and n not in before)
        grown = [n for n in after if n == "faulthandler.txt" and after[n] > before.get(n, 0)]
        if not new and not grown:
            return
        self._dump_wait = None
        path = self.run_dir / "stacks" / (new[-1] if new else grown[0])
        try:
            with open(path, "rb") as f:
                if not new:
                    f.seek(before.get(path.name, 0))
                text = f.read(64 << 10).decode("utf-8", "replace")
        except OSError:
            text = ""
        self.model.add_alert(
            "info", "stack_dump", f"stack dump {why}: {path}", "cockpit", text, t=now
        )


def _result_curves(path: Path) -> dict:
    try:
        d = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    c = d.get("curves") if isinstance(d, dict) else None
    return c if isinstance(c, dict) else {}
