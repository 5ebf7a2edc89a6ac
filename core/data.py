"""Text on disk → token windows.

Files (.txt .md .py .jsonl .parquet) are read as documents, tokenized once
with a byte-level BPE (HF `tokenizers`) into uint16/uint32 memmap shards cached
by (data hash, tokenizer hash), then cut into windows of `context + 1` tokens
every `stride`. Documents are split into train and val by a hash of their
text, so the split is the same on every machine and no val text leaks into
train through overlapping windows.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from core import walks as W
from core.config import DataConfig, Profile, TokenizerConfig
from core.errors import DataError
from core.events import Sink
from core.jsonl import JsonlReader
from core.progress import Progress
from core.stdlib_corpus import write_stdlib_parquet
from core.synth_corpus import write_synth_parquet

if TYPE_CHECKING:
    from tokenizers import Tokenizer

SUFFIXES = (".txt", ".md", ".py", ".jsonl", ".parquet")
EOT = "<|endoftext|>"
SPLIT_VERSION = 2  # bump when the split or the shard layout changes


# -----------------------------------------------------------------------------
# finding and reading files


def expand_paths(patterns: list[str]) -> list[Path]:
    files: list[Path] = []
    for pat in patterns:
        for f in sorted(glob.glob(os.path.expanduser(pat), recursive=True)):
            p = Path(f)
            if p.is_dir():
                files += sorted(q for q in p.rglob("*") if q.suffix in SUFFIXES and q.is_file())
            elif p.suffix in SUFFIXES:
                files.append(p)
    return list(dict.fromkeys(files))  # a file matched by two patterns is read once


def read_documents(path: Path, text_column: str) -> Iterator[str]:
    """The documents in one file. Raises DataError naming the file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # lazy: pyarrow loads only for parquet

        try:
            # buffered, not pre-buffered: pages are decoded as batches are read, so a big
            # row group is never held whole (177 -> 123 MiB peak on a 125 MB shard)
            pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataError(
                f"{path}: not a readable parquet file ({type(e).__name__}: {e}). "
                "Re-create it, or remove it from data.paths."
            ) from None
        names = pf.schema_arrow.names
        if text_column not in names:
            raise DataError(
                f"{path}: no column {text_column!r} (columns: {', '.join(names)}). "
                "Set data.text_column to the column that holds the text."
            )
        try:
            # 2048 rows a batch, not pyarrow's 65536: long documents would hold GBs at once
            for batch in pf.iter_batches(batch_size=2048, columns=[text_column], use_threads=False):
                for v in batch.column(0).to_pylist():
                    if v:
                        yield str(v)
        except Exception as e:
            raise DataError(
                f"{path}: parquet data cannot be read ({type(e).__name__}: {e})."
            ) from None
    elif path.suffix == ".jsonl":
        reader = JsonlReader(path, finished=True, utf8_errors="replace")
        for obj in reader:
            if reader.malformed:
                break
            if text_column not in obj:
                raise DataError(
                    f"{path}:{reader.line_no}: no field {text_column!r}. Set data.text_column to the field that holds the text."
                )
            if obj[text_column]:
                yield str(obj[text_column])
        if reader.malformed:
            bad = reader.malformed_lines[0]
            what = "not a JSON object" if bad.reason == "not an object" else "not valid JSON"
            raise DataError(f"{path}:{bad.line}: {what}; fix or remove that line.")
    else:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise DataError(f"{path}: cannot be read ({e}).") from None
        if text:
            yield text


