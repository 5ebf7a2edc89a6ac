"""Secrets in data files: scan .txt/.md/.py, .jsonl and .parquet files in bounded
chunks, with findings at file and line (``row:line`` in a record); the allowlist
and its key; and the fix, redacted copies with a manifest of keyed hashes (never
the secrets). Records are read as the trainer reads them (core.data): JSONL lines
through core.jsonl.parse_line, parquet values as str(value), so what is scanned
is what the model would see. The patterns and the masking live in
cockpit.checks.secrets."""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from cockpit.checks.secrets import (
    _B64_MAP,
    _SEP,
    CHUNK_BYTES,
    PARQUET_BATCH_ROWS,
    SESSION,
    Allowlist,
    Finding,
    _find_spans,
    _findings,
    _line_numbers,
    _Span,
    decode,
    encode,
)
from core.jsonl import parse_line

# --- files ----------------------------------------------------------------------------------


def _kind_of(path: Path) -> str:
    suf = path.suffix.lower()
    return suf[1:] if suf in (".jsonl", ".parquet") else "text"


def _text_chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    """(chunk, bytes read) pieces of a text file cut after a newline, ~CHUNK_BYTES each.

    A chunk is never cut inside an open private-key block, so the block stays whole. A
    line longer than CHUNK_BYTES is cut after its last non-token byte near the limit
    (a space, a quote), else at the limit: memory stays bounded with no newline at all."""
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
            if cut <= 0 and len(buf) >= CHUNK_BYTES:
                lo = max(0, CHUNK_BYTES - 4096)
                k = buf[lo:CHUNK_BYTES].translate(_B64_MAP).rfind(b" ")
                cut = lo + k + 1 if k >= 0 else CHUNK_BYTES
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
            texts = [_as_read(v) for v in batch.column(0).to_pylist()]
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


def _as_read(v: Any) -> str:
    """A record's value as core.data.read_documents hands it to the trainer: str(v), an
    empty value skipped (a binary column's bytes are read as their str(), b'...')."""
    return str(v) if v else ""


def _record(raw: bytes, text_column: str) -> dict | None:
    """The record a JSONL line holds, parsed as the trainer parses it (orjson, then the
    standard library's parser for NaN/Infinity and lone surrogates); None if it is none."""
    obj, _ = parse_line(raw, "replace")
    return obj if obj.__class__ is dict and text_column in obj else None


def _record_text(raw: bytes, text_column: str) -> str:
    rec = _record(raw, text_column)
    if rec is not None:
        return _as_read(rec[text_column])
    return raw.decode("utf-8", "replace").rstrip("\r\n")  # not a record: scan it raw


def _batch_spans(
    values: list[str] | list[str | bytes], allow: Allowlist
) -> Iterator[tuple[int, bytes, list[_Span]]]:
    """(index, utf-8 bytes, spans) for each record of a batch that has findings (a bytes
    value is scanned as it is)."""
    orig = [v if isinstance(v, bytes) else encode(v) for v in values]
    # NUL joins the records (no pattern crosses it); the bytes handed back keep theirs
    spans = _find_spans(_SEP.join(d.replace(_SEP, b" ") for d in orig), allow)
    if not spans:
        return
    offs, o = [], 0
    for d in orig:
        offs.append(o)
        o += len(d) + 1
    by_rec: dict[int, list[_Span]] = {}
    for sp in spans:
        by_rec.setdefault(bisect.bisect_right(offs, sp.start) - 1, []).append(sp)
    for k, ss in by_rec.items():
        b = offs[k]
        yield k, orig[k], [_Span(s.start - b, s.end - b, s.kind, s.sha256) for s in ss]


def _scan_file(
    path: Path, text_column: str, allow: Allowlist, tick: Callable[[int], None], stats: dict
) -> Iterator[Finding]:
    name = str(path)
    if _kind_of(path) == "text":
        line = 1
        for chunk, nbytes in _text_chunks(path):
            spans = _find_spans(chunk, allow)
            yield from _findings(chunk, spans, name, None, line)
            line += chunk.count(b"\n")
            stats["text_bytes"] += len(chunk)
            tick(nbytes)
        return
    for texts, row, nbytes in _records(path, text_column):
        for k, text, spans in _batch_spans(texts, allow):
            yield from _findings(text, spans, name, row + k, 1)
        stats["text_bytes"] += sum(len(t) for t in texts)  # characters: ~bytes of text
        tick(nbytes)


def scan_files(
    paths: Iterable[Path],
    *,
    text_column: str = "text",
    allow: Allowlist = SESSION,
    progress: Callable[[int, int], None] | None = None,
    stats: dict | None = None,
) -> list[Finding]:
    """Findings in every file: .jsonl/.parquet by record (`text_column`), the rest as text.

    `progress` is told (bytes on disk done, total); `stats`, when given, gets
    "text_bytes": how much text was scanned (a record's text, not its compressed size)."""
    paths = [Path(p) for p in paths]
    total = sum(p.stat().st_size for p in paths)
    done = 0
    stats = {} if stats is None else stats
    stats["text_bytes"] = 0

    def tick(n: int) -> None:
        nonlocal done
        done = min(total, done + n)
        if progress is not None:
            progress(done, total)

    out: list[Finding] = []
    for p in paths:
        out.extend(_scan_file(p, text_column, allow, tick, stats))
    if progress is not None:
        progress(total, total)
    return out


