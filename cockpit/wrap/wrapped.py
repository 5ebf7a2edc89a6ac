"""Wrapped runs: any training command under the supervisor, its stdout turned
into the run directory's events.jsonl, so everything that reads a run (watch,
replay, runs, export) treats it like one of ours.

    trainer, adapting = launch_wrapped(["python", "train.py"], run_dir, "auto")
    adapting.start()                               # follows stdout.log on a thread
    session = Session(run_dir, trainer, health)    # reads the events.jsonl it writes
    ...                                            # until session.done()
    adapting.stop()

    # cockpit watch RUN_DIR, on a wrapped run (None when the run is not wrapped):
    adapting = attach_wrapped(run_dir, trainer)    # trainer = Trainer.find(run_dir)

The command's stdout+stderr go to stdout.log as our own trainer's do (no
pipe: quitting the cockpit never touches the run); by default through a
pseudo-terminal whose copier outlives the cockpit (cockpit.wrap.ptyrelay), so
progress bars draw as they would for a person. An Adapting follows that
file, parses it with an adapter (cockpit.wrap.adapters) and appends the events:
first a run_start made of what is known (pid, command, and what the preamble
printed: parameters, tokens per step, total steps), at the end a run_end whose
status comes from the exit code, written from the Trainer's on_exit hook
before supervisor.json records the exit code (no reader sees the process gone
with its run_end still to come). Events have the fields of core.events'
dataclasses, each coerced to its type (a printed `"epoch": "one"` is dropped to
None, counted in adapter.json's dropped_fields, and said once in a bad_fields
alert: a display never meets a figure of the wrong type); they are encoded with orjson and written in one write of complete
lines per read (JsonlSink's stdlib json costs 19 us an event on a slow core,
more than the parse).

Exactly once, across cockpits (cockpit.wrap.state): adapter.json keeps the read offset in
stdout.log, the parser's state and the size events.jsonl had then; only the
cockpit holding the flock on .adapter.lock writes. A cockpit attaching later
takes the lock once the first is gone and continues from the saved offset.
Events written after the last save (the first cockpit was killed between the
two) are recognised and not written again: the same bytes parsed from the
same state give the same events. An event's time is interpolated between the
time the bytes before it were read and stdout.log's mtime, so a backlog read
late keeps its pace.

Known limit: when the cockpit that launched the command is gone (kill -9), no
one can learn the command's exit code; a cockpit attached then writes no
run_end and the run reads as a crash with an unknown exit code.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections import deque
from pathlib import Path

import orjson

from cockpit.collect.foreign import ForeignCheckpoints
from cockpit.supervisor import Trainer
from cockpit.wrap import state as wrapstate
from cockpit.wrap.adapters import Adapter
from cockpit.wrap.adapters.runinfo import command_name, end_of, event_dict, last_words, world_size
from cockpit.wrap.ptyrelay import wait_drained
from cockpit.wrap.state import STATE, size
from core.jsonl import tail_objects

LOCK = ".adapter.lock"
NATIVE = "native.json"  # written by cockpit.integrations' RunWriter
READ_BYTES = 4 << 20  # of stdout.log per read
MAX_LINE = 1 << 20  # a longer "line" (no \n or \r in it) is parsed in pieces
SAVE_EVERY_S = 1.0
DRAIN_S = 3.0  # the most a finished command's pty copier is waited on


# -----------------------------------------------------------------------------
# the follower


class Adapting:
    """stdout.log -> events.jsonl for one run directory (see the module docstring)."""

    def __init__(
        self,
        run_dir: str | Path,
        fmt: str = "auto",
        *,
        trainer: Trainer | None = None,
        command: list[str] | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.trainer = trainer
        self.fmt = fmt
        self.adapter = Adapter(fmt)
        self.command = list(command) if command else None
        self.pid = trainer.pid if trainer is not None else None
        self.off = 0  # bytes of stdout.log parsed
        self.t_mark = self.t_begin = time.time()  # bytes up to `off` were written by t_mark
        self.started = self.ended = False  # this part's run_start / run_end written
        self.last_step = 0
        self.n_events = 0  # written by this object
        self.dropped = 0  # event fields of a wrong type dropped (saved: adapter.json)
        self.owner = False  # holds the lock: the one writer
        self.more = False  # the last read left bytes to read
        self.error: str | None = None  # an I/O error that stopped the adapting
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._log_fd: int | None = None
        self._events_fd: int | None = None
        self._out: list[bytes] = []  # lines of the read in progress, written at its end
        self._skip: deque = deque()  # events already in events.jsonl beyond the saved state
        self._next_try = 0.0
        self._saved = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._native: frozenset[str] = frozenset()  # event types the trainer writes itself
        self._native_look = 0.0
        self.ckpts: ForeignCheckpoints | None = None  # the trainer's own checkpoints, watched

    # --- ownership and state ----------------------------------------------------

    def _own(self, now_or_never: bool = False) -> bool:
        if self.owner:
            return True
        now = time.monotonic()
        if self.error is not None or (now < self._next_try and not now_or_never):
            return False
        self._next_try = now + 1.0  # a live owner elsewhere: ask again in a second
        try:
            if self._lock_fd is None:
                self._lock_fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        try:
            self._load()
            self._events_fd = os.open(
                self.run_dir / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
        except OSError as e:
            self.error = f"cannot write events.jsonl: {e}"
            return False
        self.owner = True
        return True

    def state(self) -> dict:
        return {
            "v": 1,
            "format": self.fmt,
            "command": self.command,
            "pid": self.pid,
            "offset": self.off,
            "t_mark": self.t_mark,
            "t_begin": self.t_begin,
            "started": self.started,
            "ended": self.ended,
            "last_step": self.last_step,
            "dropped_fields": self.dropped,
            "events_bytes": size(self.run_dir / "events.jsonl"),
            "adapter": self.adapter.state(),
        }

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.owner or (not force and now - self._saved < SAVE_EVERY_S):
            return
        self._saved = now
        wrapstate.save(self.run_dir, self.state())

    def _load(self) -> None:
        d = wrapstate.load(self.run_dir)
        if d is None:
            return
        self.fmt = d.get("format") or self.fmt
        self.command = d.get("command") or self.command
        self.pid = d.get("pid") or self.pid
        self.off = int(d.get("offset") or 0)
        self.t_mark = float(d.get("t_mark") or self.t_mark)
        self.t_begin = float(d.get("t_begin") or self.t_begin)
        self.started, self.ended = bool(d.get("started")), bool(d.get("ended"))
        self.last_step = int(d.get("last_step") or 0)
        self.dropped = int(d.get("dropped_fields") or 0)
        self.adapter.restore(d.get("adapter") or {})
        # events written after the state was saved will be parsed again: skip them (not
        # the watched checkpoints: no parse makes those, their sidecar keeps them once)
        started, ended, skip = wrapstate.written_since(
            self.run_dir / "events.jsonl", int(d.get("events_bytes") or 0)
        )
        self._skip = deque(e for e in skip if "watched" not in (e.get("tags") or ()))
        self.started, self.ended = self.started or started, self.ended or ended

    # --- reading ----------------------------------------------------------------

    def pump(self, max_bytes: int = READ_BYTES) -> int:
        """Parse what stdout.log gained, up to max_bytes; the number of bytes read.
        Does nothing (0) while another cockpit is the writer."""
        with self._lock:
            if not self._own() or self.ended:
                return 0
            try:
                n = self._read(max_bytes)
            except OSError:
                return 0  # self.error says why
            self._save()
            return n

    def _read(self, max_bytes: int, final: bool = False) -> int:
        if self._log_fd is None:
            try:
                self._log_fd = os.open(self.run_dir / "stdout.log", os.O_RDONLY)
            except OSError:
                return 0
        st = os.fstat(self._log_fd)
        if st.st_size < self.off:
            self.off = 0  # truncated by someone: start again from the top
        left = st.st_size - self.off
        self.more = left > max_bytes
        if left <= 0:
            return 0
        data = os.pread(self._log_fd, min(left, max_bytes), self.off)
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if cut == 0 and not final and len(data) < MAX_LINE:
            return 0  # a line still being written
        if cut == 0 or (final and len(data) == left):
            cut = len(data)  # the end of a finished command's output, or a huge line
        # the bytes up to cut were written between t_mark and the file's mtime
        t0 = self.t_mark
        t_file = min(max(st.st_mtime, t0), time.time())
        t1 = t0 + (t_file - t0) * cut / left
        if not self._native:
            # a native writer says so (native.json) before it prints what these bytes hold:
            # one look per read, so its event types are never written twice (a look a
            # second could miss one written just before a fast trainer's first lines)
            self._native_look = 0.0
        lines = data[:cut].replace(b"\r", b"\n").split(b"\n")
        dt = (t1 - t0) / len(lines)
        feed = self.adapter.feed
        for i, raw in enumerate(lines):
            if raw:
                evs = feed(raw.decode("utf-8", "replace"))
                if evs:
                    for ev in evs:
                        self._emit(ev, t0 + dt * (i + 1))
        try:
            self._flush()
        except OSError as e:  # a full disk: stop here, say so; a later cockpit reconciles
            self.error = f"cannot write events.jsonl: {e}"
            self.owner = False
            raise
        self.off += cut
        self.t_mark = t1
        return cut

    def native_types(self) -> frozenset[str]:
        """The event types this part's trainer writes itself (a native integration,
        cockpit.integrations, says so in native.json): the adapter stands down for
        those, so nothing is counted twice; stdout.log is still kept and read."""
        now = time.monotonic()
        if not self._native and now >= self._native_look:
            self._native_look = now + 1.0
            try:
                path = self.run_dir / NATIVE
                if path.stat().st_mtime >= self.t_begin - 1:  # this part's, not an older one
                    self._native = frozenset(json.loads(path.read_text()).get("types") or ())
            except (OSError, ValueError, AttributeError):
                pass
        return self._native

    def _emit(self, ev: dict, t: float) -> None:
        typ = ev.get("type")
        native = self.native_types()
        if typ == "run_start":
            self.started = True
        elif not self.started:
            self.started = True
            if "run_start" not in native:
                self._write(self._run_start(), t)
        if typ == "run_end":
            self.ended = True
        if isinstance(ev.get("step"), int):
            self.last_step = ev["step"]
        if typ not in native:
            self._write(ev, t)

    def _write(self, d: dict, t: float) -> None:
        ev, dropped = event_dict(d, t)
        if ev is None:
            return
        if dropped:  # a field of the wrong type ("epoch": "one"): None, counted, said once
            self.dropped += len(dropped)
            if self.dropped == len(dropped):
                what = ", ".join(f"{n}={d.get(n)!r}"[:80] for n in dropped)
                msg = (
                    f"a {ev['type']} event had fields of the wrong type, dropped: {what} "
                    f"(adapter.json counts every field dropped)"
                )
                self._write(
                    {"type": "alert", "level": "warn", "code": "bad_fields", "message": msg}, t
                )
        # orjson writes NaN/Inf as null, as core.events.encode does; 5x its speed
        line = orjson.dumps(ev) + b"\n"
        if self._skip:
            mine = orjson.loads(line)
            del mine["t"], mine["v"]
            if mine == self._skip[0]:
                self._skip.popleft()
                return
            self._skip.clear()  # not the same stream after all: write from here on
        self._out.append(line)
        self.n_events += 1

    def watch(self, final: bool = False) -> None:
        """Checkpoint events for what the checkpoint watcher found (written by the owner,
        unless the trainer writes its own)."""
        w = self.ckpts
        if w is None or not self.owner or "checkpoint" in self.native_types():
            return
        # at the end, hashing the last checkpoints waits a little, never a minute: run_end
        # must not hang on a huge file (a later watcher's poll announces what is left)
        evs = w.final(self.last_step, timeout_s=5.0) if final else w.poll(self.last_step)
        if not evs:
            return
        with self._lock:
            for d in evs:
                ev, _ = event_dict(d, time.time())
                if ev is not None:
                    self._out.append(orjson.dumps(ev) + b"\n")
                    self.n_events += 1
            try:
                self._flush()
            except OSError as e:
                self.error = f"cannot write events.jsonl: {e}"

    def _flush(self) -> None:
        """The read's events in one write: complete lines only, nothing held back."""
        if self._out:
            assert self._events_fd is not None  # events are made only while we own the run
            data = b"".join(self._out)
            self._out.clear()
            while data:
                data = data[os.write(self._events_fd, data) :]

    def _run_start(self) -> dict:
        info = self.adapter.info
        return {
            "type": "run_start",
            "run_id": self.run_dir.name,
            "profile": command_name(self.command or []),
            "pid": self.pid,
            "world_size": info.get("world_size") or world_size(self.command or []),
            **{k: info.get(k) for k in ("device", "dtype", "n_params", "tokens_per_step")},
            **{k: info.get(k) for k in ("total_steps", "total_epochs")},
            "wrapped": {"format": self.adapter.fmt, "command": self.command},
        }

    # --- the end ----------------------------------------------------------------

    def on_exit(self, trainer: Trainer) -> None:
        """Trainer.on_exit: the process is gone."""
        self.finish(trainer.exit_code)

    def finish(self, exit_code: int | None) -> None:
        """Parse the rest of stdout.log and write run_end (once; only with an exit code)."""
        with self._lock:
            if not self._own(now_or_never=True) or self.ended:
                return
            # under a pty the last bytes may still be in the terminal: its copier holds
            # the log until it has written them (a moment; bounded, a stuck one is not waited on)
            wait_drained(self.run_dir / "stdout.log", DRAIN_S)
            try:
                while self._read(READ_BYTES, final=True):
                    pass
                now = time.time()
                for ev in self.adapter.flush():
                    self._emit(ev, now)
                self.watch(final=True)
                if "run_end" in self.native_types() and self._native_ended():
                    self.ended = True  # the trainer said how it ended, exactly
                if exit_code is not None and not self.ended:
                    if not self.started and "run_start" not in self.native_types():
                        self.started = True
                        self._write(self._run_start(), now)
                    status, reason = end_of(exit_code, last_words(self.run_dir))
                    end = {"type": "run_end", "status": status, "step": self.last_step}
                    self._write(dict(end, reason=reason, wall_s=now - self.t_begin), now)
                self._flush()
            except OSError as e:
                self.error = f"cannot write events.jsonl: {e}"
                return
            self.ended = True
            self._save(force=True)

    def _native_ended(self) -> bool:
        """The native writer's run_end for this part is in events.jsonl."""
        for d in reversed(tail_objects(self.run_dir / "events.jsonl", 256 << 10)):
            if d.get("type") == "run_end":
                t = d.get("t")
                return isinstance(t, int | float) and t >= self.t_begin - 1
        return False

    # --- a thread that follows --------------------------------------------------

    def start(self, every_s: float = 0.1) -> None:
        """Follow on a daemon thread: a read every `every_s` (1,000 lines a read at
        10k lines/s) and the end of the process noticed within it."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(every_s,), name="cockpit-adapting", daemon=True
        )
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            while self.pump() and self.more:
                pass  # a backlog: read it all before sleeping
            self.watch()
            t = self.trainer
            if t is not None and not t.alive():  # the hook writes run_end
                self.finish(t.exit_code)  # (or this, when nobody set the hook)
                return  # not the writer: the one that is writes the end
            self._stop.wait(every_s)

    def stop(self) -> None:
        """Stop following (the run goes on); at the end of a run, after its run_end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        t = self.trainer
        # alive() may run the on_exit hook, which takes our lock: never ask it holding that
        gone = t is not None and not t.alive()
        with self._lock:
            if self.owner and not self.ended:
                try:
                    self._read(READ_BYTES)
                except OSError:
                    pass
                if gone and t is not None:
                    self.finish(t.exit_code)
            self._save(force=True)
            self.owner = False
            if self.ckpts is not None:
                self.ckpts.close()
            for fd in (self._log_fd, self._events_fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)  # closing the lock's fd releases it
            self._log_fd = self._events_fd = self._lock_fd = None


