"""Checkpoints a wrapped trainer writes in its own layout, found on disk and turned
into `checkpoint` events (cockpit.wrap.wrapped writes them) with a cockpit-side
record of each file's sha256, so `cockpit verify RUN_DIR` can later say whether
it changed.

    w = ForeignCheckpoints(run_dir, cwd, since=t_start)      # or roots=[Path("ckpts")]
    for ev in w.poll(step_now): ...                          # every second or so
    for ev in w.final(step_now): ...                         # once the trainer is gone
    w.close()

Known layouts, looked for under the command's directory (two levels, nothing
hidden, a bounded number of entries) unless `roots` says where:
Hugging Face `OUTPUT_DIR/checkpoint-N/` (a folder: step N), Lightning's
`*.ckpt` (`lightning_logs/version_K/checkpoints/epoch=E-step=N.ckpt`, or a
`ModelCheckpoint(dirpath=...)`: step from `step=N`), nanoGPT's
`OUT_DIR/ckpt.pt` (rewritten at each eval: each new version is a checkpoint at
the step the run had reached). Only what was written since the run started.

A checkpoint is hashed once it has stopped changing (the same size and mtime
over STABLE_S), on one daemon thread (a multi-GB file takes seconds), and
recorded in RUN_DIR/SIDECAR before its event is made: the sidecar is also what
keeps a second look from announcing it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import threading
import time
from pathlib import Path

from core.checkpoint import atomic_write_text

SIDECAR = "checkpoints.wrapped.json"
STABLE_S = 2.0  # unchanged this long: the trainer has finished writing it
SCAN_EVERY_S = 1.0
MAX_ENTRIES = 5000  # of a directory walk: a scan never crawls a data set
HF_DIR = re.compile(r"^checkpoint-(\d+)$")
STEP_IN_NAME = re.compile(r"step[=_-]?(\d+)")
FILE_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors", ".bin")
SKIP_DIRS = {"node_modules", "__pycache__", "site-packages", "logs", "wandb"}


def _step_of(p: Path) -> int | None:
    m = HF_DIR.match(p.name) or STEP_IN_NAME.search(p.name)
    return int(m[1]) if m else None


def _version(p: Path) -> tuple[int, float] | None:
    """(bytes, newest mtime) of a file, or of a folder's files (one level and below)."""
    try:
        if p.is_file():
            st = p.stat()
            return st.st_size, st.st_mtime
        total, newest = 0, p.stat().st_mtime
        for f in sorted(p.rglob("*")):
            if f.is_file():
                st = f.stat()
                total, newest = total + st.st_size, max(newest, st.st_mtime)
        return total, newest
    except OSError:
        return None


