"""Follow a run's `events.jsonl` the way `tail -F` does, and hand back parsed events.

    f = EventsFollower("logs/<run-id>/events.jsonl")
    while running:
        f.wait(0.25)
        for ev in f.poll():  # plain dicts, oldest first
            ...
    f.close()

A collector, not a display, and it never raises: a file that is not there yet,
a torn last line, a truncated, rotated or replaced file, a malformed or huge
line all become state (`generation`, `malformed`, `malformed_lines`), never an
exception in the UI. Events are plain dicts, not `core.events` dataclasses:
building those would cost more than the parse on a million-line replay.

Change notification is a watchdog observer on the parent directory, or stat
polling where one cannot start. Either way poll() reads to EOF every time, so a
lost or coalesced notification delays data by at most one wait(), never drops it.

Known limit, shared with tail -F: a file truncated and written past the old
offset before the next poll is not seen as truncated.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from core.jsonl import Malformed, parse_line, preview

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

# -----------------------------------------------------------------------------
# malformed lines: skipped, counted, and the last 100 kept for the log panel


def _sig(st: os.stat_result | None) -> tuple | None:
    return None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns)


def _slow_parse(raw: bytes) -> tuple[dict | None, str | None]:
    """A line orjson refused, through the one JSONL parser's fallback: (event, None),
    (None, reason), or (None, None) for a blank line."""
    d, reason = parse_line(raw)
    if reason is not None or d is None:
        return None, reason
    if d.__class__ is not dict or d.get("type").__class__ is not str:
        return None, "not an event object"
    return d, None


# -----------------------------------------------------------------------------
# change notification: a watchdog handler that only raises a flag


class _Nudge(FileSystemEventHandler):
    # not "opened"/"closed": our own open would wake us
    KINDS = frozenset(("created", "modified", "moved", "deleted"))

    def __init__(self, name: str, flag: threading.Event):
        self.name, self.flag = name, flag

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in self.KINDS and self.name in (
            os.path.basename(os.fsdecode(event.src_path)),
            os.path.basename(os.fsdecode(event.dest_path or "")),
        ):
            self.flag.set()


# -----------------------------------------------------------------------------
# the follower


class EventsFollower:
    def __init__(
        self,
        path: str | os.PathLike,
        *,
        max_line_bytes: int = 4 << 20,
        chunk_bytes: int = 1 << 20,
        notify: bool = True,
    ):
        self.path = os.path.abspath(os.fspath(path))
        self.max_line_bytes = max_line_bytes
        # A chunk no longer than the longest line kept means only a line spanning
        # chunks can be too long, so the per-line loop needs no length test.
        self.chunk_bytes = max(1, min(chunk_bytes, max_line_bytes))
        self.malformed = 0
        self.malformed_lines: deque[Malformed] = deque(maxlen=100)
        self.line_no = 0
        self.generation = 0
        self.more = False  # a poll(max_bytes) left bytes to read
        self.notify_mode = "polling"
        self.poll_every_s = 0.1  # the stat() pace when polling
        self._fd: int | None = None
        self._id: tuple[int, int] | None = None  # (st_dev, st_ino) of the open fd
        self._off = 0  # bytes of the open fd consumed
        self._parts: list[bytes] = []  # the torn last line so far, held until its newline
        self._held = 0  # len of the parts
        self._skipping = False  # inside a too-long line: drop bytes up to its newline
        self._sig: tuple | None = None  # the path's (ino, size, mtime) at the last poll
        self._flag = threading.Event()
        self._observer: BaseObserver | None = None
        self.notify = notify  # made to use notifications (use_polling may pause them)
        self._want_observer = notify
        self._closed = False
        if notify:
            self._start_observer()

    def _start_observer(self) -> None:
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            return  # poll until the run directory exists, then try again
        self._want_observer = False  # one try: inotify limits do not lift by retrying
        obs = Observer()
        try:
            obs.schedule(_Nudge(os.path.basename(self.path), self._flag), folder, recursive=False)
            obs.start()
        except Exception:  # OSError from inotify limits, network filesystems, a vanished dir
            try:
                obs.stop()
            except Exception:
                pass
            return
        self._observer, self.notify_mode = obs, "watchdog"

    @property
    def offset(self) -> int:
        """Bytes of the current file read so far."""
        return self._off

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except OSError:
            return None  # not there yet, or rotated away and not yet recreated

    # -------------------------------------------------------------------------
    # reading

    def poll(self, max_bytes: int | None = None) -> list[dict]:
        """Every complete, well-formed event written since the last call. Never
        raises: on an OSError it returns what it read before it, and retries.
        `max_bytes` bounds one call (a replay in batches keeps memory bounded);
        then `more` says whether a next call has data waiting."""
        out: list[dict] = []
        if self._closed:
            return out
        try:
            # stat before reading: a write after this changes the signature wait() compares
            st = self._stat()
            self._sig = _sig(st)
            if self._fd is None:
                if st is None:
                    return out
                self._open()
            self.more = self._drain(out, max_bytes)
            if self.more:
                return out  # the rest of this file first; a rotation waits for its turn
            if st is not None and (st.st_dev, st.st_ino) != self._id:
                # rotated or replaced: the old fd was drained to EOF just above, so the
                # lines written to it before the switch are in `out`; the new one starts at 0
                self._close_fd()
                self.generation += 1  # before open: if it fails, the next poll opens plainly
                self._open()
                self.more = self._drain(out, max_bytes)
        except OSError:
            pass  # mid-rotation, a network filesystem's hiccup: state is consistent, retry
        return out

    def checkpoint(self) -> tuple[dict, int] | None:
        """Where reading stands, for a snapshot of what was read: the offset of the
        first byte not yet taken whole (a held torn line is read again), the line and
        malformed counts, with the open file's descriptor. None before the file was
        opened, after a rotation or truncation, or inside a too-long line."""
        if self._fd is None or self._skipping or self.generation:
            return None
        lines = [[b.line, b.reason, b.preview] for b in self.malformed_lines]
        return {
            "offset": self._off - self._held,
            "line_no": self.line_no,
            "malformed": self.malformed,
            "malformed_lines": lines,
        }, self._fd

    def resume(self, state: dict, same: Callable[[int, int], bool]) -> bool:
        """Start reading where a checkpoint() left off, if the file still holds what it
        held then (`same(fd, offset)` checks the bytes before the offset). False, and
        nothing changed, when it does not, or when reading has begun already."""
        off, line_no, bad = state.get("offset"), state.get("line_no"), state.get("malformed")
        lines = state.get("malformed_lines")
        if self._fd is not None or self._closed or self.generation:
            return False
        if not all(x.__class__ is int and x >= 0 for x in (off, line_no, bad)):
            return False
        if lines.__class__ is not list or not all(
            x.__class__ is list and len(x) == 3 and [type(y) for y in x] == [int, str, str]
            for x in lines
        ):
            return False
        try:
            self._open()
            assert self._fd is not None
            if os.fstat(self._fd).st_size < off or not same(self._fd, off):
                self._close_fd()
                return False
        except OSError:
            self._close_fd()
            return False
        self._off, self.line_no, self.malformed = off, line_no, bad
        self.malformed_lines.extend(Malformed(*x) for x in lines)
        return True

    def _open(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        st = os.fstat(fd)
        self._fd, self._id = fd, (st.st_dev, st.st_ino)
        self._restart()

    def _restart(self) -> None:
        self._off, self.line_no = 0, 0
        self._parts, self._held, self._skipping = [], 0, False

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _bad(self, line: int, reason: str, raw: bytes) -> None:
        self.malformed += 1
        self.malformed_lines.append(Malformed(line, reason, preview(raw)))

    def _drain(self, out: list[dict], max_bytes: int | None = None) -> bool:
        """Read to EOF as of now (a fast writer cannot pin us here), or max_bytes;
        True when bytes are left over."""
        fd = self._fd
        assert fd is not None  # called with the file open
        size = end = os.fstat(fd).st_size
        if end < self._off:
            self._restart()  # truncated in place (same inode): start again from the top
            self.generation += 1
        if max_bytes is not None:
            end = min(end, self._off + max_bytes)
        # locals: this loop runs once per line of a million-line replay
        loads, DecodeError, append = orjson.loads, orjson.JSONDecodeError, out.append
        pread, chunk, max_line = os.pread, self.chunk_bytes, self.max_line_bytes
        too_long = f"line longer than {max_line} bytes"
        while self._off < end:
            data = pread(fd, min(chunk, end - self._off), self._off)
            if not data:
                return False  # shrank while we read: the next poll sees the truncation
            self._off += len(data)
            if self._skipping:
                i = data.find(b"\n")
                if i < 0:
                    continue
                self._skipping = False  # the too-long line was counted when it was found
                data = data[i + 1 :]
            lines = data.split(b"\n")
            tail = lines.pop()  # after the last newline: a torn line, or b""
            if lines and self._parts:
                # the held torn line ends here; join it only if it fits
                if self._held + len(lines[0]) > max_line:
                    self._bad(self.line_no + 1, too_long, self._parts[0])
                    lines[0] = b""  # a blank line is skipped without a count
                else:
                    self._parts.append(lines[0])
                    lines[0] = b"".join(self._parts)
                self._parts, self._held = [], 0
            base = self.line_no
            self.line_no = base + len(lines)
            reason: str | None
            for n, raw in enumerate(lines, base + 1):
                try:
                    d = loads(raw)
                    if d["type"].__class__ is str:
                        append(d)
                        continue
                    reason = "not an event object"
                except DecodeError:
                    d, reason = _slow_parse(raw)
                    if d is not None:
                        append(d)
                    if reason is None:
                        continue
                except (TypeError, KeyError):  # a list, a number, a string, or no "type"
                    reason = "not an event object"
                self._bad(n, reason, raw)
            if tail:
                if self._held + len(tail) > max_line:
                    # never hold a huge line whole: count it now, drop bytes to its newline
                    self.line_no += 1
                    self._bad(self.line_no, too_long, self._parts[0] if self._parts else tail)
                    self._parts, self._held, self._skipping = [], 0, True
                else:
                    self._parts.append(tail)
                    self._held += len(tail)
        return self._off < size

    # -------------------------------------------------------------------------
    # waiting

    def wait(self, timeout: float) -> bool:
        """Block until the file probably changed since the last poll, or timeout.
        True if a change was noticed. Returns by `timeout` in both modes."""
        deadline = time.monotonic() + max(0.0, timeout)
        if self.more:
            return True
        while not self._closed:
            if self._want_observer:
                self._start_observer()
            sig = _sig(self._stat())
            if sig != self._sig:  # changed since the last poll: no need to wait at all
                self._sig = sig
                return True
            left = deadline - time.monotonic()
            if self._observer is not None:
                hit = self._flag.wait(max(0.0, left))
                self._flag.clear()  # poll() reads to EOF next, so clearing loses nothing
                return hit
            if left <= 0:
                return False
            if self._flag.wait(min(self.poll_every_s, left)):  # polling: the file, or a wake()
                self._flag.clear()
                return True
        return False

    def wake(self) -> None:
        """Return a wait() in another thread now (a command to act on, a close)."""
        self._flag.set()

    def use_polling(self, every_s: float) -> None:
        """Watch by stat() every `every_s` from now on, not by notification. For a
        reader that ticks at a steady pace anyway: a trainer writing 50 lines a second
        wakes watchdog's three threads 50 times a second (2.3% of a core, more than
        the rest of the TUI's pump), where a stat() every 50 ms costs almost nothing
        and wakes the reader no later than its own pace allows."""
        self.poll_every_s = max(0.001, every_s)
        self._want_observer = False
        self._stop_observer()
        self.notify_mode = "polling"

    def use_notify(self) -> None:
        """Back to notifications (when the follower was made with them): for a quiet
        file, where one wake per change costs less than stat() on a clock."""
        if self.notify and not self._closed and self._observer is None:
            self._want_observer = True  # wait() starts it

    def _stop_observer(self) -> None:
        obs, self._observer = self._observer, None
        if obs is not None:
            try:
                obs.stop()
                obs.join(1.0)
            except Exception:
                pass

    def close(self) -> None:
        self._closed, self._want_observer = True, False
        self._flag.set()  # wake a wait() in another thread now, not at its timeout
        self._stop_observer()
        try:
            self._close_fd()
        except OSError:
            pass