def key_file(allowlist: Path) -> Path:
    return Path(allowlist).with_name(Path(allowlist).name + ".key")


def _load_key(path: Path) -> bytes | None:
    """The key kept at `path` (64 hex chars), made there (mode 0600) when missing; None
    when it can be neither read nor made (a read-only folder)."""
    try:
        return bytes.fromhex(path.read_text().split()[0])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, IndexError):
        return None
    key = os.urandom(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another scan: use that one
        return _load_key(path)
    except OSError:
        return None
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def load_allowlist(path: Path) -> Allowlist:
    """The allowlist at `path` and its key, kept beside it in `<path>.key`.

    Entries: one a line, '#' starts a comment; a finding's id as reported (HMAC-SHA256
    under the key), or the plain sha256 hex of a text one knows (printf %s TEXT |
    sha256sum). A missing file allows nothing. The key is made on first use; keep it
    out of version control and of shared reports: with it, the ids of short secrets (an
    IP address) can be brute-forced again. Without a usable key file, findings get ids
    that hold for this process only."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    ids = frozenset(s.lower() for ln in lines if (s := ln.split("#", 1)[0].strip()))
    kf = key_file(path)
    key = _load_key(kf)
    if key is None:
        return Allowlist(SESSION.key, ids)
    return Allowlist(key, ids, str(kf))


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


def _jsonl_line(rec: dict, raw: bytes) -> bytes:
    """A redacted record written back so the trainer reads it as it read the original:
    orjson where orjson read it; else the standard library's writer, which keeps NaN,
    Infinity and lone surrogates (as \\udxxx escapes) exactly."""
    try:
        orjson.loads(raw)
        line = orjson.dumps(rec)
    except (orjson.JSONDecodeError, TypeError):
        line = json.dumps(rec).encode()
    return line + (b"\n" if raw.endswith(b"\n") else b"")


def _redact_file(src: Path, dst: Path, text_column: str, allow: Allowlist) -> list[dict]:
    """Write a redacted copy of `src` to `dst`; the redactions made (keyed hashes only)."""
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
                rec = _record(raw, text_column)
                if rec is not None and isinstance(rec[text_column], str):
                    text = encode(rec[text_column])
                else:  # not a record, or a value the trainer reads as str(value): the line
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
                    rec[text_column] = decode(_redact(text, spans))
                    out.write(_jsonl_line(rec, raw))
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
            values = table.column(col).to_pylist()
            new = list(values)
            # str values as text; bytes redacted in place (what the trainer reads, their
            # str(), shows the same ASCII secrets); others have nothing to redact
            vals = [v if isinstance(v, str | bytes) else "" for v in values]
            for k, data, spans in _batch_spans(vals, allow):
                for sp, n in zip(spans, _line_numbers(data, spans), strict=True):
                    red.append({"line": f"{row + k}:{n}", "kind": sp.kind, "sha256": sp.sha256})
                b = _redact(data, spans)
                new[k] = b if isinstance(values[k], bytes) else decode(b)
            if new != values:
                arr = pa.array(new, type=schema.field(col).type)
                table = table.set_column(col, schema.field(col), arr)
            w.write_table(table)
            row += len(values)
    return red


def redact_copies(
    paths: Iterable[Path],
    out_dir: Path,
    *,
    text_column: str = "text",
    allow: Allowlist = SESSION,
) -> dict:
    """Copy every file into `out_dir` (new or empty), secrets replaced by [REDACTED:<kind>].

    Originals are only read. Writes and returns out_dir/manifest.json: per file the source
    and copy paths, both sha256s and the redactions (line, kind, the secret's keyed hash),
    how those hashes are made (never the key), plus the number of findings a re-scan of the
    copies still has (0 when the fix worked). Everything is written to a temporary folder
    beside `out_dir` and renamed into place at the end: a failed fix leaves nothing."""
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
    final = out_dir.resolve()
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = []
        for src, dst in zip(paths, copies, strict=True):
            part = tmp / src.name
            if scan_files([src], text_column=text_column, allow=allow):
                red = _redact_file(src, part, text_column, allow)
            else:
                shutil.copyfile(src, part)
                red = []
            files.append(
                {
                    "source": str(src),
                    "copy": str(dst),
                    "source_sha256": _file_sha(src),
                    "copy_sha256": _file_sha(part),
                    "redactions": red,
                }
            )
        left = scan_files([tmp / p.name for p in paths], text_column=text_column, allow=allow)
        manifest = {
            "files": files,
            "rescan_findings": len(left),
            # the redactions' "sha256" is HMAC-SHA256 under the key kept in key_file (null:
            # a key that lived only in the process that wrote this)
            "hash": {"algorithm": "hmac-sha256", "key_file": allow.key_file},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above): the rename takes its place
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
