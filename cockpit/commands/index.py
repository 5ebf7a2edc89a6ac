"""`cockpit index RUN`: replay a run's history once and write its events.idx, the
snapshot that makes the next open of a long run quick (the first paint from it,
the whole history in a fraction of a second instead of a parse of every line).

A display writes one itself when it replays a long history, and has one written
(this command, run with --background) when it followed a long run live to its
end; run it by hand for a run trained without the cockpit watching."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from typing import TYPE_CHECKING

from cockpit.commands.follow import run_dir_or_say
from cockpit.model import snapshot
from cockpit.session import Session

if TYPE_CHECKING:
    from argparse import Namespace

LOCK = ".events.idx.lock"


def cmd_index(args: Namespace) -> int:
    if args.background:
        os.nice(10)  # the run's own display (and its next trainer) come first
    run_dir = run_dir_or_say(args.run)
    if run_dir is None:
        return 2
    say = (lambda _: None) if args.background else print
    try:
        lock = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        print(f"error: cannot write in {run_dir} ({e.strerror}): no index", file=sys.stderr)
        return 1
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"cockpit: {run_dir} is being indexed by another cockpit")
            return 0
        t = time.monotonic()
        s = Session(run_dir, None, notify=False, record=False)
        try:
            s.replay(index_min_bytes=0)
        finally:
            s.close()
        idx = run_dir / snapshot.NAME
        if not snapshot.usable(run_dir):
            print(f"error: could not write {idx}", file=sys.stderr)
            return 1
        say(
            f"cockpit: indexed {run_dir}: {s.replayed_events:,} events read in "
            f"{time.monotonic() - t:.1f} s; {idx.name} {idx.stat().st_size / 2**10:,.0f} KiB"
        )
        return 0
    finally:
        os.close(lock)
