"""Secrets scanning throughput: MB/s of text scanned (a plain .txt file here, so the
bytes on disk are the bytes of text) by cockpit.checks.secrets_files.scan_files on
~200 MB of code-like and prose-like text with a few planted secrets, best of 3; and,
when detect-secrets is installed, its MB/s on a 20 MB slice of the same text.

--against DIR scans the same file with the code of another checkout too (e.g. the
last commit: git worktree add /tmp/before HEAD~1), each round running both, one after
the other, so a shared, noisy machine slows both alike.

    .venv/bin/python bench/secrets_scan.py [--mb 200] [--against DIR]
"""

import argparse
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = (
    "the model loss step token batch learning rate warmup schedule gradient norm we "
    "train data shard evaluation of a and to in is that for on with as by it this from "
    "version release server address checkpoint epoch validation perplexity sample"
).split()
CODE = [
    "def {w}_{x}(self, {w2}: int = {n}) -> dict:",
    "    return {{'{w}': {n}, '{w2}': self.{w}_{x}}}",
    "    {w} = torch.zeros({n}, {n2}, device='cuda:0')",
    "import {w}.{w2} as {x}  # version {n}.{n2}.{n3}.{n4}",
    "    logger.info('step %d loss %.4f', {n}, {f})",
    "    url = 'http://10.0.{n3}.{n4}:8080/{w}/{w2}'",
    "    sha = '{hex}'",
    "    id = '{uuid}'",
    "    # {w} {w2} {x}: {n}:{n2}:{n3}",
]


def make_text(mb: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    hexd = "0123456789abcdef"
    lines, size = [], 0
    target = mb * 1_000_000
    while size < target:
        if rng.random() < 0.5:
            ln = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))) + "."
        else:
            ln = rng.choice(CODE).format(
                w=rng.choice(WORDS),
                w2=rng.choice(WORDS),
                x="".join(rng.choices(string.ascii_lowercase, k=5)),
                n=rng.randint(0, 4096),
                n2=rng.randint(0, 255),
                n3=rng.randint(0, 255),
                n4=rng.randint(0, 255),
                f=rng.random(),
                hex="".join(rng.choices(hexd, k=64)),
                uuid="-".join("".join(rng.choices(hexd, k=k)) for k in (8, 4, 4, 4, 12)),
            )
        lines.append(ln)
        size += len(ln) + 1
        if len(lines) % 200_000 == 0:  # a few planted secrets
            lines.append("aws_key = AKIAIOSFODNN7EXAMPLE  host 8.8.4.4")
    return "\n".join(lines) + "\n"


# one timed scan in a fresh interpreter, with the code under the given root
SCAN_ONCE = (
    "import sys, time; from cockpit.checks.secrets_files import scan_files; "
    "t0 = time.perf_counter(); n = len(scan_files([sys.argv[1]])); "
    "print(time.perf_counter() - t0, n)"
)


def scan_once(root: Path, path: Path) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    r = subprocess.run(
        [sys.executable, "-c", SCAN_ONCE, str(path)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    s, n = r.stdout.split()
    return float(s), int(n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--against", help="a checkout of other code to scan the same file with")
    args = ap.parse_args()
    roots = {"this checkout": ROOT}
    if args.against:
        roots[f"against {args.against}"] = Path(args.against).resolve()

    with tempfile.TemporaryDirectory() as tmp:
        text = make_text(args.mb)
        path = Path(tmp) / "corpus.txt"
        path.write_text(text)
        mb = path.stat().st_size / 1e6  # a .txt file: bytes on disk = bytes of text
        best = dict.fromkeys(roots, float("inf"))
        found = {}
        for _ in range(3):
            for name, root in roots.items():
                s, found[name] = scan_once(root, path)
                best[name] = min(best[name], s)
        for name in roots:
            print(
                f"cockpit.checks.secrets ({name}): {mb:.0f} MB of text, {found[name]} findings, "
                f"{mb / best[name]:.1f} MB/s of text (best of 3)"
            )

        try:
            from detect_secrets import SecretsCollection
            from detect_secrets.settings import default_settings
        except ImportError:
            print("detect-secrets: not installed (pip install detect-secrets to compare)")
            return
        cut = text.rfind("\n", 0, 20_000_000) + 1
        small = Path(tmp) / "slice.txt"
        small.write_text(text[:cut])
        smb = small.stat().st_size / 1e6
        t0 = time.perf_counter()
        with default_settings():
            sc = SecretsCollection()
            sc.scan_file(str(small))
        dt = time.perf_counter() - t0
        n = sum(len(v) for _, v in sc.data.items())
        print(f"detect-secrets: {smb:.0f} MB, {n} findings, {smb / dt:.2f} MB/s (1 run)")


if __name__ == "__main__":
    main()
