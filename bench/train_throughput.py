"""Core vs a plain PyTorch GPT loop of the same shape, alternating in one run.

    python bench/train_throughput.py [--rounds 3] [--steps 30]

The core runs as itself (`python -m core.train`, walks data with a vocab of
8192) and its step times are read back from its own `step` events; the
reference (bench/reference_gpt.py) prints its own. Shape: n_layer 4, n_head 4,
n_embd 256, context 256, batch 16, vocab 8192, fp32 on CPU. Prints tokens/s,
ms/step and MFU for each, their ratio, and what event writing and per-step
bookkeeping cost as a share of step time.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE = dict(n_layer=4, n_head=4, n_embd=256, context=256, batch=16, vocab=8192)
WARMUP = 5  # steps dropped from each run (allocator and caches warming up)


def core_run(
    steps: int, tmp: Path, compile_: bool = False
) -> tuple[list[float], list[float], float | None]:
    """(step_ms per step, wall ms between consecutive step events, peak FLOP/s)."""
    rd = tmp / f"core-{time.time_ns()}"
    sets = [
        "data.walks.n_nodes=8191",  # + BOS = vocab 8192
        f"data.walks.n_walks={SHAPE['batch'] * (steps + 2) + 64}",
        "data.walks.eval_walks=16",
        f"data.context={SHAPE['context']}",
        f"model.n_layer={SHAPE['n_layer']}",
        f"model.n_head={SHAPE['n_head']}",
        f"model.n_embd={SHAPE['n_embd']}",
        f"train.batch_size={SHAPE['batch']}",
        f"train.max_steps={steps}",
        "train.epochs=null",
        "train.dtype=float32",
        "train.device=cpu",
        "eval.every_epoch=false",
        "eval.val_batches=1",
        "checkpoint.every_epoch=false",
        "gate.metrics={}",
        "data.val_fraction=0.05",
        f"train.compile={'true' if compile_ else 'false'}",
    ]
    cmd = [sys.executable, "-m", "core.train", "--profile", "demo-walks", "--run-dir", str(rd)]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    evs = [json.loads(line) for line in (rd / "events.jsonl").read_text().splitlines()]
    steps_ev = [e for e in evs if e["type"] == "step"]
    ms = [e["step_ms"] for e in steps_ev][WARMUP:]
    gaps = [(b["t"] - a["t"]) * 1000 for a, b in zip(steps_ev, steps_ev[1:], strict=False)][WARMUP:]
    import yaml

    env = yaml.safe_load((rd / "run.yaml").read_text())["environment"]
    return ms, gaps, env["peak_flops"]


def reference_run(steps: int) -> tuple[list[float], int]:
    cmd = [sys.executable, str(ROOT / "bench" / "reference_gpt.py"), "--steps", str(steps)]
    for k, v in SHAPE.items():
        cmd += [f"--{k}", str(v)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
    rows = [json.loads(x) for x in out]
    n_params = rows[0]["n_params"]
    return [r["step_ms"] for r in rows[1:]][WARMUP:], n_params


def sink_cost_us(n: int = 20000) -> float:
    """Microseconds to write one step event to events.jsonl (encode + write + flush)."""
    from core.events import JsonlSink, Step

    with tempfile.TemporaryDirectory() as d:
        sink = JsonlSink(Path(d) / "e.jsonl")
        t0 = time.perf_counter()
        for i in range(n):
            sink.write(
                Step(
                    step=i,
                    epoch=0,
                    loss=2.0,
                    lr=3e-4,
                    grad_norm=1.0,
                    tokens=i * 4096,
                    step_ms=100.0,
                    tokens_per_s=40000.0,
                    mfu=0.3,
                )
            )
        dt = time.perf_counter() - t0
        sink.close()
    return dt / n * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time core with train.compile=true",
    )
    a = ap.parse_args()

    from core.model import GPT, GPTConfig

    core_model = GPT(
        GPTConfig(
            SHAPE["vocab"], SHAPE["context"], SHAPE["n_layer"], SHAPE["n_head"], SHAPE["n_embd"]
        )
    )
    core_fpt = core_model.flops_per_token()
    tokens = SHAPE["batch"] * SHAPE["context"]
    runs = {"core": [], "core+compile": [], "reference": []}
    gaps, peak, ratios = [], None, {"core": [], "core+compile": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            c, g, peak = core_run(a.steps, Path(tmp))
            cc, _, _ = core_run(a.steps, Path(tmp), compile_=True) if a.compile else ([], [], None)
            f, ref_params = reference_run(a.steps)
            runs["core"] += c
            runs["core+compile"] += cc
            runs["reference"] += f
            gaps += g
            line = f"round {r + 1}: reference {statistics.median(f):.1f} ms/step"
            for name, ms in (("core", c), ("core+compile", cc)):
                if ms:
                    ratios[name].append(statistics.median(f) / statistics.median(ms))
                    line += (
                        f", {name} {statistics.median(ms):.1f} ms/step ({ratios[name][-1]:.3f}x)"
                    )
            print(line, flush=True)
    ref_fpt = 6 * ref_params + 12 * SHAPE["n_layer"] * SHAPE["n_embd"] * SHAPE["context"]
    ref_med = statistics.median(runs["reference"])
    for name, ms in runs.items():
        if not ms:
            continue
        m = statistics.median(ms)
        tps = tokens / (m / 1000)
        fpt = ref_fpt if name == "reference" else core_fpt
        mfu = fpt * tps / peak if peak else float("nan")
        ratio = (
            ""
            if name == "reference"
            else f"  {ref_med / m:.3f}x reference (rounds: {', '.join(f'{x:.3f}' for x in ratios[name])})"
        )
        print(f"{name:>13}: {tps:7,.0f} tokens/s  {m:7.1f} ms/step  MFU {100 * mfu:5.1f}%{ratio}")
    print(
        f"peak {peak / 1e9:.0f} GFLOP/s (measured by the core: 1024x1024 fp32 matmul); medians of {len(runs['reference'])} steps each"
    )
    core_ms = runs["core"]
    ev_us = sink_cost_us()
    m = statistics.median(core_ms)
    overhead = statistics.median(gaps) - m
    print(
        f" overhead: one step event {ev_us:.1f} us = {100 * ev_us / 1000 / m:.3f}% of a step; "
        f"wall between steps minus step time {overhead:.2f} ms = {100 * overhead / m:.2f}% "
        "(event, progress line, signal/checkpoint checks)"
    )


if __name__ == "__main__":
    main()
