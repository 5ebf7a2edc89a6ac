"""The engine's overhead: the core against a plain loop of the same model, alternating.

    python bench/train_throughput.py [--rounds 4] [--steps 30] [--no-compile] [--no-nanogpt]

Two comparisons, each named by what it measures:

- core vs reference: bench/reference_gpt.py is the core's own architecture (RoPE,
  gainless RMSNorm, no biases, tied embeddings, fused AdamW, clip 1.0) written
  plainly as a single-file loop, so the ratio is the engine's cost or gain around
  the same model. Figures: ms per step (each side's own step timer) and tokens per
  wall-clock second (the time between consecutive steps, which holds everything
  the loop does besides the step: events, progress, signal and checkpoint checks).
- core vs its own model in a plain loop: reference_gpt.py --model core runs
  core.model.GPT itself in the same plain loop: the engine alone.
- core vs nanoGPT: nanoGPT's own train.py (vendored unchanged under
  bench/third_party/nanogpt, MIT), run as a new user would, as a subprocess with its
  command-line overrides at the same shape on CPU (fp32, no compile), on a
  synthetic token file this bench writes. Its architecture differs (learned
  positions, LayerNorm, foreach AdamW on CPU), so this ratio mixes design with
  engine. nanoGPT's printed iteration time is wall time between iterations: it is
  compared with the core's wall time between steps.

The core runs as itself (`python -m core.train`, walks data with a vocab of 8192)
and its times are read back from its own `step` events. Shape: n_layer 4, n_head 4,
n_embd 256, context 256, batch 16, vocab 8192, fp32 on CPU. Rounds alternate the
runs; each figure is the median over all rounds' steps, the first WARMUP of every
run dropped; the per-round ratios are printed too.
"""

import argparse
import json
import os
import pickle
import re
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


