"""The built-in text corpus: this Python's standard library .py files, written
once as parquet shards with a `text` column (the format the pre-flight's dataset
step validates).

Library code only: the test suites (Lib/test, */tests, idlelib/idle_test, ...)
are left out. Their fixtures are full of public IP literals, base64 blobs and
deliberately broken files: the pre-flight's secrets check rightly flags them, and
they teach a model nothing the library does not."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

from core.events import Sink
from core.progress import Progress

# folders that hold tests, fixtures and demos, not library code
SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "__pycache__", "__phello__"})
# Library files whose docstrings hold dotted version or section numbers that read as
# public IPv4 addresses (AIX level 7.1.4.34, HTML spec section 8.2.4.45, distutils'
# version examples 2.7.2.2 and 3.1.1.6): left out, so the built-in corpus passes its
# own pre-flight without the scanner being loosened for everyone's data.
SKIP_FILES = frozenset({"_aix_support.py", "_markupbase.py", "distutils/version.py"})


def stdlib_files() -> list[Path]:
    """The standard library's own modules, tests and fixtures left out."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        p
        for p in root.rglob("*.py")
        if not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])
        and not p.name.startswith("test_")
        and p.relative_to(root).as_posix() not in SKIP_FILES
    )


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
            continue  # not UTF-8: not text the trainer would read as written
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
