"""Checkpoints: atomic writes, sidecars, `latest`, retention and verification.

Order of a save (docs/architecture.md, "Checkpoints"): write
`.step-NNNNNNN.pt.tmp-PID` in the same folder, fsync, rename to
`step-NNNNNNN.pt`, then the sidecar `step-NNNNNNN.json` (same dance), then
`latest`. A process killed at any instant leaves the previous checkpoint valid
and `latest` naming a complete one.
Only files named like ours are ever deleted; anything else in the folder is left alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CKPT_RE = re.compile(r"^step-(\d{7})\.pt$")
TMP_RE = re.compile(r"^\.(step-\d{7}\.(pt|json)|latest)\.tmp-(\d+)$")
LATEST = "latest"
SIDECAR_KEYS = (
    "step",
    "epoch",
    "tokens",
    "val_loss",
    "tags",
    "config_hash",
    "tokenizer_hash",
    "sha256",
    "bytes",
)
KEEP_TAGS = ("gate", "final")


def ckpt_name(step: int) -> str:
    return f"step-{step:07d}.pt"


def sidecar_path(ckpt: Path) -> Path:
    return ckpt.with_suffix(".json")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# -----------------------------------------------------------------------------
# atomic writes


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # a failed write (a full disk: torch.save raises RuntimeError, not OSError)
        # leaves no temporary behind to fill the disk further; `path` is untouched
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


@dataclass(frozen=True)
class Saved:
    path: Path
    bytes: int
    sha256: str
    seconds: float


def save(ckpt_dir: Path, state: dict, meta: dict) -> Saved:
    """Write state + sidecar + latest. `meta` holds the sidecar's figures
    (step, epoch, tokens, val_loss, tags, config_hash, tokenizer_hash)."""
    t0 = time.time()
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / ckpt_name(meta["step"])
    import torch  # here, not at the top: the cockpit reads sidecars without loading torch

    _atomic_write(path, lambda f: torch.save(state, f))
    digest, size = sha256_file(path), path.stat().st_size
    sidecar = dict(meta, sha256=digest, bytes=size, file=path.name, created=time.time())
    atomic_write_text(sidecar_path(path), json.dumps(sidecar, indent=1) + "\n")
    atomic_write_text(ckpt_dir / LATEST, path.name + "\n")
    return Saved(path, size, digest, time.time() - t0)


def add_tags(ckpt: Path, tags: list[str]) -> None:
    """Add tags to a saved checkpoint's sidecar (rewritten atomically; the
    checkpoint file, its size and hash are unchanged)."""
    meta = read_sidecar(ckpt)
    if meta is None:
        raise ValueError(f"{sidecar_path(ckpt).name}: missing or not valid JSON")
    meta["tags"] = [*meta["tags"], *(t for t in tags if t not in meta["tags"])]
    atomic_write_text(sidecar_path(ckpt), json.dumps(meta, indent=1) + "\n")


def load(path: Path) -> dict:
    import torch  # lazy: verify reads sidecars without loading torch

    return torch.load(path, map_location="cpu", weights_only=True)


# -----------------------------------------------------------------------------
# verification


def read_sidecar(ckpt: Path) -> dict | None:
    try:
        d = json.loads(sidecar_path(ckpt).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def verify(ckpt: Path, deep: bool = False) -> str | None:
    """None when the checkpoint is complete and intact, else the reason.
    `deep` also loads it (weights_only) and checks its step."""
    ckpt = Path(ckpt)
    if not ckpt.exists():
        return f"{ckpt}: no such file"
    side = sidecar_path(ckpt)
    if not side.exists():
        return f"{ckpt.name}: sidecar {side.name} is missing (the save did not finish)"
    meta = read_sidecar(ckpt)
    if meta is None:
        return f"{side.name}: not valid JSON"
    missing = [k for k in SIDECAR_KEYS if k not in meta]
    if missing:
        return f"{side.name}: missing fields {', '.join(missing)}"
    size = ckpt.stat().st_size
    if size != meta["bytes"]:
        return f"{ckpt.name}: {size} bytes on disk, sidecar says {meta['bytes']} (truncated or replaced)"
    digest = sha256_file(ckpt)
    if digest != meta["sha256"]:
        return f"{ckpt.name}: sha256 {digest[:12]}… does not match the sidecar's {meta['sha256'][:12]}… (corrupted)"
    m = CKPT_RE.match(ckpt.name)
    if m and int(m.group(1)) != meta["step"]:
        return f"{side.name}: step {meta['step']} does not match the file name"
    if deep:
        try:
            state = load(ckpt)
        except Exception as e:
            return f"{ckpt.name}: cannot be loaded ({type(e).__name__}: {e})"
        if state.get("step") != meta["step"]:
            return f"{ckpt.name}: holds step {state.get('step')}, sidecar says {meta['step']}"
        if (
            state.get("config_hash") != meta["config_hash"]
            or state.get("tokenizer_hash") != meta["tokenizer_hash"]
        ):
            return f"{ckpt.name}: config/tokenizer hash differs from the sidecar's"
    return None


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Our checkpoint files, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if CKPT_RE.match(p.name))


def _step_of(ckpt: Path) -> int:
    m = CKPT_RE.match(ckpt.name)
    assert m is not None  # only names list_checkpoints kept
    return int(m.group(1))


def latest(ckpt_dir: Path) -> Path | None:
    try:
        name = (ckpt_dir / LATEST).read_text().strip()
    except OSError:
        return None
    return ckpt_dir / name if CKPT_RE.match(name) else None


def find_resume(ckpt_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that verifies, and the reasons others were skipped."""
    skipped: list[str] = []
    for p in reversed(list_checkpoints(ckpt_dir)):
        why = verify(p)
        if why is None:
            return p, skipped
        skipped.append(why)
    return None, skipped


