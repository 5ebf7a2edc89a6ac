"""Secrets in data files: scan .txt/.md/.py, .jsonl and .parquet files in bounded
chunks, with findings at file and line (``row:line`` in a record); the allowlist;
and the fix, redacted copies with a manifest of hashes (never the secrets).
The patterns and the masking live in cockpit.checks.secrets."""

from __future__ import annotations

import bisect
import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson

from cockpit.checks.secrets import (
    _SEP,
    CHUNK_BYTES,
    PARQUET_BATCH_ROWS,
    Finding,
    _find_spans,
    _findings,
    _line_numbers,
    _Span,
)

# --- files ----------------------------------------------------------------------------------


def _kind_of(path: Path) -> str:
    suf = path.suffix.lower()
    return suf[1:] if suf in (".jsonl", ".parquet") else "text"


def _text_chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    """(chunk, bytes read) pieces of a text file cut after a newline, ~CHUNK_BYTES each.

    A chunk is never cut inside an open private-key block, so the block stays whole."""
    tail = b""
    with open(path, "rb") as f:
        while True:
            raw = f.read(CHUNK_BYTES)
            if not raw:
                break
            buf = tail + raw
            cut = buf.rfind(b"\n") + 1
            b = buf.rfind(b"-----BEGIN", max(0, len(buf) - 200_000))
            if b > 0 and b"-----END" not in buf[b:]:
                cut = min(cut, buf.rfind(b"\n", 0, b) + 1)
            if cut <= 0:
                tail = buf
                continue
            tail = buf[cut:]
            yield buf[:cut], len(raw)
    if tail:
        yield tail, 0


def _records(path: Path, text_column: str) -> Iterator[tuple[list[str], int, int]]:
    """(texts, first 1-based row, bytes done) batches of records of a jsonl or parquet file."""
    if _kind_of(path) == "parquet":
        import pyarrow.parquet as pq  # lazy: pyarrow loads only for parquet

        pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)  # pages as read
        rows, size, row = max(1, pf.metadata.num_rows), path.stat().st_size, 1
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_column]):
            texts = [t or "" for t in batch.column(0).to_pylist()]
            yield texts, row, len(texts) * size // rows
            row += len(texts)
        return
    with open(path, "rb") as f:
        texts, row, done = [], 1, 0
        for n, raw in enumerate(f, 1):
            texts.append(_record_text(raw, text_column))
            done += len(raw)
            if done >= CHUNK_BYTES or len(texts) >= PARQUET_BATCH_ROWS:
                yield texts, row, done
                texts, row, done = [], n + 1, 0
        if texts:
            yield texts, row, done


def _record_text(raw: bytes, text_column: str) -> str:
    try:
        v = orjson.loads(raw).get(text_column)
        if isinstance(v, str):
            return v
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return raw.decode("utf-8", "surrogateescape").rstrip("\r\n")  # not a record: scan it raw


def _batch_spans(
    texts: list[str], allow: frozenset[str]
) -> Iterator[tuple[int, bytes, list[_Span]]]:
    """(index, utf-8 text, spans) for each record of a batch that has findings."""
    datas = [t.encode("utf-8", "surrogateescape").replace(_SEP, b" ") for t in texts]
    spans = _find_spans(_SEP.join(datas), allow)
    if not spans:
        return
    offs, o = [], 0
    for t in datas:
        offs.append(o)
        o += len(t) + 1
    by_rec: dict[int, list[_Span]] = {}
    for sp in spans:
        by_rec.setdefault(bisect.bisect_right(offs, sp.start) - 1, []).append(sp)
    for k, ss in by_rec.items():
        b = offs[k]
        yield k, datas[k], [_Span(s.start - b, s.end - b, s.kind, s.sha256) for s in ss]


def _scan_file(
    path: Path, text_column: str, allow: frozenset[str], tick: Callable[[int], None]
) -> Iterator[Finding]:
    name = str(path)
    if _kind_of(path) == "text":
        line = 1
        for chunk, nbytes in _text_chunks(path):
            spans = _find_spans(chunk, allow)
            yield from _findings(chunk, spans, name, None, line)
            line += chunk.count(b"\n")
            tick(nbytes)
        return
    for texts, row, nbytes in _records(path, text_column):
        for k, text, spans in _batch_spans(texts, allow):
            yield from _findings(text, spans, name, row + k, 1)
        tick(nbytes)


def scan_files(
    paths: Iterable[Path],
    *,
    text_column: str = "text",
    allow: frozenset[str] = frozenset(),
    progress: Callable[[int, int], None] | None = None,
) -> list[Finding]:
    """Findings in every file: .jsonl/.parquet by record (`text_column`), the rest as text."""
    paths = [Path(p) for p in paths]
    total = sum(p.stat().st_size for p in paths)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done = min(total, done + n)
        if progress is not None:
            progress(done, total)

    out: list[Finding] = []
    for p in paths:
        out.extend(_scan_file(p, text_column, allow, tick))
    if progress is not None:
        progress(total, total)
    return out