def sha256_of(p: Path) -> str:
    """A file's sha256; a folder's: over each file's relative path and bytes, in order."""
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        if f is not p:
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def read_sidecar(run_dir: Path) -> dict[str, dict]:
    try:
        d = json.loads((Path(run_dir) / SIDECAR).read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def verify(run_dir: Path) -> list[tuple[str, str | None]]:
    """(path, None when it is as recorded, else why not) for each recorded checkpoint."""
    out: list[tuple[str, str | None]] = []
    for path, rec in read_sidecar(run_dir).items():
        p = Path(path)
        if not p.exists():
            out.append((path, "missing"))
            continue
        v = _version(p)
        if v is None or v[0] != rec.get("bytes"):
            out.append((path, f"size changed: {rec.get('bytes')} -> {v[0] if v else '?'} bytes"))
            continue
        try:
            same = sha256_of(p) == rec.get("sha256")
        except OSError as e:
            out.append((path, f"unreadable: {e}"))
            continue
        out.append((path, None if same else "changed since it was written (sha256 differs)"))
    return out


class ForeignCheckpoints:
    """See the module docstring. Never raises into its caller."""

    def __init__(
        self, run_dir: Path, cwd: Path, since: float, roots: list[Path] | None = None
    ) -> None:
        self.run_dir, self.cwd, self.since = Path(run_dir), Path(cwd), since
        self.roots = [Path(cwd) / r for r in roots] if roots else None
        self.recorded = read_sidecar(self.run_dir)
        self._seen: dict[str, tuple[tuple[int, float], float]] = {}  # path: version, since when
        self._queued: set[str] = set()
        self._done: queue.Queue = queue.Queue()  # (path, version, step, sha256 | None)
        self._todo: queue.Queue = queue.Queue()
        self._next_scan = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hash_loop, name="ckpt-hash", daemon=True)
        self._thread.start()

    # --- finding them -----------------------------------------------------------

    def candidates(self) -> list[Path]:
        """Checkpoints of the known layouts written since the run started."""
        found: list[Path] = []
        n = 0
        for root in self.roots or [self.cwd]:
            depth = 2 if self.roots else 4  # lightning_logs/version_0/checkpoints/x.ckpt
            stack = [(root, 0)]
            while stack and n < MAX_ENTRIES:
                d, level = stack.pop()
                try:
                    entries = list(os.scandir(d))
                except OSError:
                    continue
                for e in entries:
                    n += 1
                    name = e.name
                    if name.startswith(".") or name in SKIP_DIRS:
                        continue
                    try:
                        is_dir = e.is_dir(follow_symlinks=False)
                        mtime = e.stat(follow_symlinks=False).st_mtime
                    except OSError:
                        continue
                    p = Path(e.path)
                    if is_dir and HF_DIR.match(name):
                        if mtime >= self.since - 1:
                            found.append(p)
                    elif is_dir:
                        if level + 1 < depth:
                            stack.append((p, level + 1))
                    elif mtime >= self.since - 1 and (
                        name == "ckpt.pt"
                        or name.endswith(".ckpt")
                        or (self.roots is not None and name.endswith(FILE_SUFFIXES))
                    ):
                        found.append(p)
        return found

    # --- the caller's side ------------------------------------------------------

    def poll(self, step: int) -> list[dict]:
        """Events for the checkpoints hashed since the last call; a scan at most every
        SCAN_EVERY_S. Cheap: the hashing is on the thread."""
        now = time.monotonic()
        if now >= self._next_scan:
            self._next_scan = now + SCAN_EVERY_S
            try:
                self._scan(step, now, wait_s=STABLE_S)
            except OSError:
                pass
        return self._collect()

    def final(self, step: int, timeout_s: float = 60.0) -> list[dict]:
        """The trainer is gone: everything new is finished; hash it and say so."""
        try:
            self._scan(step, time.monotonic(), wait_s=0.0)
        except OSError:
            pass
        end = time.monotonic() + timeout_s
        out = self._collect()
        while self._queued and time.monotonic() < end and self._thread.is_alive():
            time.sleep(0.05)
            out += self._collect()
        return out

    def close(self) -> None:
        self._stop.set()

    def _scan(self, step: int, now: float, wait_s: float) -> None:
        for p in self.candidates():
            key = str(p.resolve())
            v = _version(p)
            if v is None or key in self._queued:
                continue
            rec = self.recorded.get(key)
            if rec is not None and (rec.get("bytes"), rec.get("mtime")) == v:
                continue  # recorded already, unchanged
            old = self._seen.get(key)
            if old is None or old[0] != v:
                self._seen[key] = (v, now)
                if wait_s > 0:
                    continue
            elif now - old[1] < wait_s:
                continue
            self._queued.add(key)
            self._todo.put((key, v, _step_of(p) if _step_of(p) is not None else step))

    def _collect(self) -> list[dict]:
        out: list[dict] = []
        while True:
            try:
                key, v, step, sha = self._done.get_nowait()
            except queue.Empty:
                return out
            self._queued.discard(key)
            if sha is None:
                continue  # changed while hashed, or unreadable: the next scan tries again
            self.recorded[key] = {
                "step": step,
                "bytes": v[0],
                "mtime": v[1],
                "sha256": sha,
                "t": time.time(),
            }
            try:
                atomic_write_text(
                    self.run_dir / SIDECAR, json.dumps(self.recorded, indent=1) + "\n"
                )
            except OSError:
                pass
            out.append(
                {
                    "type": "checkpoint",
                    "step": step,
                    "path": key,
                    "bytes": v[0],
                    "sha256": sha,
                    "seconds": None,
                    "tags": ["watched"],
                }
            )

    def _hash_loop(self) -> None:
        while not self._stop.is_set():
            try:
                key, v, step = self._todo.get(timeout=0.5)
            except queue.Empty:
                continue
            sha: str | None
            try:
                sha = sha256_of(Path(key))
                if _version(Path(key)) != v:
                    sha = None  # rewritten while we read it
            except OSError:
                sha = None
            self._done.put((key, v, step, sha))
