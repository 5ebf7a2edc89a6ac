"""Tokenizing the stdlib corpus: MB/s of UTF-8 text (bytes, as the byte-level
tokenizer sees it; millions of characters a second beside it) of the core's batch
encoding, and the ceiling set by the byte-level pre-tokenizer's regex alone, in one run.

    python bench/tokenize_throughput.py

Uses the tiny-text tokenizer (trained first if missing) on the stdlib parquet
shards (written first if missing).
"""

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    import os

    os.chdir(ROOT)
    from tokenizers import Tokenizer, models, pre_tokenizers

    from core.config import load_profile
    from core.data import ensure_files, load_tokenizer, read_documents, tokenize_to_cache

    p = load_profile("tiny-text")
    files = ensure_files(p.data)
    docs = [d for f in files for d in read_documents(f, p.data.text_column)]
    tok, _ = load_tokenizer(p.tokenizer, lambda: docs)
    mb = sum(len(d.encode("utf-8", "surrogatepass")) for d in docs) / 1e6  # bytes of text
    mc = sum(len(d) for d in docs) / 1e6  # characters
    print(
        f"corpus: {len(docs)} documents, {mb:.1f} MB of UTF-8 text ({mc:.1f} M characters) "
        f"from {len(files)} parquet shards"
    )
    for r in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            tokenize_to_cache(docs, tok, Path(tmp) / "c", p.data.val_fraction)
            dt = time.perf_counter() - t0
        pre = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
        pre.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        t0 = time.perf_counter()
        pre.encode_batch_fast(docs, add_special_tokens=False)
        dp = time.perf_counter() - t0
        print(
            f"round {r + 1}: core tokenize_to_cache {mb / dt:.2f} MB/s of text, "
            f"{mc / dt:.2f} M chars/s ({dt:.1f} s, shards written); "
            f"pre-tokenizer regex alone {mb / dp:.2f} MB/s of text, {mc / dp:.2f} M chars/s"
        )


if __name__ == "__main__":
    main()
