"""`cockpit verify RUN_DIR|CHECKPOINT`: every checkpoint against its sidecar (size,
sha256; every shard of a sharded one) and `latest`; exit 0 valid, 1 invalid with the reason. A wrapped run's
checkpoints, in its trainer's own layout, are checked against the sha256 the
cockpit recorded when each was written (cockpit.collect.foreign)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cockpit.collect import foreign
from core import checkpoint as C

if TYPE_CHECKING:
    from argparse import Namespace


def cmd_verify(args: Namespace) -> int:
    path = Path(args.path)
    if path.is_file() or (path.is_dir() and C.CKPT_RE.match(path.name)):
        why = C.verify(path, deep=True)
        if why:
            print(f"INVALID {path}: {why}")
            return 1
        meta = C.read_sidecar(path)
        assert meta is not None  # verify() passed: the sidecar is there
        shards = f" in {len(meta['files'])} files" if isinstance(meta.get("files"), dict) else ""
        print(
            f"OK {path}: step {meta['step']}, {meta['bytes']:,} bytes{shards}, sha256 {meta['sha256'][:12]}…, tags {', '.join(meta['tags'])}"
        )
        return 0
    if (path / foreign.SIDECAR).is_file():
        return _verify_wrapped(path)
    ckpt_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if not ckpt_dir.is_dir():
        print(f"INVALID {path}: no such run directory or checkpoint")
        return 1
    results, latest_why = C.verify_run(ckpt_dir)
    bad = 0
    for p, why in results:
        print(f"{'OK     ' if why is None else 'INVALID'} {p.name}" + (f": {why}" if why else ""))
        bad += why is not None
    lp = C.latest(ckpt_dir)
    if latest_why:
        print(f"INVALID latest: {latest_why}")
    else:
        assert lp is not None  # verify_run: no latest is a reason
        print(f"OK      latest -> {lp.name}")
    if bad or latest_why:
        print(
            f"{ckpt_dir}: {bad} invalid checkpoint(s){'; latest is not valid' if latest_why else ''}"
        )
        return 1
    print(f"{ckpt_dir}: {len(results)} checkpoint(s) valid")
    return 0


def _verify_wrapped(run_dir: Path) -> int:
    results = foreign.verify(run_dir)
    for p, why in results:
        print(f"{'OK     ' if why is None else 'INVALID'} {p}" + (f": {why}" if why else ""))
    bad = sum(why is not None for _, why in results)
    what = "the trainer's checkpoints, against the sha256 recorded when written"
    print(f"{run_dir}: {len(results) - bad} of {len(results)} as written ({what})")
    return 1 if bad else 0
