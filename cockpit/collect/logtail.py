"""The newest lines of a run's `stdout.log`, followed like `tail -F`: a collector
for the log panel. Reads only what was appended since the last poll (at most
`max_bytes` a poll, and only the last `start_bytes` of a long log at first),
never raises, and starts over when the file is truncated or replaced."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path


class LogTail:
    def __init__(
        self,
        path: Path,
        max_lines: int = 2000,
        start_bytes: int = 256 << 10,
        max_bytes: int = 1 << 20,
        max_line_chars: int = 400,
    ):
        self.path = Path(path)
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.seq = 0  # complete lines read so far (a display redraws when it changes)
        self.start_bytes, self.max_bytes, self.max_line_chars = (
            start_bytes,
            max_bytes,
            max_line_chars,
        )
        self._id: tuple[int, int] | None = None
        self._off = 0
        self._part = b""

    def poll(self) -> bool:
        """Read what was appended; True when there are new lines."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) != self._id or st.st_size < self._off:
            # first look, or a new file: start near its end
            self._id, self._part = (st.st_dev, st.st_ino), b""
            self._off = max(0, st.st_size - self.start_bytes)
            skip_first = self._off > 0  # we start mid-line
        else:
            skip_first = False
        if st.st_size == self._off:
            return False
        try:
            with open(self.path, "rb") as f:
                f.seek(self._off)
                data = f.read(min(self.max_bytes, st.st_size - self._off))
        except OSError:
            return False
        self._off += len(data)
        parts = (self._part + data).split(b"\n")
        self._part = parts.pop()[: self.max_line_chars * 4]
        if skip_first and parts:
            parts = parts[1:]
        for raw in parts:
            # a progress bar's carriage returns: keep what the terminal would show
            text = raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1].rstrip()
            self.lines.append(text[: self.max_line_chars])
        self.seq += len(parts)
        return bool(parts)
