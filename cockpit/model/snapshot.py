"""A replayed history kept beside the run as `events.idx`, so reopening a long run
reads a few hundred KiB instead of parsing every line of events.jsonl again.

The snapshot is the run model as a replay of the first `offset` bytes of
events.jsonl (and of system.jsonl) left it, before anything of this machine (a
sample, a health check) was added. events.jsonl stays the truth: the snapshot
names the bytes it covers and keeps a hash of them, the run directory it was made in and a fingerprint of the code that
made it. When any of these does not match, or the file does not parse into a
well-formed model, it is ignored and the history is replayed from the start
(and the snapshot written again). A replay then reads only what was written
after it. Written atomically: a temporary file of the writer's own, renamed over
the old one, so a reader sees a whole snapshot or none.

    covered = restore(model, run_dir, follower)  # system.jsonl bytes to skip (0: none)
    ... replay the rest ...
    store(model, run_dir, follower, system_offset, read_bytes)

Plain data only (tagged JSON, parsed with orjson): opening a run never runs code
from its directory.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cockpit.model.curve import Curve
from cockpit.model.records import AlertRecord, CheckpointInfo
from cockpit.model.runmodel import Figures, RunModel

if TYPE_CHECKING:
    from cockpit.collect.follow import EventsFollower

NAME = "events.idx"
FORMAT = 1
MIN_BYTES = 4 << 20  # a replay that read less than this leaves no snapshot (it is quick anyway)
HASH_CHUNK = 8 << 20  # bytes hashed a read
MAX_BYTES = 64 << 20  # a bigger events.idx is not ours: not read

_CLASSES: dict[str, type] = {c.__name__: c for c in (AlertRecord, CheckpointInfo, Figures)}
_SKIP = ("run_dir",)  # set by whoever opens the run (the directory may have moved)


@functools.cache
def fingerprint() -> str:
    """The code that makes a model from events: a snapshot from other code is stale."""
    h = hashlib.sha256(f"format {FORMAT}".encode())
    import cockpit.model.curve as c
    import cockpit.model.records as r
    import cockpit.model.runmodel as m

    for mod in (c, r, m):
        try:
            h.update(Path(mod.__file__ or "").read_bytes())
        except OSError:
            h.update(mod.__name__.encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:32]


def digest(fd: int, n: int) -> str:
    """A hash of the first n bytes of a file, every one of them: a change anywhere in
    what a snapshot covers makes it stale (200 MiB hash in a fraction of a second,
    where parsing them takes seconds)."""
    h = hashlib.sha1(str(n).encode(), usedforsecurity=False)
    off = 0
    while off < n:
        data = os.pread(fd, min(HASH_CHUNK, n - off), off)
        if not data:
            raise OSError("the file is shorter than it was")
        h.update(data)
        off += len(data)
    return h.hexdigest()


# -----------------------------------------------------------------------------
# the model as tagged JSON


def _nums(xs: list) -> bool:
    return set(map(type, xs)) <= {float, int} and all(map(math.isfinite, xs))


def _enc(x: Any) -> Any:
    if x is None or x.__class__ in (bool, int, str):
        return x
    if x.__class__ is float:
        return x if math.isfinite(x) else {"$float": repr(x)}
    if x.__class__ is dict:
        if all(k.__class__ is str and not k.startswith("$") for k in x):
            return {k: _enc(v) for k, v in x.items()}
        return {"$dict": [[_enc(k), _enc(v)] for k, v in x.items()]}
    if x.__class__ is list:
        return x if _nums(x) else [_enc(v) for v in x]
    if x.__class__ is tuple:
        return {"$tuple": [_enc(v) for v in x]}
    if x.__class__ is deque:
        return {"$deque": [_enc(v) for v in x], "maxlen": x.maxlen}
    if x.__class__ is Curve:
        tx, ty = [p[0] for p in x.tail], [p[1] for p in x.tail]
        return {"$curve": [x.cap, x.width, x._fill, x.n, x.n_nonfinite, x.tail.maxlen,
                           *(_enc(v) for v in (x.xs, x.lo, x.hi, x.last, tx, ty))]}  # fmt: skip
    if isinstance(x, Path):
        return {"$path": str(x)}
    if isinstance(x, AlertRecord | CheckpointInfo | Figures):
        fs = {f.name: _enc(getattr(x, f.name)) for f in dataclasses.fields(x)}
        return {"$dc": x.__class__.__name__, "f": fs}
    raise TypeError(f"no snapshot of a {type(x).__name__}")


def _dec(x: Any) -> Any:
    if x.__class__ is list:
        return x if _nums(x) else [_dec(v) for v in x]
    if x.__class__ is not dict:
        return x
    if not any(k.startswith("$") for k in x):
        return {k: _dec(v) for k, v in x.items()}
    if "$float" in x:
        v = float(x["$float"])
        if math.isfinite(v):
            raise ValueError("a finite $float")
        return v
    if "$dict" in x:
        return {_hashable(_dec(k)): _dec(v) for k, v in x["$dict"]}
    if "$tuple" in x:
        return tuple(_dec(v) for v in x["$tuple"])
    if "$deque" in x:
        return deque((_dec(v) for v in x["$deque"]), maxlen=x["maxlen"])
    if "$path" in x:
        return Path(x["$path"])
    if "$dc" in x:
        return _CLASSES[x["$dc"]](**{k: _dec(v) for k, v in x["f"].items()})
    if "$curve" in x:
        return _curve(x["$curve"])
    raise ValueError(f"unknown tag in {sorted(x)[:3]}")


def _hashable(k: Any) -> Any:
    if k.__class__ in (str, int, float, bool, tuple) or k is None:
        return k
    raise ValueError("a dict key that is not a plain value")


def _curve(v: list) -> Curve:
    cap, width, fill, n, n_nonfinite, tail_max, xs, lo, hi, last, tx, ty = v
    c = Curve(cap=cap, tail=tail_max)
    ints = (cap, width, fill, n, n_nonfinite, tail_max)
    if not all(i.__class__ is int and i >= 0 for i in ints) or width < 1 or cap < 1:
        raise ValueError("a curve's sizes")
    cols = [_dec(a) for a in (xs, lo, hi, last, tx, ty)]
    if not all(a.__class__ is list and set(map(type, a)) <= {float, int} for a in cols):
        raise ValueError("a curve's points are not numbers")
    xs, lo, hi, last, tx, ty = cols
    if not (len(xs) == len(lo) == len(hi) == len(last) <= cap) or len(tx) != len(ty):
        raise ValueError("a curve's columns differ in length")
    if len(tx) > tail_max or fill > width or (xs and not fill):
        raise ValueError("a curve's fill")
    c.width, c._fill, c.n, c.n_nonfinite = width, fill, n, n_nonfinite
    c.xs, c.lo, c.hi, c.last = xs, lo, hi, last
    c.tail.extend(zip(tx, ty, strict=True))
    return c


def encode(m: RunModel) -> dict:
    return {f.name: _enc(getattr(m, f.name)) for f in dataclasses.fields(m) if f.name not in _SKIP}


def decode(d: dict) -> RunModel:
    """The model a snapshot holds, each field of the type a fresh model has (a deque of
    the same length bound, a curve, a dict, …): ValueError when it is not."""
    fresh = RunModel()
    out = RunModel()
    names = {f.name for f in dataclasses.fields(RunModel)} - set(_SKIP)
    if set(d) != names:
        raise ValueError("the fields differ from the model's")
    for k in names:
        v, want = _dec(d[k]), getattr(fresh, k)
        if want is None or want.__class__ in (int, float):
            ok = v is None or v.__class__ in (dict, int, float, str, bool)
        else:
            ok = v.__class__ is want.__class__
        if want.__class__ is deque:
            ok = ok and v.maxlen == want.maxlen
        if k == "ranks":
            ok = v is None
        if not ok:
            raise ValueError(f"field {k}")
        setattr(out, k, v)
    _check(out)
    return out


def _check(m: RunModel) -> None:
    """The parts of a model whose elements the displays read field by field."""
    curves = [v for v in vars(m).values() if v.__class__ is Curve]
    curves += [c for hist in m.gpu_dev.values() for c in hist.values()]
    if not all(c.__class__ is Curve for hist in m.gpu_dev.values() for c in hist.values()):
        raise ValueError("gpu_dev")
    if not all(e.__class__ is dict and e.get("figures").__class__ is Figures for e in m.evals):
        raise ValueError("evals")
    if not all(e.__class__ is dict for e in m.samples):
        raise ValueError("samples")
    if not all(a.__class__ is AlertRecord for a in m.alerts):
        raise ValueError("alerts")
    if not all(c.__class__ is CheckpointInfo for c in m.checkpoints.values()):
        raise ValueError("checkpoints")
    for q, size in ((m.step_times, 2), (m.rss_hist, 3), (m.busy_hist, 3)):
        if not all(p.__class__ is tuple and len(p) == size for p in q):
            raise ValueError("history tuples")
    if not all(x.__class__ in (float, int) for x in m.recent_step_ms):
        raise ValueError("recent_step_ms")
    for k in ("info", "last"):
        if getattr(m, k).__class__ is not dict:
            raise ValueError(k)


# -----------------------------------------------------------------------------
# reading and writing


def _path(run_dir: Path) -> Path:
    return Path(run_dir) / NAME


def restore(m: RunModel, run_dir: Path, follower: EventsFollower) -> int:
    """Load a snapshot that matches the run into `m` and move the follower past the
    events it covers. Returns how many bytes of system.jsonl it covers (0 when
    there is no usable snapshot: then neither is touched). Never raises."""
    run_dir = Path(run_dir)
    try:
        p = _path(run_dir)
        if p.stat().st_size > MAX_BYTES:
            return 0
        d = orjson.loads(p.read_bytes())
        if d.__class__ is not dict or d.get("format") != FORMAT:
            return 0
        if d.get("code") != fingerprint() or d.get("run_dir") != str(run_dir.resolve()):
            return 0
        ev, sy = d["events"], d["system"]
        if not _matches(run_dir / "system.jsonl", sy["offset"], sy["digest"]):
            return 0
        model = decode(d["model"])
        if not follower.resume(ev, lambda fd, n: digest(fd, n) == ev["digest"]):
            return 0
    except (OSError, ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
        return 0
    for f in dataclasses.fields(RunModel):
        if f.name not in _SKIP:
            setattr(m, f.name, getattr(model, f.name))
    return int(sy["offset"])


def _current(run_dir: Path) -> dict | None:
    """The snapshot, when it looks current from its header and the files' sizes (the
    hashes are restore()'s to check)."""
    try:
        p = _path(run_dir)
        if p.stat().st_size > MAX_BYTES:
            return None
        d = orjson.loads(p.read_bytes())
        if d.__class__ is not dict or d.get("format") != FORMAT:
            return None
        if d.get("code") != fingerprint() or d.get("run_dir") != str(run_dir.resolve()):
            return None
        for name, part in (("events.jsonl", d["events"]), ("system.jsonl", d["system"])):
            off = part["offset"]
            if off.__class__ is not int or off and (run_dir / name).stat().st_size < off:
                return None
        return d
    except (OSError, ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
        return None


def usable(run_dir: Path) -> bool:
    """Whether a snapshot looks current, from its header and the files' sizes (the
    hashes are checked by restore())."""
    return _current(Path(run_dir)) is not None


def peek(run_dir: Path) -> RunModel | None:
    """The model a snapshot that looks current holds, before its hashes are checked:
    what a display paints first (a few milliseconds, where hashing 200 MiB of events
    takes a fifth of a second). restore() decides whether it is the run's; until then
    it is shown as loading. None when there is none, or it does not decode."""
    run_dir = Path(run_dir)
    d = _current(run_dir)
    if d is None:
        return None
    try:
        m = decode(d["model"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    m.run_dir = run_dir
    return m


def _matches(path: Path, offset: object, want: object) -> bool:
    if offset.__class__ is not int or offset < 0:
        return False
    if offset == 0:
        return True
    fd = os.open(path, os.O_RDONLY)
    try:
        return digest(fd, offset) == want
    finally:
        os.close(fd)


def store(
    m: RunModel,
    run_dir: Path,
    follower: EventsFollower,
    system_offset: int,
    read_bytes: int,
    min_bytes: int | None = None,
) -> bool:
    """Write the snapshot of a model a replay just made (nothing of this machine in
    it yet), when that replay read enough (`min_bytes`, MIN_BYTES unless given) to
    be worth skipping next time. Never raises: a read-only run directory simply has
    none."""
    if read_bytes < (MIN_BYTES if min_bytes is None else min_bytes):
        return False
    run_dir = Path(run_dir)
    state = follower.checkpoint()
    if state is None:
        return False
    ev, fd = state
    tmp = _path(run_dir).with_name(f".{NAME}.tmp-{os.getpid()}")
    try:
        d = {
            "format": FORMAT,
            "code": fingerprint(),
            "run_dir": str(run_dir.resolve()),
            "events": dict(ev, digest=digest(fd, ev["offset"])),
            "system": {"offset": system_offset, "digest": _system_digest(run_dir, system_offset)},
            "model": encode(m),
        }
        data = orjson.dumps(d)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, _path(run_dir))
        return True
    except (OSError, TypeError, ValueError, orjson.JSONEncodeError):
        try:
            tmp.unlink()
        except OSError:
            pass
        return False


def _system_digest(run_dir: Path, offset: int) -> str | None:
    if offset == 0:
        return None
    fd = os.open(run_dir / "system.jsonl", os.O_RDONLY)
    try:
        return digest(fd, offset)
    finally:
        os.close(fd)
