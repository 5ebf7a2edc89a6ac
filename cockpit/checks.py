"""The built-in kinds a checklist step can `check`, and the shell `run` step.

Each kind fills a StepResult (status, message, figures, findings) from the
profile and what earlier steps found (`ctx.figures[step_id]`). A kind declares
its parameters and the figures its `warn`/`fail` thresholds may name, so a
checklist is validated before anything runs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Profile

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Context:
    profile: Profile
    logs: Path = Path("logs")  # where the run directory will be
    figures: dict = field(default_factory=dict)  # step id -> that step's figures


@dataclass(frozen=True)
class Kind:
    fn: Callable
    params: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()  # what warn/fail thresholds may name


def _threshold(spec, r, figure: str, value: float, below: bool, what: str) -> None:
    """Apply `fail`, then `warn`, for a figure that is bad when below (or above) its bar."""
    for level, bars in (("FAIL", spec.fail), ("WARN", spec.warn)):
        bar = bars.get(figure)
        if bar is not None and (value < bar if below else value > bar):
            r.status = level
            r.message = f"{what} ({figure} {value:,.4g} {'<' if below else '>'} {bar:,.4g})"
            return


# -----------------------------------------------------------------------------
# dataset: shards found, readable, text present, big enough (seed 003_ step 1)


def _records(path: Path) -> int | None:
    """How many records a file holds, empty ones included (None: not knowable cheaply)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if path.suffix == ".jsonl":
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    return 1


def check_dataset(spec, ctx: Context, r, progress) -> None:
    import hashlib

    from core.data import ensure_files, read_documents
    from core.errors import DataError

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
            "are needed (seed 003_): add data to data.paths"
        )
    elif est_tokens < batch_tokens:
        r.status = "FAIL"
        r.message = (
            f"~{est_tokens:,.0f} tokens, fewer than one batch ({batch_tokens:,} = batch_size x "
            "grad_accum x context): add data or lower train.batch_size"
        )
    else:
        _threshold(spec, r, "empty_share", r.figures["empty_share"], False, "many empty documents")
        if r.status == "PASS":
            _threshold(
                spec, r, "duplicate_share", r.figures["duplicate_share"], False, "many duplicates"
            )


# -----------------------------------------------------------------------------
# tokenizer and compression (seed 003_ steps 3 and 4)

ROUND_TRIP = [
    "naïve café – 日本語のテキスト 🚀 ∑x²",
    "0123456789 3.14159 -42 1e-4 0xFF 2026-11-21",
    "\tindented\n\n    four spaces\r\n  trailing  \n",
]


def _tokenizer(ctx: Context):
    """The profile's tokenizer, or None when it does not exist yet."""
    from tokenizers import Tokenizer

    path = Path(ctx.profile.tokenizer.path or "")
    if not ctx.profile.tokenizer.path or not path.exists():
        return None
    return Tokenizer.from_file(str(path))


def check_tokenizer(spec, ctx: Context, r, progress) -> None:
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


def check_compression(spec, ctx: Context, r, progress) -> None:
    from core.data import ensure_files, read_documents

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
# gpu: NVML devices; no GPU is fine for a CPU profile


def check_gpu(spec, ctx: Context, r, progress) -> None:
    from cockpit.gpu import GpuSampler

    g = GpuSampler()
    snap = g.sample()
    g.close()
    device = ctx.profile.train.device
    if not snap.available:
        r.figures = {"devices": 0, "reason": snap.reason}
        if device == "cuda":
            r.status = "FAIL"
            r.message = (
                f"the profile asks for train.device=cuda, but there is no GPU: {snap.reason}"
            )
        else:
            r.status = "PASS"
            r.message = f"no GPU ({snap.reason}): the profile runs on CPU"
        return
    free = [(d.mem_total_mib or 0) - (d.mem_used_mib or 0) for d in snap.devices if d.mem_total_mib]
    r.figures = {
        "devices": len(snap.devices),
        "driver": snap.driver,
        "names": [d.name for d in snap.devices],
        "free_mib": free,
    }
    r.status = "PASS"
    r.message = f"{len(snap.devices)} GPU(s), driver {snap.driver}; free MiB: " + ", ".join(
        f"{f:,.0f}" for f in free
    )
    if free:
        _threshold(spec, r, "free_mib", min(free), True, "too little free GPU memory")


# -----------------------------------------------------------------------------
# disk: room for the checkpoints the run keeps, and the data cache


def param_counts(p: Profile) -> tuple[int, int, int]:
    """(total, non-embedding, vocab) without allocating the weights."""
    import torch

    from core.model import GPT, GPTConfig

    vocab = p.data.walks.n_nodes + 1 if p.data.source == "walks" else p.tokenizer.vocab_size
    with torch.device("meta"):
        m = GPT(GPTConfig(vocab, p.data.context, p.model.n_layer, p.model.n_head, p.model.n_embd))
    return m.n_params(), m.n_params_non_embedding(), vocab


def checkpoint_bytes(p: Profile) -> int:
    """Weights plus AdamW's two moments, fp32: 12 bytes a parameter (and a little)."""
    total, _, _ = param_counts(p)
    return 12 * total + (1 << 20)


def check_disk(spec, ctx: Context, r, progress) -> None:
    p = ctx.profile
    where = ctx.logs if ctx.logs.exists() else Path(".")
    free = shutil.disk_usage(where).free
    ckpt = checkpoint_bytes(p)
    cache = 0
    if p.data.source == "files":
        from core.data import expand_paths

        # token caches hold at most ~1 uint16/uint32 per byte of text: the text's size bounds them
        cache = sum(f.stat().st_size for f in expand_paths(list(p.data.paths)))
    keep = int(spec.params.get("extra_checkpoints", 3))
    need = (p.checkpoint.keep_last + keep) * ckpt + cache
    mib = 2**20
    r.figures = {
        "free_mib": round(free / mib, 1),
        "need_mib": round(need / mib, 1),
        "checkpoint_mib": round(ckpt / mib, 1),
        "cache_mib": round(cache / mib, 1),
        "headroom": round(free / need, 2) if need else None,
    }
    if free < need:
        r.status = "FAIL"
        r.message = (
            f"{free / mib:,.0f} MiB free under {where.resolve()}, the run needs "
            f"{need / mib:,.0f} MiB ({p.checkpoint.keep_last} + {keep} checkpoints of "
            f"{ckpt / mib:,.1f} MiB, plus the data cache); free space or lower checkpoint.keep_last"
        )
        return
    r.status = "PASS"
    r.message = f"{free / mib:,.0f} MiB free, {need / mib:,.0f} MiB needed"
    _threshold(spec, r, "headroom", free / need, True, "little room beyond what the run needs")


# -----------------------------------------------------------------------------
# run: a shell command of the user's own


def run_command(spec, ctx: Context, r, progress) -> None:
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


KINDS: dict[str, Kind] = {
    "dataset": Kind(check_dataset, figures=("bytes", "empty_share", "duplicate_share")),
    "tokenizer": Kind(check_tokenizer),
    "compression": Kind(
        check_compression,
        params=("sample_bytes",),
        figures=("min_bytes_per_token", "max_bytes_per_token"),
    ),
    "disk": Kind(check_disk, params=("extra_checkpoints",), figures=("headroom",)),
    "gpu": Kind(check_gpu, figures=("free_mib",)),
}


def run_step(spec, ctx: Context, r, progress) -> None:
    if spec.run is not None:
        run_command(spec, ctx, r, progress)
    else:
        KINDS[spec.check].fn(spec, ctx, r, progress)
