"""Stdout adapters: other trainers' printed lines turned into the event schema
of core/events.py, so a run the cockpit did not write is watched, replayed and
listed like one of ours (cockpit.wrap.wrapped follows stdout.log with them).

    a = Adapter("auto")               # or nanogpt | nanochat | hf | lightning | jsonl | kv
    for line in text.replace("\\r", "\\n").split("\\n"):
        for ev in a.feed(line) or ():
            ...                       # {"type": "step", "step": 10, "loss": 3.2, ...}
    events += a.flush()

Before a parser sees a line, ANSI escape codes are stripped and a torchrun
`[rankN]:` / `[defaultN]:` prefix is removed; lines of ranks other than 0 are
dropped (rank 0 prints the figures; the others repeat them or print nothing).
A progress bar rewritten with \\r is one line per frame: split on \\r as on \\n.

`auto` holds the lines back until one of them identifies a format (each
module's SIGNATURE or detect(), tried in FORMATS order, most specific first),
then parses them all with it: the preamble's figures (parameter count, tokens
per step, total steps) reach run_start.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from types import ModuleType

from cockpit.wrap.adapters import common, hf, jsonl, kv, lightning, nanochat, nanogpt

MODULES = {m.NAME: m for m in (nanogpt, nanochat, hf, lightning, jsonl, kv)}
FORMATS = tuple(MODULES)  # detection order: the generic ones last
CHOICES = ("auto", *FORMATS)
MAX_PENDING = 500  # lines held back while the format is unknown (the newest kept)
MAX_PENDING_CHARS = 2000  # of each held line: they are saved with the adapter's state

ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
RANK = re.compile(r"\[[A-Za-z_]*(\d+)\]:\s?")


def _detector(mod: ModuleType) -> Callable[[str], bool]:
    if hasattr(mod, "detect"):
        return mod.detect
    rx = mod.SIGNATURE
    return lambda line: rx.match(line) is not None


DETECTORS = tuple((name, _detector(mod)) for name, mod in MODULES.items())


def clean(line: str) -> str | None:
    """The line without ANSI codes and torchrun's rank prefix; None for another rank's line."""
    if "\x1b" in line:
        line = ANSI.sub("", line)
    if line[:1] == "[":
        m = RANK.match(line)
        if m is not None:
            if m[1] != "0":
                return None
            line = line[m.end() :]
    return line


def detect(lines: Iterable[str]) -> str | None:
    """The format of the first line that identifies one, or None."""
    for raw in lines:
        line = clean(raw)
        if line:
            for name, hit in DETECTORS:
                if hit(line):
                    return name
    return None


class Adapter:
    """One stream's lines in, event dicts out (see the module docstring)."""

    def __init__(self, fmt: str = "auto"):
        if fmt not in CHOICES:
            raise ValueError(f"unknown format {fmt!r}; one of {', '.join(CHOICES)}")
        self.fmt: str | None = None if fmt == "auto" else fmt
        self.parser = MODULES[fmt].Parser() if self.fmt else None
        self.pending: list[str] = []

    @property
    def info(self) -> dict:
        return self.parser.info if self.parser is not None else {}

    def feed(self, line: str) -> list[dict] | None:
        """Events from one line (no \\n or \\r in it), or None."""
        if "\x1b" in line or line[:1] == "[":
            cleaned = clean(line)
            if cleaned is None:
                return None
            line = cleaned
        if self.parser is not None:
            return self.parser.feed(line) if line else None
        return self._detect(line) if line and not line.isspace() else None

    def _detect(self, line: str) -> list[dict] | None:
        self.pending.append(line[:MAX_PENDING_CHARS])
        if len(self.pending) > MAX_PENDING:
            del self.pending[0]
        name = next((name for name, hit in DETECTORS if hit(line)), None)
        if name is None:
            return None
        self.fmt, self.parser = name, MODULES[name].Parser()
        held, self.pending = self.pending, []
        out: list[dict] = []
        for x in held:
            out += self.parser.feed(x) or ()
        return out or None

    def flush(self) -> list[dict]:
        """What a parser held back (an HF dict waiting for its step), at the end."""
        return self.parser.flush() if self.parser is not None else []

    def state(self) -> dict:
        return {
            "fmt": self.fmt,
            "parser": common.state(self.parser) if self.parser is not None else None,
            "pending": self.pending,
        }

    def restore(self, d: dict) -> None:
        self.fmt = d.get("fmt")
        self.parser = MODULES[self.fmt].Parser() if self.fmt in MODULES else None
        if self.parser is not None and isinstance(d.get("parser"), dict):
            common.restore(self.parser, d["parser"])
        self.pending = list(d.get("pending") or [])


def parse_text(text: str, fmt: str = "auto") -> tuple[str | None, list[dict]]:
    """(the format, every event) of a whole log: for tests, benchmarks and replays."""
    a = Adapter(fmt)
    out: list[dict] = []
    for line in text.replace("\r", "\n").split("\n"):
        evs = a.feed(line)
        if evs:
            out += evs
    return a.fmt, out + a.flush()
