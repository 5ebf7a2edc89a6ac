"""The built-in text corpus: this Python's standard library .py files, written
once as parquet shards with a `text` column (the format the pre-flight's dataset
step validates)."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

from core.events import Sink
from core.progress import Progress


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)


def write_stdlib_parquet(
    dest: Path, shard_bytes: int = 8 << 20, sink: Sink | None = None
) -> list[Path]:
    """Write the stdlib's .py files as parquet shards with a `text` column (the
    format the pre-flight's dataset step validates). Written to a temporary
    folder and renamed, so a crash never leaves half a corpus."""
    import pyarrow as pa  # lazy: pyarrow loads only for parquet
    import pyarrow.parquet as pq  # lazy: pyarrow loads only for parquet

    files = stdlib_files()
    root = Path(sysconfig.get_paths()["stdlib"])
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    bar = Progress("prepare", len(files), sink, unit=" files")
    texts: list[str] = []
    paths: list[str] = []
    size, shard = 0, 0
    out: list[Path] = []

    def flush() -> None:
        nonlocal texts, paths, size, shard
        if texts:
            p = tmp / f"shard-{shard:04d}.parquet"
            pq.write_table(pa.table({"text": texts, "path": paths}), p)
            out.append(dest / p.name)
            texts, paths, size, shard = [], [], 0, shard + 1

    for i, f in enumerate(files):
        try:
            t = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # a few test files are deliberately not UTF-8
        texts.append(t)
        paths.append(str(f.relative_to(root)))
        size += len(t)
        if size >= shard_bytes:
            flush()
        bar.update(i + 1)
    flush()
    bar.close()
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return out
