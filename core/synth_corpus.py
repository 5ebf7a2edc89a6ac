"""Small generated corpora for the json and c validators (data.generate: json | c).

Seeded and made here, never downloaded: JSON workflow documents (the shape
profiles/schemas/workflow.schema.json describes) and short C programs that
compile. Written as parquet shards with a `text` column, like the stdlib
corpus (the format the pre-flight's dataset step validates).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from core.events import Sink
from core.progress import Progress

# -----------------------------------------------------------------------------
# JSON workflows

TRIGGERS = ["push", "pull_request", "schedule", "manual", "tag"]
ACTIONS = ["checkout", "build", "test", "lint", "deploy", "notify", "cache", "package"]
RUNNERS = ["ubuntu", "debian", "alpine", "macos"]
COMMANDS = ["make", "make test", "pytest -q", "npm ci", "cargo build", "go test ./...", "ls"]


def json_doc(rng: random.Random) -> str:
    steps = []
    for _ in range(rng.randint(1, 4)):
        step: dict = {"name": rng.choice(ACTIONS), "run": rng.choice(COMMANDS)}
        if rng.random() < 0.3:
            step["timeout_s"] = rng.choice([60, 120, 300, 600])
        if rng.random() < 0.2:
            step["env"] = {"CI": "true", "LEVEL": rng.randint(1, 3)}
        steps.append(step)
    doc: dict[str, object] = {
        "name": f"{rng.choice(ACTIONS)}-{rng.randint(1, 99)}",
        "on": rng.sample(TRIGGERS, rng.randint(1, 2)),
        "runner": rng.choice(RUNNERS),
        "steps": steps,
    }
    if rng.random() < 0.3:
        doc["retries"] = rng.randint(0, 3)
    return json.dumps(doc, indent=rng.choice([None, 2]))


# -----------------------------------------------------------------------------
# C programs

C_HEADERS = ["stdio.h", "stdlib.h", "string.h"]


def c_doc(rng: random.Random) -> str:
    f = rng.choice(["sum", "count", "scale", "check", "total", "step"])
    a, b = rng.sample(["n", "x", "i", "k", "len", "size"], 2)
    body = rng.choice(
        [
            f"    int r = 0;\n    for (int j = 0; j < {a}; j++) {{\n        r += j * {b};\n    }}\n    return r;\n",
            f"    if ({a} > {b}) {{\n        return {a} - {b};\n    }}\n    return {b} - {a};\n",
            f"    int r = {a};\n    while (r > {b}) {{\n        r = r / 2;\n    }}\n    return r;\n",
            f"    return {a} * {rng.randint(2, 9)} + {b};\n",
        ]
    )
    heads = "".join(f"#include <{h}>\n" for h in ["stdio.h"] + rng.sample(C_HEADERS[1:], 1))
    fn = f"int {f}(int {a}, int {b})\n{{\n{body}}}\n"
    main = (
        "int main(void)\n{\n"
        f"    int v = {f}({rng.randint(1, 20)}, {rng.randint(1, 5)});\n"
        '    printf("%d\\n", v);\n'
        "    return 0;\n}\n"
    )
    return f"{heads}\n{fn}\n{main}"


GENERATORS = {"json": json_doc, "c": c_doc}


def write_synth_parquet(
    kind: str, dest: Path, n_docs: int = 3000, seed: int = 0, sink: Sink | None = None
) -> list[Path]:
    """Write `n_docs` generated documents of `kind` (json | c) as one parquet shard in
    `dest`, through a temporary folder renamed at the end (no half corpus on a crash)."""
    import pyarrow as pa  # lazy: pyarrow loads only for parquet
    import pyarrow.parquet as pq  # lazy: pyarrow loads only for parquet

    make = GENERATORS[kind]
    rng = random.Random(seed)
    bar = Progress("prepare", n_docs, sink, unit=" docs")
    texts = []
    for i in range(n_docs):
        texts.append(make(rng))
        bar.update(i + 1)
    bar.close()
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pq.write_table(pa.table({"text": texts}), tmp / "shard-0000.parquet")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return [dest / "shard-0000.parquet"]
