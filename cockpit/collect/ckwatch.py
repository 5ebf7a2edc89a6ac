"""Checkpoint watcher: what is in `checkpoints/`, with each checkpoint's sidecar
figures and whether it verifies (size and sha256 against the sidecar; for a
sharded checkpoint's directory, every file in it).

Hashing a multi-GB checkpoint takes seconds, so verification runs on one
background thread, once per version (name, size, newest mtime), and only once
its sidecar is there (written after the checkpoint is complete); `scan()` itself
only lists the folder and reads sidecars.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from core import checkpoint as C


@dataclass(frozen=True)
class CkptState:
    name: str  # step-NNNNNNN.pt, or step-NNNNNNN for a sharded checkpoint
    step: int
    bytes: int  # a sharded checkpoint: all its files
    mtime: float
    tags: tuple[str, ...]
    val_loss: float | None
    verified: bool | None  # None: sidecar missing yet, or still hashing
    why: str | None
    latest: bool
    shards: int | None = None  # files in a sharded checkpoint; None for one file


class CheckpointWatcher:
    def __init__(self, ckpt_dir: Path):
        self.dir = Path(ckpt_dir)
        # a daemon thread, not an executor: quitting never waits for a multi-GB hash
        self._todo: queue.Queue = queue.Queue()
        self._verdicts: dict[tuple, tuple[bool, str | None] | None] = {}  # None: hashing
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._verify_loop, name="ckpt-verify", daemon=True).start()

    def _verify_loop(self) -> None:
        while not self._stop.is_set():
            try:
                key, path = self._todo.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                why = C.verify(path)
            except Exception as e:  # a file removed mid-hash, a read error
                why = f"{path.name}: {e}"
            with self._lock:
                self._verdicts[key] = (why is None, why)

    def scan(self) -> list[CkptState]:
        """The checkpoints now on disk, oldest first. Never raises."""
        try:
            files = C.list_checkpoints(self.dir)
            latest = C.latest(self.dir)
        except OSError:
            return []
        out = []
        for p in files:
            try:
                size, mtime = C.size_and_mtime(p)
            except OSError:
                continue  # removed by retention between listing and stat
            meta = C.read_sidecar(p)
            key = (p.name, size, mtime)
            verified, why = None, None
            if meta is not None:
                with self._lock:
                    if key not in self._verdicts:
                        self._verdicts[key] = None
                        self._todo.put((key, p))
                    got = self._verdicts[key]
                if got is not None:
                    verified, why = got
            meta = meta or {}
            step = meta.get("step")
            listed = meta.get("files")
            out.append(
                CkptState(
                    name=p.name,
                    step=step if isinstance(step, int) else _step_of(p),
                    bytes=size,
                    mtime=mtime,
                    tags=tuple(meta.get("tags") or ()),
                    val_loss=meta.get("val_loss"),
                    verified=verified,
                    why=why,
                    latest=latest is not None and latest.name == p.name,
                    shards=len(listed) if isinstance(listed, dict) else None,
                )
            )
        return out

    def pending(self) -> int:
        """Checkpoints still being hashed."""
        with self._lock:
            return sum(v is None for v in self._verdicts.values())

    def close(self) -> None:
        self._stop.set()


def _step_of(p: Path) -> int:
    m = C.CKPT_RE.match(p.name)
    return int(m.group(1)) if m else 0
