"""Checkpoints: atomic writes, sidecars, `latest`, retention and verification.

Order of a save (docs/architecture.md, "Checkpoints"): write
`.step-NNNNNNN.pt.tmp-PID` in the same folder, fsync, rename to
`step-NNNNNNN.pt`, then the sidecar `step-NNNNNNN.json` (same dance), then
`latest`. A process killed at any instant leaves the previous checkpoint valid
and `latest` naming a complete one.

A sharded checkpoint (core/dcp.py) is a directory `step-NNNNNNN/` written as
`.step-NNNNNNN.tmp-PID/` and renamed when every rank's shard is in it; its
sidecar holds the size and sha256 of every file in it (`files`), and `bytes` /
`sha256` for the whole (the total, and the hash of that list). Everything here
(verify, retention, `latest`, resume) treats the two kinds alike.
Only files named like ours are ever deleted; anything else in the folder is left alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# step-NNNNNNN.pt (one file) or step-NNNNNNN (a sharded checkpoint's directory)
CKPT_RE = re.compile(r"^step-(\d{7})(\.pt)?$")
# our temporaries: a file or directory being written, or a directory set aside to be replaced
TMP_RE = re.compile(r"^\.(step-\d{7}(\.pt|\.json)?|latest)\.(tmp|old)-(?P<pid>\d+)$")
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


def ckpt_name(step: int, sharded: bool = False) -> str:
    return f"step-{step:07d}" if sharded else f"step-{step:07d}.pt"


def sidecar_path(ckpt: Path) -> Path:
    return ckpt.with_name(f"{ckpt.name.removesuffix('.pt')}.json")


def is_sharded(ckpt: Path) -> bool:
    """A sharded (DCP) checkpoint: a directory, not one file."""
    return Path(ckpt).is_dir()


def file_list(d: Path) -> dict[str, dict]:
    """{name: {"bytes", "sha256"}} of every file in a sharded checkpoint's directory."""
    out = {}
    for f in sorted(d.iterdir()):
        if f.is_file():
            out[f.name] = {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
    return out


def files_digest(files: dict[str, dict]) -> str:
    """One sha256 for a directory: the hash of its sorted (name, bytes, sha256) list."""
    lines = "".join(f"{n}\t{v['bytes']}\t{v['sha256']}\n" for n, v in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def size_and_mtime(ckpt: Path) -> tuple[int, float]:
    """Bytes on disk and the newest modification time: of the file, or of every file in a
    sharded checkpoint's directory. OSError when it is gone."""
    st = ckpt.stat()
    if not ckpt.is_dir():
        return st.st_size, st.st_mtime
    size, mtime = 0, st.st_mtime
    for f in ckpt.iterdir():
        fs = f.stat()
        size, mtime = size + fs.st_size, max(mtime, fs.st_mtime)
    return size, mtime


def remove(path: Path) -> None:
    """Delete a checkpoint file or a sharded checkpoint's directory (gone already is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
    seconds: float  # from the start of the save until the checkpoint was complete
    blocked_s: float | None = None  # how long training paused for it (None: all of `seconds`)


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


def publish(tmp: Path, meta: dict, t0: float, blocked_s: float | None = None) -> Saved:
    """Make a sharded checkpoint written into the directory `tmp` (every rank's shard in
    it) the checkpoint of step meta["step"]: hash every file, rename the directory to
    step-NNNNNNN, then the sidecar, then `latest` (the order and atomicity of `save`).
    `t0`: when the save began (time.time()); `blocked_s`: how long training paused
    (None: all of it, as when this runs on the training thread)."""
    ckpt_dir = tmp.parent
    for f in tmp.iterdir():  # fsync'd by their writers; the directory's entries too
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(tmp)
    files = file_list(tmp)
    path = ckpt_dir / ckpt_name(meta["step"], sharded=True)
    if path.exists():
        # the same step saved again (a run resumed from before it): a directory cannot be
        # renamed over another, so the old one is set aside first; its sidecar no longer
        # matches, so nothing takes the one in between for complete
        old = ckpt_dir / f".{path.name}.old-{os.getpid()}"
        remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        remove(old)
    else:
        os.replace(tmp, path)
    _fsync_dir(ckpt_dir)
    size, digest = sum(v["bytes"] for v in files.values()), files_digest(files)
    sidecar = dict(
        meta, sha256=digest, bytes=size, files=files, file=path.name, created=time.time()
    )
    atomic_write_text(sidecar_path(path), json.dumps(sidecar, indent=1) + "\n")
    atomic_write_text(ckpt_dir / LATEST, path.name + "\n")
    return Saved(path, size, digest, time.time() - t0, blocked_s)


def add_tags(ckpt: Path, tags: list[str]) -> None:
    """Add tags to a saved checkpoint's sidecar (rewritten atomically; the
    checkpoint file, its size and hash are unchanged)."""
    meta = read_sidecar(ckpt)
    if meta is None:
        raise ValueError(f"{sidecar_path(ckpt).name}: missing or not valid JSON")
    meta["tags"] = [*meta["tags"], *(t for t in tags if t not in meta["tags"])]
    atomic_write_text(sidecar_path(ckpt), json.dumps(meta, indent=1) + "\n")


def load(path: Path, model: bool = True) -> dict:
    """A checkpoint's state on the CPU. A sharded one gives its trainer state (step,
    progress, RNG, hashes) and, with `model`, the whole model's weights gathered from
    every shard under "model" (never the optimizer: core/dcp.py loads that into a live one)."""
    import torch  # lazy: verify reads sidecars without loading torch

    path = Path(path)
    if path.is_dir():
        from core import dcp_read as dcp  # lazy: loads torch.distributed.checkpoint

        state = dcp.load_trainer_state(path)
        if model:
            state["model"] = dcp.load_model_weights(path)
        return state
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
    if ckpt.is_dir():
        return _verify_sharded(ckpt, deep)
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
        return _state_matches(ckpt, state, meta)
    return None


def _state_matches(ckpt: Path, state: dict, meta: dict) -> str | None:
    if state.get("step") != meta["step"]:
        return f"{ckpt.name}: holds step {state.get('step')}, sidecar says {meta['step']}"
    if (
        state.get("config_hash") != meta["config_hash"]
        or state.get("tokenizer_hash") != meta["tokenizer_hash"]
    ):
        return f"{ckpt.name}: config/tokenizer hash differs from the sidecar's"
    return None


def _verify_sharded(ckpt: Path, deep: bool) -> str | None:
    """verify() for a sharded checkpoint: every file against the sidecar's list."""
    side = sidecar_path(ckpt)
    if not side.exists():
        return f"{ckpt.name}/: sidecar {side.name} is missing (the save did not finish)"
    meta = read_sidecar(ckpt)
    if meta is None:
        return f"{side.name}: not valid JSON"
    missing = [k for k in (*SIDECAR_KEYS, "files") if k not in meta]
    if missing:
        return f"{side.name}: missing fields {', '.join(missing)}"
    files = meta["files"]
    if not isinstance(files, dict) or not files:
        return f"{side.name}: `files` lists no shard"
    if (
        files_digest(files) != meta["sha256"]
        or sum(v["bytes"] for v in files.values()) != meta["bytes"]
    ):
        return f"{side.name}: its list of files does not match its sha256/bytes (edited)"
    on_disk = {f.name for f in ckpt.iterdir()}
    extra = sorted(on_disk - set(files))
    if extra:
        return f"{ckpt.name}/{extra[0]}: not in the sidecar's list of files (added or replaced)"
    for name, want in sorted(files.items()):
        f = ckpt / name
        if not f.is_file():
            return f"{ckpt.name}/{name}: missing (the sidecar lists it)"
        size = f.stat().st_size
        if size != want["bytes"]:
            return f"{ckpt.name}/{name}: {size} bytes on disk, sidecar says {want['bytes']} (truncated or replaced)"
        digest = sha256_file(f)
        if digest != want["sha256"]:
            return f"{ckpt.name}/{name}: sha256 {digest[:12]}… does not match the sidecar's {want['sha256'][:12]}… (corrupted)"
    m = CKPT_RE.match(ckpt.name)
    if m and int(m.group(1)) != meta["step"]:
        return f"{side.name}: step {meta['step']} does not match the directory name"
    if deep:
        try:
            from core import dcp_read as dcp  # lazy: loads torch.distributed.checkpoint

            state = dcp.load_trainer_state(ckpt)
            dcp.check_metadata(ckpt)
        except Exception as e:
            return f"{ckpt.name}/: cannot be loaded ({type(e).__name__}: {e})"
        return _state_matches(ckpt, state, meta)
    return None


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Our checkpoints (files and sharded directories), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if CKPT_RE.match(p.name)]
    # a step-NNNNNNN without .pt is ours only as a directory
    found = [p for p in found if p.suffix == ".pt" or p.is_dir()]
    return sorted(found, key=lambda p: (_step_of(p), p.name))


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
        try:
            if metas[p] is None and size_and_mtime(p)[1] > time.time() - 60:
                continue  # no sidecar yet: maybe another process is mid-save
        except OSError:
            continue  # gone meanwhile
        for f in (p, sidecar_path(p)):
            if f.exists():
                remove(f)
                deleted.append(f)
    for f in ckpt_dir.iterdir():  # our own temporaries from a killed save
        m = TMP_RE.match(f.name)
        if m and not pid_alive(int(m.group("pid"))):
            remove(f)
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