def data_hash(files: list[Path], text_column: str) -> str:
    h = hashlib.sha256(f"{text_column}|{SPLIT_VERSION}".encode())
    for f in files:
        h.update(str(f).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def ensure_files(cfg: DataConfig, sink: Sink | None = None) -> list[Path]:
    files = expand_paths(cfg.paths)
    if not files and cfg.generate is not None:
        dest = (
            Path(cfg.paths[0]).parent
            if any(c in cfg.paths[0] for c in "*?[")
            else Path(cfg.paths[0])
        )
        if cfg.generate == "stdlib":
            write_stdlib_parquet(dest, sink=sink)
        else:
            write_synth_parquet(cfg.generate, dest, sink=sink)
        files = expand_paths(cfg.paths)
    if not files:
        raise DataError(
            f"data.paths {cfg.paths} match no {'/'.join(SUFFIXES)} file; check the paths."
        )
    return files


# -----------------------------------------------------------------------------
# tokenizer


def tokenizer_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def train_tokenizer(
    docs: list[str], vocab_size: int, out: Path, sink: Sink | None = None
) -> Tokenizer:
    from tokenizers import (  # lazy: only the tokenizer steps need it
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=os.isatty(2),
    )
    bar = Progress("tokenizer", len(docs), sink, unit=" docs")

    def it() -> Iterator[str]:
        for i, d in enumerate(docs):
            bar.update(i + 1)
            yield d

    in_worker(lambda: tok.train_from_iterator(it(), trainer=trainer, length=len(docs)), "tokenizer")
    bar.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tok.save(str(tmp))
    os.replace(tmp, out)
    return tok


def in_worker(fn: Callable[[], object], name: str) -> object:
    """fn() on a daemon thread, waited for here. BPE merges run in native code for
    minutes with no Python in between, so a stop signal's handler (which runs on
    the main thread, between bytecodes) would wait for them; waiting here, the
    main thread runs it at once, and a stop abandons the worker, which dies with
    the process. Whatever fn raises is raised here."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the waiting thread
            box["error"] = e

    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.2)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def load_tokenizer(
    cfg: TokenizerConfig, docs_fn: Callable[[], list[str]], sink: Sink | None = None
) -> tuple[Tokenizer, str]:
    """(tokenizer, hash). Trains one when missing and allowed."""
    from tokenizers import Tokenizer  # lazy: only the tokenizer steps need it

    assert cfg.path is not None  # the profile check requires it for data.source 'files'
    path = Path(cfg.path)
    if not path.exists():
        if not cfg.train_if_missing:
            raise DataError(
                f"tokenizer.path {path}: no such file; train one or set train_if_missing: true."
            )
        train_tokenizer(docs_fn(), cfg.vocab_size, path, sink)
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:
        raise DataError(f"{path}: not a valid HF tokenizers tokenizer.json ({e}).") from None
    if tok.get_vocab_size() > cfg.vocab_size:
        raise DataError(
            f"{path}: the tokenizer has {tok.get_vocab_size()} tokens but tokenizer.vocab_size is "
            f"{cfg.vocab_size}; raise tokenizer.vocab_size or retrain the tokenizer."
        )
    return tok, tokenizer_hash(path)


# -----------------------------------------------------------------------------
# tokenizing into cached memmap shards


def _is_val(doc: str, val_fraction: float) -> bool:
    h = int.from_bytes(
        hashlib.blake2b(doc.encode("utf-8", "replace"), digest_size=8).digest(), "little"
    )
    return (h % 1_000_000) < val_fraction * 1_000_000


def _pieces(doc: str, size: int = 64 << 10) -> list[str]:
    """A document cut at line ends into pieces of about `size` characters, so a
    corpus that is one big file still splits into train and val."""
    out, start = [], 0
    while len(doc) - start > size:
        cut = doc.rfind("\n", start, start + size) + 1
        cut = cut if cut > start else start + size
        out.append(doc[start:cut])
        start = cut
    out.append(doc[start:])
    return out


def tokenize_to_cache(
    docs: list[str],
    tok: Tokenizer,
    cache: Path,
    val_fraction: float,
    sink: Sink | None = None,
    chunk_bytes: int = 4 << 20,
) -> None:
    """Encode every document (batch encoding runs on all cores), append EOT
    after each, write train.bin / val.bin / meta.json into `cache` atomically.
    Chunks of a few MB keep both cores busy between progress updates; the
    `_fast` variant skips the offsets we never use."""
    eot = tok.token_to_id(EOT)
    dtype = np.uint16 if tok.get_vocab_size() <= 65535 else np.uint32
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    pieces: list[tuple[str, bool]] = []  # (text, ends its document)
    for d in docs:
        ps = _pieces(d)
        pieces += [(p, k == len(ps) - 1) for k, p in enumerate(ps)]
    total = sum(len(p) for p, _ in pieces)
    bar = Progress("tokenize", total, sink, unit="B")
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    done, i = 0, 0
    tail = [eot] if eot is not None else []
    while i < len(pieces):
        j, size = i, 0
        while j < len(pieces) and (size < chunk_bytes or j == i):
            size += len(pieces[j][0])
            j += 1
        batch = [p for p, _ in pieces[i:j]]
        for (text, last), enc in zip(
            pieces[i:j], encode(batch, add_special_tokens=False), strict=True
        ):
            ids = np.array(enc.ids + (tail if last else []), dtype=dtype)
            parts["val" if _is_val(text, val_fraction) else "train"].append(ids)
        done += size
        i = j
        bar.update(done)
    bar.close()
    if not parts["val"] and parts["train"]:
        # too few pieces for the hash to pick any: hold out the stream's tail instead
        stream = np.concatenate(parts["train"])
        cut = len(stream) - max(1, int(len(stream) * val_fraction))
        parts = {"train": [stream[:cut]], "val": [stream[cut:]]}
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {"dtype": np.dtype(dtype).name, "docs": len(docs), "bytes": total}
    for split, arrs in parts.items():
        arr = np.concatenate(arrs) if arrs else np.zeros(0, dtype)
        arr.tofile(tmp / f"{split}.bin")
        meta[f"{split}_tokens"] = int(arr.size)
    (tmp / "meta.json").write_text(json.dumps(meta))
    if cache.exists():
        shutil.rmtree(cache)
    os.replace(tmp, cache)


def open_cache(cache: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    meta = json.loads((cache / "meta.json").read_text())
    arrs = []
    for split in ("train", "val"):
        n = meta[f"{split}_tokens"]
        arrs.append(
            np.memmap(cache / f"{split}.bin", dtype=meta["dtype"], mode="r", shape=(n,))
            if n
            else np.zeros(0, meta["dtype"])
        )
    return arrs[0], arrs[1], meta


# -----------------------------------------------------------------------------
# windows


class TokenWindows:
    """Windows of context + 1 tokens starting every `stride` tokens."""

    def __init__(self, tokens: np.ndarray, context: int, stride: int):
        self.tokens, self.context, self.stride = tokens, context, stride
        self.n = max(0, (len(tokens) - context - 1) // stride + 1) if len(tokens) > context else 0
        self._offsets = np.arange(context + 1)

    def __len__(self) -> int:
        return self.n

    def batch(self, idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        starts = np.asarray(idx, dtype=np.int64) * self.stride
        rows = self.tokens[starts[:, None] + self._offsets]
        return torch.from_numpy(rows.astype(np.int64))


class WalkWindows:
    """Each walk is one window (context + 1 tokens)."""

    def __init__(self, walks: torch.Tensor):
        self.walks = walks

    def __len__(self) -> int:
        return len(self.walks)

    def batch(self, idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.walks[torch.as_tensor(idx, dtype=torch.long)]


def prepare_files(
    cfg: DataConfig, tcfg: TokenizerConfig, sink: Sink | None = None
) -> tuple[TokenWindows, TokenWindows, Tokenizer, str, dict]:
    """(train windows, val windows, tokenizer, tokenizer hash, figures)."""
    files = ensure_files(cfg, sink)
    dh = data_hash(files, cfg.text_column)
    docs_cache: list[str] | None = None

    def docs() -> list[str]:
        nonlocal docs_cache
        if docs_cache is None:
            bar = Progress("read", len(files), sink, unit=" files")
            docs_cache = []
            for i, f in enumerate(files):
                docs_cache.extend(read_documents(f, cfg.text_column))
                bar.update(i + 1)
            bar.close()
            if not docs_cache:
                raise DataError(
                    f"data.paths {cfg.paths}: the corpus is empty (no non-empty document in {len(files)} files)."
                )
        return docs_cache

    def train_docs() -> list[str]:
        """The pieces tokenize_to_cache puts in train: the tokenizer never sees val text."""
        train = [q for d in docs() for q in _pieces(d) if not _is_val(q, cfg.val_fraction)]
        return train or docs()  # too few pieces for the hash to pick val: the tail is held out

    tok, th = load_tokenizer(tcfg, train_docs, sink)
    cache = Path(cfg.cache_dir) / f"{dh}-{th}-v{int(cfg.val_fraction * 1e6)}"
    if not (cache / "meta.json").exists():
        tokenize_to_cache(docs(), tok, cache, cfg.val_fraction, sink)
    train, val, meta = open_cache(cache)
    tw = TokenWindows(train, cfg.context, cfg.stride)
    vw = TokenWindows(val, cfg.context, cfg.context)  # val windows never overlap
    if len(tw) == 0 or len(vw) == 0:
        which = "train" if len(tw) == 0 else "val"
        raise DataError(
            f"data.paths {cfg.paths}: too few tokens for one {which} window of data.context={cfg.context} "
            f"({meta['train_tokens']} train / {meta['val_tokens']} val tokens from {meta['docs']} documents). "
            "Add data, or lower data.context / adjust data.val_fraction."
        )
    figures = {
        "files": len(files),
        "docs": meta["docs"],
        "bytes": meta["bytes"],
        "train_tokens": meta["train_tokens"],
        "val_tokens": meta["val_tokens"],
        "data_hash": dh,
        "cache": str(cache),
    }
    return tw, vw, tok, th, figures


@dataclass
class Data:
    train: TokenWindows | WalkWindows
    val: TokenWindows | WalkWindows
    vocab: int
    tok_hash: str  # the tokenizer's hash, or the graph's for walks
    figures: dict
    tok: Tokenizer | None = None  # HF tokenizer (files)
    graph: W.Graph | None = None  # walks.Graph (walks)
    val_walks: torch.Tensor | None = None


def load_data(p: Profile, sink: Sink | None = None) -> Data:
    """The profile's data, whichever the source."""

    if p.data.source == "walks":
        graph, train_walks, val_walks = W.make_corpus(
            p.data.walks, p.data.context, p.data.val_fraction
        )
        figures = {
            "train_walks": len(train_walks),
            "val_walks": len(val_walks),
            "nodes": graph.n_nodes,
        }
        return Data(
            WalkWindows(train_walks),
            WalkWindows(val_walks),
            graph.vocab_size,
            graph.spec_hash(),
            figures,
            graph=graph,
            val_walks=val_walks,
        )
    train, val, tok, tok_hash, figures = prepare_files(p.data, p.tokenizer, sink)
    return Data(train, val, p.tokenizer.vocab_size, tok_hash, figures, tok=tok)
