"""The one JSON Lines reader. Every JSONL file the project reads — events.jsonl,
system.jsonl, ranks/rank-N.jsonl, a data corpus — is read through here, so each
case is handled one way everywhere:

- a torn last line (no newline yet: its writer is mid-write) is not read; the
  reader's `offset` stays at its start, so the next read picks it up whole;
- a malformed line is counted with its 1-based line number and a short preview,
  and reading goes on;
- memory stays bounded: lines are read one at a time, and a line longer than
  `max_line_bytes` is skipped in pieces (counted as malformed), never held whole.

orjson parses first; lines it refuses go to the standard library's parser, which
also takes the NaN/Infinity literals that Python's `json.dumps` writes by default.

    reader = JsonlReader("logs/run/events.jsonl")
    for obj in reader:           # dicts, oldest first
        ...
    reader.malformed, reader.offset   # how many were bad; where the next read starts
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

MAX_LINE_BYTES = 4 << 20
KEEP_MALFORMED = 100  # the newest malformed lines kept with their numbers
PREVIEW_CHARS = 80


@dataclass(frozen=True)
class Malformed:
    line: int  # 1-based line number in the file
    reason: str  # "invalid JSON", "invalid UTF-8", "not an object", "line longer than N bytes"
    preview: str  # its first characters, undecodable bytes replaced


def preview(raw: bytes) -> str:
    return raw[: PREVIEW_CHARS * 4].decode("utf-8", "replace")[:PREVIEW_CHARS]


def parse_line(raw: bytes, utf8_errors: str = "strict") -> tuple[Any, str | None]:
    """One line's value: (value, None); (None, reason) when malformed; (None, None)
    for a blank line (a stray print() is not corruption). utf8_errors="replace"
    reads undecodable bytes as U+FFFD, as a trainer reading text data does."""
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8", utf8_errors)
    except UnicodeDecodeError:
        return None, "invalid UTF-8"
    if not text.strip():
        return None, None
    try:
        return json.loads(text), None
    except (ValueError, RecursionError):
        return None, "invalid JSON"


def type_filter(*types: str) -> re.Pattern[bytes]:
    """A pattern that finds `"type": "<one of types>"` near a line's start, whatever
    the spacing, so a reader can skip the many lines it does not need unparsed."""
    alts = b"|".join(re.escape(t.encode()) for t in types)
    return re.compile(rb'"type"\s{0,8}:\s{0,8}"(?:' + alts + rb')"')


class JsonlReader:
    """Reads the complete lines of one JSONL file, from an offset on."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        offset: int = 0,
        line_no: int = 0,
        max_line_bytes: int = MAX_LINE_BYTES,
        skip: re.Pattern[bytes] | None = None,
        skip_within: int = 96,
        finished: bool = False,
        utf8_errors: str = "strict",
    ):
        self.path = os.fspath(path)
        self.offset, self.line_no = offset, line_no
        self.max_line_bytes = max_line_bytes
        self.skip, self.skip_within = skip, skip_within
        # a finished file (a data corpus) has no writer: its last line counts without "\n"
        self.finished, self.utf8_errors = finished, utf8_errors
        self.malformed = 0
        self.malformed_lines: deque[Malformed] = deque(maxlen=KEEP_MALFORMED)
        self.skipped = 0  # lines left unparsed by `skip`

    def _bad(self, reason: str, raw: bytes) -> None:
        self.malformed += 1
        self.malformed_lines.append(Malformed(self.line_no, reason, preview(raw)))

    def __iter__(self) -> Iterator[dict]:
        """Each complete line's object, oldest first. A missing file reads as empty."""
        try:
            f = open(self.path, "rb")
        except (FileNotFoundError, NotADirectoryError):
            return
        with f:
            f.seek(self.offset)
            yield from self._lines(f)

    def _lines(self, f: IO[bytes]) -> Iterator[dict]:
        limit = self.max_line_bytes
        while True:
            raw = f.readline(limit + 1)
            if not raw:
                return
            if not raw.endswith(b"\n") and not (self.finished and len(raw) <= limit):
                if len(raw) <= limit:
                    return  # torn last line: read it once it is whole
                head = raw
                while raw and not raw.endswith(b"\n"):  # skip the rest, piece by piece
                    raw = f.readline(limit + 1)
                if not raw:
                    return  # still being written: come back for it later
                self.line_no += 1
                self.offset = f.tell()
                self._bad(f"line longer than {limit} bytes", head)
                continue
            self.line_no += 1
            self.offset += len(raw)
            if self.skip is not None and self.skip.search(raw, 0, self.skip_within):
                self.skipped += 1
                continue
            obj, why = parse_line(raw, self.utf8_errors)
            if why is not None:
                self._bad(why, raw)
            elif obj.__class__ is dict:
                yield obj
            elif obj is not None:
                self._bad("not an object", raw)


def read_jsonl(path: str | os.PathLike, **kw: Any) -> Iterator[dict]:
    """Every complete object of a file (see JsonlReader for the keywords)."""
    return iter(JsonlReader(path, **kw))


def tail_objects(path: str | os.PathLike, nbytes: int) -> list[dict]:
    """The complete objects in the last `nbytes` of a file, oldest first (the first,
    partial line of the window is dropped): for a glance at a long file's end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            start = max(0, size - nbytes)
            f.seek(start)
            data = f.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the window began inside a line
    if not data.endswith(b"\n"):
        lines = lines[:-1]  # torn last line
    out = []
    for raw in lines:
        obj, _ = parse_line(raw)
        if obj.__class__ is dict:
            out.append(obj)
    return out
