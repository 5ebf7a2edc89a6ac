"""Checkpoint watcher: what is in `checkpoints/`, with each file's sidecar
figures and whether it verifies (size and sha256 against the sidecar).

Hashing a multi-GB checkpoint takes seconds, so verification runs on one
background thread, once per file version (name, size, mtime); `scan()` itself
only lists the folder and reads sidecars.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from core import checkpoint as C


@dataclass(frozen=True)
class CkptState:
    name: str
    step: int
    bytes: int
    mtime: float
    tags: tuple[str, ...]
    val_loss: float | None
    verified: bool | None  # None: sidecar missing yet, or still hashing
    why: str | None
    latest: bool


class CheckpointWatcher:
    def __init__(self, ckpt_dir: Path):
        self.dir = Path(ckpt_dir)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ckpt-verify")
        self._verdicts: dict[tuple, Future] = {}
        self._lock = threading.Lock()

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
                st = p.stat()
            except OSError:
                continue  # removed by retention between listing and stat
            meta = C.read_sidecar(p)
            key = (p.name, st.st_size, st.st_mtime)
            verified, why = None, None
            if meta is not None:
                with self._lock:
                    fut = self._verdicts.get(key)
                    if fut is None:
                        fut = self._verdicts[key] = self._pool.submit(C.verify, p)
                if fut.done():
                    why = fut.result() if fut.exception() is None else str(fut.exception())
                    verified = why is None
            meta = meta or {}
            out.append(
                CkptState(
                    name=p.name,
                    step=meta.get("step") if isinstance(meta.get("step"), int) else _step_of(p),
                    bytes=st.st_size,
                    mtime=st.st_mtime,
                    tags=tuple(meta.get("tags") or ()),
                    val_loss=meta.get("val_loss"),
                    verified=verified,
                    why=why,
                    latest=latest is not None and latest.name == p.name,
                )
            )
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _step_of(p: Path) -> int:
    m = C.CKPT_RE.match(p.name)
    return int(m.group(1)) if m else 0