def reference_run(steps: int, model: str = "plain") -> tuple[list[float], list[float], int]:
    """(step_ms per step, wall ms between consecutive steps, parameters)."""
    cmd = [sys.executable, str(ROOT / "bench" / "reference_gpt.py"), "--steps", str(steps)]
    cmd += ["--model", model]
    for k, v in SHAPE.items():
        cmd += [f"--{k}", str(v)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
    rows = [json.loads(x) for x in out]
    n_params = rows[0]["n_params"]
    t = [r["t"] for r in rows[1:]]
    gaps = [(b - a) * 1000 for a, b in zip(t, t[1:], strict=False)][WARMUP:]
    return [r["step_ms"] for r in rows[1:]][WARMUP:], gaps, n_params


NANOGPT = ROOT / "bench" / "third_party" / "nanogpt"
ITER_RE = re.compile(r"^iter (\d+): loss [^,]*, time ([0-9.]+)ms")


def nanogpt_data(tmp: Path) -> Path:
    """train.bin / val.bin of uniform random tokens (uint16, as nanoGPT reads them) and
    a meta.pkl giving the vocab: written here, nothing downloaded."""
    import numpy as np

    d = tmp / "nanogpt-data"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 2_000_000), ("val", 100_000)):
        rng.integers(0, SHAPE["vocab"], n, dtype=np.uint16).tofile(d / f"{split}.bin")
    (d / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": SHAPE["vocab"]}))
    return d


def nanogpt_run(steps: int, data: Path, tmp: Path) -> list[float]:
    """nanoGPT's train.py at the bench shape: its printed time per iteration (ms)."""
    sets = dict(
        dataset=str(data),  # absolute: os.path.join('data', abs) is abs
        out_dir=str(tmp / "nanogpt-out"),
        device="cpu",
        dtype="float32",
        compile=False,
        n_layer=SHAPE["n_layer"],
        n_head=SHAPE["n_head"],
        n_embd=SHAPE["n_embd"],
        block_size=SHAPE["context"],
        batch_size=SHAPE["batch"],
        gradient_accumulation_steps=1,
        max_iters=steps,
        eval_interval=10**9,  # its one eval is at iter 0, dropped with the warm-up
        eval_iters=1,
        log_interval=1,
        always_save_checkpoint=False,
        learning_rate=3e-3,
        warmup_iters=2,
        lr_decay_iters=steps,
    )
    cmd = [sys.executable, "train.py"] + [f"--{k}={v}" for k, v in sets.items()]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        cmd, cwd=NANOGPT, check=True, capture_output=True, text=True, env=env
    ).stdout
    ms = [float(m.group(2)) for line in out.splitlines() if (m := ITER_RE.match(line))]
    return ms[1:][WARMUP:]  # iter 0 holds the eval


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
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time core with train.compile=true",
    )
    ap.add_argument(
        "--nanogpt",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run nanoGPT's own train.py (bench/third_party/nanogpt)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        help="OMP_NUM_THREADS for every run (on a busy shared box 1 keeps the threads' "
        "barrier waits out of the comparison)",
    )
    a = ap.parse_args()
    if a.threads:
        os.environ["OMP_NUM_THREADS"] = str(a.threads)  # inherited by every subprocess

    from core.model import GPT, GPTConfig

    core_model = GPT(
        GPTConfig(
            SHAPE["vocab"], SHAPE["context"], SHAPE["n_layer"], SHAPE["n_head"], SHAPE["n_embd"]
        )
    )
    core_fpt = core_model.flops_per_token()
    tokens = SHAPE["batch"] * SHAPE["context"]
    names = ("reference", "core model, plain loop", "core", "core+compile", "nanoGPT")
    step_ms: dict[str, list[float]] = {k: [] for k in names}
    wall_ms: dict[str, list[float]] = {k: [] for k in names}
    per_round: dict[str, list[float]] = {
        k: [] for k in ("step", "wall", "engine", "engine wall", "compile", "nanoGPT")
    }
    peak = None
    med = statistics.median
    threads = os.environ.get("OMP_NUM_THREADS", "torch's default")
    print(f"load average at start {os.getloadavg()[0]:.1f}, threads {threads}", flush=True)
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        data = nanogpt_data(tmp) if a.nanogpt else None
        for r in range(a.rounds):
            f, fg, ref_params = reference_run(a.steps)
            e, eg, _ = reference_run(a.steps, "core")
            c, g, peak = core_run(a.steps, tmp)
            step_ms["core model, plain loop"] += e
            wall_ms["core model, plain loop"] += eg
            per_round["engine"].append(med(e) / med(c))
            per_round["engine wall"].append(med(eg) / med(g))
            step_ms["reference"] += f
            wall_ms["reference"] += fg
            step_ms["core"] += c
            wall_ms["core"] += g
            per_round["step"].append(med(f) / med(c))
            per_round["wall"].append(med(fg) / med(g))
            line = (
                f"round {r + 1}: reference {med(f):.1f} ms/step ({med(fg):.1f} wall), "
                f"core {med(c):.1f} ({med(g):.1f} wall): {per_round['step'][-1]:.3f}x step, "
                f"{per_round['wall'][-1]:.3f}x wall; core model in the plain loop {med(e):.1f} "
                f"({med(eg):.1f} wall): core {per_round['engine'][-1]:.3f}x step, "
                f"{per_round['engine wall'][-1]:.3f}x wall"
            )
            if a.compile:
                cc, cg, _ = core_run(a.steps, tmp, compile_=True)
                step_ms["core+compile"] += cc
                wall_ms["core+compile"] += cg
                per_round["compile"].append(med(f) / med(cc))
                line += f"; core+compile {med(cc):.1f}: {per_round['compile'][-1]:.3f}x step"
            if data is not None:
                n = nanogpt_run(a.steps, data, tmp)
                wall_ms["nanoGPT"] += n
                per_round["nanoGPT"].append(med(n) / med(g))
                line += f"; nanoGPT {med(n):.1f} wall: core {per_round['nanoGPT'][-1]:.3f}x"
            print(line, flush=True)
    ref_fpt = 6 * ref_params + 12 * SHAPE["n_layer"] * SHAPE["n_embd"] * SHAPE["context"]

    def rounds(k: str) -> str:
        return ", ".join(f"{x:.3f}" for x in per_round[k])

    print(f"medians over {a.rounds} rounds x {a.steps - WARMUP} steps, fp32 CPU:")
    for name in names:
        ms, wl = step_ms.get(name, []), wall_ms[name]
        if not wl:
            continue
        fpt = ref_fpt if name == "reference" else core_fpt
        step = (
            f"{med(ms):7.1f} ms/step  MFU {100 * fpt * tokens / (med(ms) / 1000) / peak:5.1f}%"
            if ms and peak
            else " " * 26
        )
        print(f"{name:>22}: {step}  {tokens / (med(wl) / 1000):7,.0f} tokens per wall second")
    print(
        f"core vs reference (same model, plain loop): step time {med(step_ms['reference']) / med(step_ms['core']):.3f}x "
        f"(rounds {rounds('step')}), tokens per wall second {med(wall_ms['core']) and med(wall_ms['reference']) / med(wall_ms['core']):.3f}x (rounds {rounds('wall')})"
    )
    print(
        f"core vs its own model in a plain loop (the engine alone): step time "
        f"{med(step_ms['core model, plain loop']) / med(step_ms['core']):.3f}x (rounds {rounds('engine')}), "
        f"tokens per wall second {med(wall_ms['core model, plain loop']) / med(wall_ms['core']):.3f}x "
        f"(rounds {rounds('engine wall')})"
    )
    if per_round["compile"]:
        print(
            f"core+compile vs reference: step time {med(step_ms['reference']) / med(step_ms['core+compile']):.3f}x (rounds {rounds('compile')})"
        )
    if per_round["nanoGPT"]:
        print(
            f"core vs nanoGPT's train.py (different design): tokens per wall second {med(wall_ms['nanoGPT']) / med(wall_ms['core']):.3f}x (rounds {rounds('nanoGPT')})"
        )
    if peak:
        print(f"peak {peak / 1e9:.0f} GFLOP/s (measured by the core: 1024x1024 fp32 matmul)")
    core_ms = step_ms["core"]
    ev_us = sink_cost_us()
    m = med(core_ms)
    overhead = med(wall_ms["core"]) - m
    print(
        f" overhead: one step event {ev_us:.1f} us = {100 * ev_us / 1000 / m:.3f}% of a step; "
        f"wall between steps minus step time {overhead:.2f} ms = {100 * overhead / m:.2f}% "
        "(event, progress line, signal/checkpoint checks)"
    )


if __name__ == "__main__":
    main()