def load_allowlist(path: Path) -> frozenset[str]:
    """sha256 hex digests, one a line; '#' starts a comment. A missing file allows nothing."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return frozenset()
    return frozenset(s.lower() for ln in lines if (s := ln.split("#", 1)[0].strip()))


# --- redacted copies ------------------------------------------------------------------------


def _redact(data: bytes, spans: list[_Span]) -> bytes:
    parts, pos = [], 0
    for sp in spans:
        parts += [data[pos : sp.start], f"[REDACTED:{sp.kind}]".encode()]
        pos = sp.end
    parts.append(data[pos:])
    return b"".join(parts)


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(CHUNK_BYTES):
            h.update(b)
    return h.hexdigest()


def _redact_file(src: Path, dst: Path, text_column: str, allow: frozenset[str]) -> list[dict]:
    """Write a redacted copy of `src` to `dst`; the redactions made (hashes, no secrets)."""
    red: list[dict] = []
    kind = _kind_of(src)
    if kind == "text":
        line = 1
        with open(dst, "wb") as out:
            for chunk, _ in _text_chunks(src):
                spans = _find_spans(chunk, allow)
                for sp, n in zip(spans, _line_numbers(chunk, spans, line), strict=True):
                    red.append({"line": str(n), "kind": sp.kind, "sha256": sp.sha256})
                line += chunk.count(b"\n")
                out.write(_redact(chunk, spans))
        return red
    if kind == "jsonl":
        with open(src, "rb") as f, open(dst, "wb") as out:
            for row, raw in enumerate(f, 1):
                rec = None
                try:
                    rec = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    pass
                if isinstance(rec, dict) and isinstance(rec.get(text_column), str):
                    text = rec[text_column].encode("utf-8", "surrogateescape")
                else:
                    rec, text = None, raw
                spans = _find_spans(text, allow)
                if not spans:
                    out.write(raw)
                    continue
                for sp, n in zip(spans, _line_numbers(text, spans), strict=True):
                    red.append({"line": f"{row}:{n}", "kind": sp.kind, "sha256": sp.sha256})
                if rec is None:
                    out.write(_redact(text, spans))
                else:
                    rec[text_column] = _redact(text, spans).decode("utf-8", "surrogateescape")
                    out.write(orjson.dumps(rec) + (b"\n" if raw.endswith(b"\n") else b""))
        return red
    import pyarrow as pa  # lazy: pyarrow loads only for parquet
    import pyarrow.parquet as pq  # lazy: pyarrow loads only for parquet

    pf = pq.ParquetFile(src)
    schema = pf.schema_arrow
    col = schema.get_field_index(text_column)
    row = 1
    with pq.ParquetWriter(dst, schema) as w:
        for i in range(pf.num_row_groups):
            table = pf.read_row_group(i)
            texts = table.column(col).to_pylist()
            new = list(texts)
            for k, text, spans in _batch_spans([t or "" for t in texts], allow):
                for sp, n in zip(spans, _line_numbers(text, spans), strict=True):
                    red.append({"line": f"{row + k}:{n}", "kind": sp.kind, "sha256": sp.sha256})
                new[k] = _redact(text, spans).decode("utf-8", "surrogateescape")
            if new != texts:
                arr = pa.array(new, type=schema.field(col).type)
                table = table.set_column(col, schema.field(col), arr)
            w.write_table(table)
            row += len(texts)
    return red


def redact_copies(
    paths: Iterable[Path],
    out_dir: Path,
    *,
    text_column: str = "text",
    allow: frozenset[str] = frozenset(),
) -> dict:
    """Copy every file into `out_dir` (new or empty), secrets replaced by [REDACTED:<kind>].

    Originals are only read. Writes and returns out_dir/manifest.json: per file the source
    and copy paths, both sha256s and the redactions (line, kind, secret's sha256), plus the
    number of findings a re-scan of the copies still has (0 when the fix worked)."""
    paths = [Path(p) for p in paths]
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty")
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise ValueError("two inputs share a basename; copies would collide")
    sources = {p.resolve() for p in paths}
    copies = [out_dir / p.name for p in paths]
    if any(c.resolve() in sources for c in copies):
        raise ValueError("refusing to write a copy over an original")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for src, dst in zip(paths, copies, strict=True):
        if scan_files([src], text_column=text_column, allow=allow):
            red = _redact_file(src, dst, text_column, allow)
        else:
            shutil.copyfile(src, dst)
            red = []
        files.append(
            {
                "source": str(src),
                "copy": str(dst),
                "source_sha256": _file_sha(src),
                "copy_sha256": _file_sha(dst),
                "redactions": red,
            }
        )
    left = scan_files(copies, text_column=text_column, allow=allow)
    manifest = {"files": files, "rescan_findings": len(left)}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