def verify_run(
    ckpt_dir: Path, deep: bool = True
) -> tuple[list[tuple[Path, str | None]], str | None]:
    """Each checkpoint with its verdict, and a verdict on `latest`."""
    results = [(p, verify(p, deep=deep)) for p in list_checkpoints(ckpt_dir)]
    lp = latest(ckpt_dir)
    if not results:
        return results, f"{ckpt_dir}: no checkpoints"
    latest_why: str | None
    if lp is None:
        latest_why = f"{ckpt_dir / LATEST}: missing or names no checkpoint"
    else:
        latest_why = dict(results).get(lp, f"latest names {lp.name}, which does not exist")
    return results, latest_why


# -----------------------------------------------------------------------------
# retention


def retain(ckpt_dir: Path, keep_last: int) -> list[Path]:
    """Keep the newest `keep_last`, the best (lowest finite val_loss), and every
    gate-pass and final checkpoint; delete the rest of ours. Returns what was deleted."""
    ckpts = list_checkpoints(ckpt_dir)
    current = latest(ckpt_dir)
    metas = {p: read_sidecar(p) for p in ckpts}
    done = {p: m for p, m in metas.items() if m is not None}
    complete = list(done)
    keep = set(complete[-keep_last:])
    if current is not None:
        keep.add(current)
    scored = [
        p
        for p in complete
        if isinstance(done[p].get("val_loss"), int | float) and math.isfinite(done[p]["val_loss"])
    ]
    if scored:
        keep.add(min(scored, key=lambda p: (done[p]["val_loss"], -_step_of(p))))
    keep.update(p for p in complete if set(done[p].get("tags", ())) & set(KEEP_TAGS))
    deleted = []
    for p in ckpts:
        if p in keep:
            continue
        if metas[p] is None and p.stat().st_mtime > time.time() - 60:
            continue  # no sidecar yet: maybe another process is mid-save
        for f in (p, sidecar_path(p)):
            try:
                f.unlink()
                deleted.append(f)
            except FileNotFoundError:
                pass
    for f in ckpt_dir.iterdir():  # our own temporaries from a killed save
        m = TMP_RE.match(f.name)
        if m and not pid_alive(int(m.group(3))):
            f.unlink(missing_ok=True)
    return deleted


def pid_alive(pid: int) -> bool:
    """Is a process with this pid running (this one included)? A temporary whose
    writer still runs may be a save under way in another process: never delete it.
    A reused pid keeps a dead writer's temporary until that process ends: it costs
    disk, never a checkpoint."""
    if pid <= 0:
        return False  # 0 and negatives name process groups, not a writer
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OverflowError:
        return False  # no such pid can exist
    return True
