"""The data checks a checklist step can `check` (dataset, tokenizer, compression,
secrets and its fix), and the shell `run` step.

Each kind fills a StepResult (status, message, figures, findings) from the
profile and what earlier steps found (`ctx.figures[step_id]`). A kind declares
its parameters and the figures its `warn`/`fail` thresholds may name, so a
checklist is validated before anything runs.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from cockpit.checks.base import MIB, REPO, Context, FixError, Kind, Progress, Update, threshold
from cockpit.checks.secrets import Allowlist
from cockpit.checks.secrets_files import load_allowlist, redact_copies, scan_files
from core.errors import DataError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from cockpit.checks.base import StepResult, StepSpec

# -----------------------------------------------------------------------------
# dataset: shards found, readable, text present, big enough


def _records(path: Path) -> int | None:
    """How many records a file holds, empty ones included (None: not knowable cheaply)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # lazy: pyarrow loads only for parquet

        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix == ".jsonl":
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    return 1


def check_dataset(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:

    from core.data import (  # lazy: loads torch (seconds); only this path needs it
        ensure_files,
        read_documents,
    )

    p = ctx.profile
    if p.data.source != "files":
        r.status = "SKIP"
        r.message = f"data.source is {p.data.source}: made on the fly, nothing on disk to check"
        return
    try:
        files = ensure_files(p.data)  # writes the built-in corpus when data.generate asks for it
    except DataError as e:
        r.status, r.message = "FAIL", str(e)
        return
    total_bytes = sum(f.stat().st_size for f in files)
    docs = empty = dups = text_bytes = 0
    seen: set[bytes] = set()
    done = 0
    for f in files:
        try:
            n = 0
            for doc in read_documents(f, p.data.text_column):
                n += 1
                b = doc.encode("utf-8", "replace")
                text_bytes += len(b)
                key = hashlib.blake2b(b, digest_size=16).digest()
                dups += key in seen
                seen.add(key)
            records = _records(f)
        except (DataError, OSError) as e:  # a corrupt shard is named, never skipped
            r.status, r.message = "FAIL", str(e)
            r.findings = [
                {"file": str(f), "line": None, "kind": "unreadable", "preview": str(e)[:100]}
            ]
            return
        docs += n
        empty += max(0, (records or n) - n)
        done += f.stat().st_size
        progress(done, total_bytes)
    context = p.data.context
    batch_tokens = p.train.batch_size * p.train.grad_accum * context
    est_tokens = text_bytes / 4  # a conservative 4 bytes a token until compression is measured
    r.figures = {
        "files": len(files),
        "documents": docs,
        "bytes": text_bytes,
        "empty_share": round(empty / max(1, docs + empty), 4),
        "duplicate_share": round(dups / max(1, docs), 4),
    }
    r.status = "PASS"
    r.message = f"{len(files)} file(s), {docs:,} documents, {text_bytes / 2**20:,.1f} MiB of text"
    min_bytes = spec.fail.get("bytes", 1_000_000)
    if text_bytes < min_bytes:
        r.status = "FAIL"
        r.message = (
            f"only {text_bytes:,} bytes of text in {len(files)} file(s); at least {min_bytes:,.0f} "
            "are needed: add data to data.paths"
        )
    elif est_tokens < batch_tokens:
        r.status = "FAIL"
        r.message = (
            f"~{est_tokens:,.0f} tokens, fewer than one batch ({batch_tokens:,} = batch_size x "
            "grad_accum x context): add data or lower train.batch_size"
        )
    else:
        threshold(spec, r, "empty_share", r.figures["empty_share"], False, "many empty documents")
        if r.status == "PASS":
            threshold(
                spec, r, "duplicate_share", r.figures["duplicate_share"], False, "many duplicates"
            )


# -----------------------------------------------------------------------------
# tokenizer and compression

ROUND_TRIP = [
    "naïve café – 日本語のテキスト 🚀 ∑x²",
    "0123456789 3.14159 -42 1e-4 0xFF 2026-11-21",
    "\tindented\n\n    four spaces\r\n  trailing  \n",
]


def _tokenizer(ctx: Context) -> Tokenizer | None:
    """The profile's tokenizer, or None when it does not exist yet."""
    from tokenizers import Tokenizer  # lazy: only the tokenizer steps need it

    path = Path(ctx.profile.tokenizer.path or "")
    if not ctx.profile.tokenizer.path or not path.exists():
        return None
    return Tokenizer.from_file(str(path))


def check_tokenizer(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:
    p = ctx.profile
    if p.data.source != "files":
        r.status, r.message = "SKIP", f"data.source is {p.data.source}: node ids are the tokens"
        return
    try:
        tok = _tokenizer(ctx)
    except Exception as e:
        r.status = "FAIL"
        r.message = f"{p.tokenizer.path}: not a valid HF tokenizers tokenizer.json ({e})"
        return
    if tok is None:
        if p.tokenizer.train_if_missing:
            r.status = "WARN"
            r.message = (
                f"{p.tokenizer.path} does not exist yet: the run trains a {p.tokenizer.vocab_size}-"
                "token BPE on the data first (tokenizer.train_if_missing)"
            )
        else:
            r.status = "FAIL"
            r.message = f"{p.tokenizer.path}: no such file, and tokenizer.train_if_missing is false"
        return
    vocab = tok.get_vocab_size()
    bad = [s for s in ROUND_TRIP if tok.decode(tok.encode(s).ids) != s]
    r.figures = {"vocab_size": vocab, "round_trip_failures": len(bad)}
    if vocab != p.tokenizer.vocab_size:
        r.status = "FAIL"
        r.message = (
            f"{p.tokenizer.path} has {vocab} tokens, the profile says tokenizer.vocab_size "
            f"{p.tokenizer.vocab_size}: set it to {vocab}, or retrain the tokenizer"
        )
    elif bad:
        r.status = "FAIL"
        r.message = f"decode(encode(text)) changes {bad[0]!r}: the tokenizer loses text"
    else:
        r.status = "PASS"
        r.message = (
            f"{p.tokenizer.path}: {vocab} tokens, exact round trip on unicode, digits, whitespace"
        )


def check_compression(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:
    from core.data import (  # lazy: loads torch (seconds); only this path needs it
        ensure_files,
        read_documents,
    )

    p = ctx.profile
    tok = _tokenizer(ctx) if p.data.source == "files" else None
    if tok is None:
        r.status = "SKIP"
        r.message = (
            "no tokenizer to measure yet" if p.data.source == "files" else "walks: 1 token a node"
        )
        return
    budget = int(spec.params.get("sample_bytes", 1 << 20))
    docs, n = [], 0
    for f in ensure_files(p.data):
        for d in read_documents(f, p.data.text_column):
            docs.append(d)
            n += len(d.encode("utf-8", "replace"))
            if n >= budget:
                break
        if n >= budget:
            break
    tokens = sum(len(e.ids) for e in tok.encode_batch(docs))
    bpt = n / max(1, tokens)
    r.figures = {"bytes_per_token": round(bpt, 3), "sample_bytes": n, "sample_tokens": tokens}
    r.status, r.message = "PASS", f"{bpt:.2f} bytes a token on a {n / 2**20:.1f} MiB sample"
    for level, bars in (("FAIL", spec.fail), ("WARN", spec.warn)):
        lo, hi = bars.get("min_bytes_per_token"), bars.get("max_bytes_per_token")
        if lo is not None and bpt < lo:
            why = "it compresses poorly: retrain it with more of this kind of text"
        elif hi is not None and bpt > hi:
            why = "it may be undertrained, or its vocabulary too large for this data"
        else:
            continue
        r.status = level
        r.message = f"{bpt:.2f} bytes a token, outside {lo or 0:g}-{hi or 'inf'}: {why}"
        break


# -----------------------------------------------------------------------------
# secrets: keys, tokens, private keys, public IPs in the data

MAX_FINDINGS = 200  # shown and saved; the figures count them all


def _data_files(ctx: Context) -> list[Path]:
    from core.data import ensure_files  # lazy: loads torch (seconds); only this path needs it

    return ensure_files(ctx.profile.data)


def _allowlist(spec: StepSpec) -> tuple[Path, Allowlist]:
    """The allowlist and the key that makes finding ids (`<allowlist>.key`, made on first
    use beside it: the ids an allowlist names stay valid from run to run, and a report
    or a manifest, which never holds the key, does not give short secrets away)."""
    path = Path(spec.params.get("allowlist", "secrets.allow"))
    return path, load_allowlist(path if path.is_absolute() else Path.cwd() / path)


def check_secrets(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:

    if ctx.profile.data.source != "files":
        r.status, r.message = "SKIP", f"data.source is {ctx.profile.data.source}: no files"
        return
    try:
        files = _data_files(ctx)
    except DataError as e:
        r.status, r.message = "FAIL", str(e)
        return
    allow_path, allow = _allowlist(spec)
    t0 = time.perf_counter()
    stats: dict = {}
    found = scan_files(
        files,
        text_column=ctx.profile.data.text_column,
        allow=allow,
        progress=progress,
        stats=stats,
    )
    dt = time.perf_counter() - t0
    nbytes = sum(f.stat().st_size for f in files)
    kinds = Counter(f.kind for f in found)
    r.figures = {
        "files": len(files),
        "bytes": nbytes,
        "text_bytes": stats["text_bytes"],
        "findings": len(found),
        "by_kind": dict(kinds),
        "allowlisted": len(allow.ids),
        # text scanned a second, not on-disk bytes: parquet is compressed
        "text_mb_per_s": round(stats["text_bytes"] / 1e6 / max(dt, 1e-9), 1),
    }
    r.findings = [f.to_dict() for f in found[:MAX_FINDINGS]]
    if not found:
        r.status = "PASS"
        r.message = f"no secrets in {len(files)} file(s) ({nbytes / MIB:,.1f} MiB on disk)"
        return
    first = found[0]
    r.status = "FAIL"
    r.message = (
        f"{len(found)} possible secret(s) ({', '.join(f'{n} {k}' for k, n in kinds.most_common())}) "
        f"in {len({f.file for f in found})} file(s), the first at {first.file}:{first.line}. "
        f"Train on redacted copies (the fix; originals stay untouched), or list a false "
        f"positive's id (its sha256 field, keyed by {allow_path}.key) in {allow_path}"
    )


def fix_secrets(spec: StepSpec, ctx: Context, r: StepResult, update: Update) -> dict:
    """Redacted copies of every data file in a new folder beside the data; the run (and
    the rest of the checklist) reads them instead."""

    files = _data_files(ctx)
    first = files[0].resolve().parent
    out = first.parent / f"{first.name}-redacted-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while out.exists():
        n += 1
        out = out.with_name(f"{first.name}-redacted-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    r.status, r.message = "RUNNING", f"writing redacted copies to {out}"
    update(r)
    try:
        manifest = redact_copies(
            files, out, text_column=ctx.profile.data.text_column, allow=_allowlist(spec)[1]
        )
    except (ValueError, FileExistsError, OSError) as e:
        raise FixError(f"could not write redacted copies to {out}: {e}") from None
    if manifest["rescan_findings"]:
        raise FixError(f"{manifest['rescan_findings']} finding(s) remain in the copies in {out}")
    ctx.use("data.paths", [str(out)])  # the folder: every copy in it, manifest.json aside
    changed = sum(1 for f in manifest["files"] if f["redactions"])
    return {"path": str(out), "manifest": str(out / "manifest.json"), "files_changed": changed}


# -----------------------------------------------------------------------------
# run: a shell command of the user's own


def run_command(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:
    assert spec.run is not None  # a `run` step (registry.run_step)
    timeout = float(spec.params.get("timeout_s", 600))
    try:
        p = subprocess.run(
            spec.run, shell=True, cwd=REPO, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        r.status, r.message = "FAIL", f"`{spec.run}` still running after {timeout:.0f} s"
        return
    out = (p.stdout + p.stderr).strip().splitlines()
    r.figures = {"exit_code": p.returncode}
    r.status = "PASS" if p.returncode == 0 else "FAIL"
    tail = " | ".join(out[-3:])
    r.message = f"`{spec.run}` exited {p.returncode}" + (f": {tail}" if tail else "")


DATA_KINDS: dict[str, Kind] = {
    "dataset": Kind(check_dataset, figures=("bytes", "empty_share", "duplicate_share")),
    "secrets": Kind(check_secrets, params=("allowlist",), fixer=fix_secrets),
    "tokenizer": Kind(check_tokenizer),
    "compression": Kind(
        check_compression,
        params=("sample_bytes",),
        figures=("min_bytes_per_token", "max_bytes_per_token"),
    ),
}