# -----------------------------------------------------------------------------
# what the CLI calls


def launch_wrapped(
    cmd: list[str],
    run_dir: str | Path,
    fmt: str = "auto",
    cwd: Path | None = None,
    pty: tuple[int, int] | None = None,
    checkpoints: list[Path] | None = None,
    watch_checkpoints: bool = True,
) -> tuple[Trainer, Adapting]:
    """Launch `cmd` under the supervisor with its stdout adapted into events.jsonl
    (pty=(columns, rows): under a pseudo-terminal, cockpit.wrap.ptyrelay). Its
    checkpoints (under `checkpoints`, else the known layouts under cwd) become
    checkpoint events unless watch_checkpoints is False.
    The caller starts the Adapting (start(), or pump() from its own loop) and
    stops it at the end. Raises ValueError for an unknown format, RuntimeError
    when another cockpit adapts this run directory, OSError when the command
    cannot be started."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    a = Adapting(run_dir, fmt, command=cmd)
    with a._lock:
        if not a._own():
            raise RuntimeError(f"another cockpit is adapting {run_dir}: {a.error or 'locked'}")
        if not a.ended and a.off < size(run_dir / "stdout.log"):
            while a._read(READ_BYTES, final=True):  # a previous command's unread lines
                pass
        # a new part: its own run_start, run_end and parse, from the end of the log
        a.fmt, a.adapter, a.command = fmt, Adapter(fmt), list(cmd)
        a.off, a.started, a.ended, a.last_step = size(run_dir / "stdout.log"), False, False, 0
        a.t_mark = a.t_begin = time.time()
        try:
            trainer = Trainer.launch(list(cmd), run_dir, cwd=cwd, pty=pty)
        except OSError:  # no such command, not executable: nothing runs, nothing is locked
            a.stop()
            raise
        a.trainer, a.pid = trainer, trainer.pid
        if watch_checkpoints:
            a.ckpts = ForeignCheckpoints(run_dir, cwd or Path.cwd(), a.t_begin, checkpoints)
        trainer.on_exit = a.on_exit
        a._save(force=True)
    return trainer, a


def attach_wrapped(run_dir: str | Path, trainer: Trainer | None) -> Adapting | None:
    """For a cockpit attaching to a run (`watch`): the Adapting that continues a
    wrapped run's events, or None when the run is not wrapped. It writes only once
    the cockpit that launched the command is gone."""
    run_dir = Path(run_dir)
    if not (run_dir / STATE).exists():
        return None
    a = Adapting(run_dir, "auto", trainer=trainer)
    if trainer is not None:
        trainer.on_exit = a.on_exit
    return a
