"""Finished runs for the compare tests, written the way trainers write them
(core's event dataclasses, run.yaml as core.train writes it): three of ours that
differ in learning rate and depth, and one wrapped nanoGPT command. Deterministic
(seeded, fixed times); their trainer pid is above Linux's largest, so never live."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import yaml

from core import events as E

PID = 4194305  # > pid_max: never a live process
T0 = 1767600000.0  # 2026-01-05 08:00 UTC
CLOCK = T0 + 7200.0

# (run id, lr, n_layer, final loss, steps, step seconds, status) ; None lr: the wrapped one
RUNS = [
    ("20260105-080000-demo-walks", 3e-4, 4, 1.9, 600, 0.05, "completed"),
    ("20260105-081000-demo-walks", 1e-3, 4, 1.6, 600, 0.05, "gate_passed"),
    ("20260105-082000-demo-walks", 3e-3, 6, 2.4, 420, 0.08, "early_stopped"),
    ("20260105-083000-nanogpt", None, None, 1.75, 500, 0.04, "completed"),
]
WRAPPED_CMD = ["python", "train.py", "config/train_shakespeare_char.py", "--learning_rate=6e-4",
               "--batch_size", "12", "--compile=False"]  # fmt: skip


def profile(name: str, lr: float, n_layer: int) -> dict:
    return {
        "name": name,
        "data": {"source": "walks", "context": 256, "stride": 256},
        "model": {"n_layer": n_layer, "n_head": 4, "n_embd": 256},
        "train": {"batch_size": 16, "lr": lr, "min_lr": lr / 10, "epochs": 50, "seed": 1337},
        "eval": {"every_epoch": True, "patience": 3},
    }


def write_runs(logs: Path) -> list[Path]:
    out = []
    for k, (run_id, lr, n_layer, final, steps, step_s, status) in enumerate(RUNS):
        d = logs / run_id
        d.mkdir(parents=True)
        rng = random.Random(k)
        t0 = T0 + 600 * k
        wrapped = lr is None
        start = E.RunStart(
            run_id=run_id, profile="nanogpt" if wrapped else "demo-walks", pid=PID, device="cpu",
            world_size=1, dtype="float32", n_params=None if wrapped else 800_000 * (n_layer or 1),
            tokens_per_step=4096, total_steps=None if wrapped else 600, total_epochs=None,
            t=t0,
        ).to_dict()  # fmt: skip
        if wrapped:
            start["wrapped"] = {"format": "nanogpt", "command": WRAPPED_CMD}
        lines = [start]
        best = math.inf
        for s in range(1, steps + 1):
            t = t0 + s * step_s
            loss = final + 2.2 * math.exp(-s / (90 + 40 * k)) + rng.gauss(0, 0.04)
            lines.append(
                E.Step(
                    step=s, epoch=s // 100, loss=round(loss, 4), lr=lr or 6e-4, grad_norm=1.0,
                    tokens=4096 * s, step_ms=step_s * 1000, tokens_per_s=round(4096 / step_s, 1),
                    mfu=None if wrapped else round(0.02 + 0.01 * k, 3), t=t,
                ).to_dict()
            )  # fmt: skip
            if s % 60 == 0:
                val = final + 0.15 + 2.0 * math.exp(-s / (90 + 40 * k))
                best = min(best, val)
                lines.append(
                    E.Eval(step=s, epoch=s // 100, val_loss=round(val, 4),
                           val_ppl=round(math.exp(val), 3), t=t).to_dict()
                )  # fmt: skip
        lines.append(
            E.RunEnd(status=status, step=steps, reason="", wall_s=steps * step_s,
                     t=t0 + steps * step_s).to_dict()
        )  # fmt: skip
        (d / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        sup = {"pid": PID, "pgid": PID, "create_time": t0, "started": t0, "exit_code": 0}
        sup["command"] = WRAPPED_CMD if wrapped else ["python", "-m", "core.train"]
        (d / "supervisor.json").write_text(json.dumps(sup))
        if not wrapped:
            doc = {"profile": profile("demo-walks", lr, n_layer), "environment": {"host": "box"}}
            (d / "run.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(d)
    return out
