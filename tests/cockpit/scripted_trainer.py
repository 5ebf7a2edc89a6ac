"""A trainer that misbehaves on purpose, for triggering health alerts for real:
a real process writing real events (through core.events) and really leaking
memory or filling a checkpoint folder. Not a mock of ours: the cockpit watches
any trainer that writes the run directory (docs/architecture.md), and this is one.

    python tests/cockpit/scripted_trainer.py RUN_DIR nan|spike|leak|overfit|disk
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from core import checkpoint as C
from core import events as E


def main() -> None:
    run_dir, scenario = Path(sys.argv[1]), sys.argv[2]
    run_dir.mkdir(parents=True, exist_ok=True)
    sink = E.JsonlSink(run_dir / "events.jsonl")
    sink.write(
        E.RunStart(
            run_id=run_dir.name,
            profile=f"scripted-{scenario}",
            pid=os.getpid(),
            device="cpu",
            world_size=1,
            dtype="float32",
            n_params=1000,
            tokens_per_step=64,
            total_steps=100_000,
            total_epochs=1,
        )
    )
    rng = random.Random(0)
    hoard = []
    for i in range(1, 100_000):
        loss = 3.0 * 0.999**i + rng.gauss(0, 0.01)
        if scenario == "nan" and i == 50:
            loss = float("nan")
        if scenario == "spike" and i == 150:
            loss = 30.0
        sink.write(
            E.Step(
                step=i,
                epoch=0,
                loss=loss,
                lr=1e-3,
                grad_norm=1.0,
                tokens=64 * i,
                step_ms=10.0,
                tokens_per_s=6400.0,
            )
        )
        if scenario == "leak" and len(hoard) < 1000:
            hoard.append(bytearray(os.urandom(1 << 20)))  # 1 MiB a step, never freed (to 1 GiB)
        if scenario == "overfit" and i % 20 == 0:
            sink.write(E.Eval(step=i, epoch=0, val_loss=1.0 + i / 1000, val_ppl=3.0))
        if scenario == "disk" and i == 20:
            saved = C.save(run_dir / "checkpoints", {"step": i}, _meta(i))
            sink.write(
                E.Checkpoint(
                    step=i,
                    path=str(saved.path),
                    bytes=saved.bytes,
                    sha256=saved.sha256,
                    seconds=saved.seconds,
                    tags=["latest"],
                )
            )
        time.sleep(0.01)


def _meta(step: int) -> dict:
    return {
        "step": step,
        "epoch": 0,
        "tokens": 64 * step,
        "val_loss": None,
        "tags": ["latest"],
        "config_hash": "scripted",
        "tokenizer_hash": "scripted",
    }


if __name__ == "__main__":
    main()
