"""Pre-flight on a 1 GB corpus, against its targets: the whole checklist except the
probe in < 60 s, the secrets scan at >= 30 MB/s, the dataset step under 500 MB.

Writes 1 GB of code-and-prose text as 8 parquet shards (documents of ~4 KB, a few
planted secrets), then runs `cockpit preflight --json` in subprocesses:
  1. the dataset step alone, for its peak RSS (ru_maxrss of that process);
  2. every step but the probe, for the wall time and each step's seconds.
detect-secrets' rate is measured by bench/secrets_scan.py (it is 200x slower).

    .venv/bin/python bench/preflight_big.py [--mb 1000] [--keep DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SHARDS = 8
DOC_LINES = 60  # ~4 KB documents


def write_corpus(dest: Path, mb: int) -> float:
    """32 MB of generated text cut into documents, re-dealt across the shards with a
    unique first line each (no exact duplicates), until `mb` MB are written."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from secrets_scan import make_text

    t0 = time.perf_counter()
    lines = make_text(min(mb, 32)).splitlines()
    base = ["\n".join(lines[j : j + DOC_LINES]) for j in range(0, len(lines), DOC_LINES)]
    per_shard = mb * 1_000_000 // SHARDS
    for i in range(SHARDS):
        docs, size, j = [], 0, 0
        while size < per_shard:
            d = f"# document {i}-{j}\n" + base[(j * 7919 + i) % len(base)]
            docs.append(d)
            size += len(d) + 1
            j += 1
        pq.write_table(pa.table({"text": docs}), dest / f"shard-{i:04d}.parquet")
        print(f"  shard {i + 1}/{SHARDS}: {len(docs):,} documents", file=sys.stderr)
    return time.perf_counter() - t0


# A small parent measures the child: a child forked from this process (which held the
# generated corpus) would start with this process's pages and inflate its peak RSS.
MEASURE = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def preflight(profile: Path, checklist: Path) -> tuple[dict, float, float]:
    """(JSON, wall s, peak RSS MiB) of one `cockpit preflight --json` process."""
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "cockpit.cli", "preflight"]
        + ["--json", "--profile", str(profile), "--checklist", str(checklist)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if r.returncode == 2:
        sys.exit(r.stderr)
    peak_kib = int(r.stderr.strip().splitlines()[-1])
    return json.loads(r.stdout), wall, peak_kib / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1000)
    ap.add_argument("--keep", help="write the corpus here and keep it")
    args = ap.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="preflight-big-"))
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    if not any((tmp / "data").glob("*.parquet")):
        print(f"writing {args.mb} MB of text to {tmp / 'data'}", file=sys.stderr)
        print(f"corpus written in {write_corpus(tmp / 'data', args.mb):.1f} s", file=sys.stderr)
    tok = ROOT / "data" / "tokenizers" / "stdlib-bpe-4096.json"
    profile = tmp / "big.yaml"
    profile.write_text(
        f"""name: big
data: {{source: files, paths: ["{tmp}/data/*.parquet"], text_column: text, context: 512}}
tokenizer: {{path: "{tok}", vocab_size: 4096, train_if_missing: false}}
model: {{n_layer: 12, n_head: 12, n_embd: 768}}
train: {{max_steps: 10000, epochs: null}}
"""
    )
    # the planted secrets are known: allowlisted by their plain sha256 (an allowlist takes
    # those beside the keyed ids a report shows), so every later step runs too
    import hashlib

    planted = (b"AKIAIOSFODNN7EXAMPLE", b"8.8.4.4")
    (tmp / "allow").write_text("".join(hashlib.sha256(p).hexdigest() + "\n" for p in planted))
    pretrain = (ROOT / "checklists" / "pretrain.yaml").read_text()
    pretrain = pretrain.replace("allowlist: secrets.allow", f"allowlist: {tmp / 'allow'}")
    steps = pretrain.split("\n  - id: ")
    head, steps = steps[0], steps[1:]
    keep = [s for s in steps if not s.startswith("probe")]
    (tmp / "no-probe.yaml").write_text(head + "".join("\n  - id: " + s for s in keep) + "\n")
    (tmp / "dataset-only.yaml").write_text(head + "\n  - id: " + steps[0].rstrip() + "\n")
    if not tok.exists():
        print(
            "note: no stdlib tokenizer yet (run tiny-text once): tokenizer step FAILs",
            file=sys.stderr,
        )

    _, ds_wall, ds_rss = preflight(profile, tmp / "dataset-only.yaml")
    out, wall, _ = preflight(profile, tmp / "no-probe.yaml")
    by_id = {s["id"]: s for s in out["steps"]}
    text_mb = by_id["dataset"]["figures"]["bytes"] / 1e6
    sec = by_id["secrets"]["figures"]
    sec_s = by_id["secrets"]["seconds"]
    print(f"corpus: {text_mb:,.0f} MB of text in {SHARDS} parquet shards ({tmp / 'data'})")
    print(f"dataset step alone: {ds_wall:.1f} s wall, peak RSS {ds_rss:,.0f} MiB (target < 500)")
    print(f"checklist without the probe: {wall:.1f} s wall (target < 60)")
    for s in out["steps"]:
        print(f"  {s['id']:<12} {s['status']:<5} {s['message'][:90]}")
    print(
        f"secrets: {sec['findings']} findings in {sec_s:.1f} s: {text_mb / sec_s:.1f} MB/s of text "
        f"over the step, {sec.get('text_mb_per_s', float('nan')):.1f} MB/s of text over the scan "
        f"(target >= 30; text, not the {sec['bytes'] / 1e6:,.0f} MB of parquet on disk)"
    )
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
