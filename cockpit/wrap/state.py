"""A wrapped run's adapter.json, and what events.jsonl gained since it was saved
(cockpit.wrap.wrapped: exactly once across cockpits).

adapter.json holds the read offset in stdout.log, the parser's state and the
size events.jsonl had then. It is replaced atomically and not fsynced: a state
older than events.jsonl is reconciled on load, since the same bytes parsed from
the same state give the same events, and the ones already written are skipped.
"""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

from core.jsonl import JsonlReader

STATE = "adapter.json"


def size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def save(run_dir: Path, state: dict) -> None:
    path = run_dir / STATE
    tmp = path.with_name(f".{STATE}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(state) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass


def load(run_dir: Path) -> dict | None:
    try:
        d = json.loads((run_dir / STATE).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def written_since(path: Path, saved_size: int) -> tuple[bool, bool, deque]:
    """What events.jsonl gained after its size was `saved_size`: (a run_start is in
    it, a run_end is, the other events without `t` and `v`, to skip when the parse
    makes them again). A torn last line is ended so readers skip it as malformed."""
    started = ended = False
    skip: deque = deque()
    if size(path) <= saved_size:
        return started, ended, skip
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        torn = f.read(1) != b"\n"
    if torn:
        with open(path, "ab") as f:
            f.write(b"\n")
    for d in JsonlReader(path, offset=saved_size):
        if d.get("type") == "run_start":
            started = True
        elif d.get("type") == "run_end":
            ended = True
        else:
            d.pop("t", None)
            d.pop("v", None)
            skip.append(d)
    return started, ended, skip
