"""Writes the recorded run directories the TUI's snapshot tests open: a finished
CPU-only run that passed its gate, and an interrupted 2-GPU torchrun run with
recorded GPU samples and rank files (rank 1 a straggler). The GPU run is a
made-up example whose figures agree with each other and with small-20m on two
H100s: 17.3M parameters, 32 x 1024 tokens a rank, the core's FLOPs a token, the
H100 SXM bf16 peak, so MFU is what the trainer would compute from the step time
(a model this small leaves an H100 mostly idle: ~2% MFU, utilisation and power
to match). Deterministic (seeded, fixed timestamps), small (< 200 KB together),
written through core's own event and checkpoint formats.

    .venv/bin/python tests/recorded/make_recorded.py      # rewrites both

Their trainer pid (4194305) is above Linux's largest pid, so no live process is
ever taken for theirs. The snapshot tests freeze the clock at `CLOCK`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
from pathlib import Path

from core import events as E
from core.peaks import gpu_peak

SMALL_20M_PARAMS = 17_301_504  # cockpit.checks.cost.param_counts(small-20m)
SMALL_20M_FLOPS = 141_557_760.0  # a token: GPT.flops_per_token (6N + attention)
GPU_NAME = "NVIDIA H100 80GB HBM3"
PEAK, PEAK_SRC = gpu_peak(GPU_NAME, "bfloat16")

HERE = Path(__file__).resolve().parent / "runs"  # a logs/ of their own: the runs screen lists them
PID = 4194305  # > pid_max (2^22): never a live process
CPU_RUN = "20260101-120000-demo-walks"
GPU_RUN = "20260102-090000-small-20m"
T_CPU = 1767268800.0  # 2026-01-01 12:00:00 UTC
T_GPU = 1767344400.0  # 2026-01-02 09:00:00 UTC
CLOCK = T_GPU + 3600.0  # "now" in the snapshots: an hour after the GPU run started


def r(x: float, nd: int = 4) -> float:
    return round(x, nd)


def write_lines(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in rows))


def checkpoint(d: Path, step: int, epoch: int, tokens: int, val: float | None, tags, t: float):
    """A small stand-in checkpoint file with a sidecar that verifies (size, sha256)."""
    ck = d / "checkpoints"
    ck.mkdir(exist_ok=True)
    name = f"step-{step:07d}.pt"
    data = hashlib.sha256(f"{d.name}:{step}".encode()).digest() * 64  # 2 KiB
    (ck / name).write_bytes(data)
    meta = {
        "step": step, "epoch": epoch, "tokens": tokens, "val_loss": val, "tags": ["latest", *tags],
        "config_hash": "0123456789abcdef", "tokenizer_hash": "fedcba9876543210",
        "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "file": name, "created": t,
    }  # fmt: skip
    (ck / name.replace(".pt", ".json")).write_text(json.dumps(meta, indent=1) + "\n")
    (ck / "latest").write_text(name + "\n")
    return E.Checkpoint(
        step=step, path=str(ck / name), bytes=len(data), sha256=meta["sha256"], seconds=0.01,
        tags=meta["tags"], t=t,
    ).to_dict()  # fmt: skip


def system(t: float, k: int, rss: float, gpu: dict, threads: bool) -> dict:
    names = ["python", "pt_autograd_0", "heartbeat", "cockpit-signals", "pt_main_thread"]
    busy = [96.0, 41.0, 0.0, 0.0, 3.0]
    ths = [
        {"tid": PID + i, "name": n, "cpu_pct": busy[i], "user_s": r(k * busy[i] / 50, 2), "system_s": 0.1}
        for i, n in enumerate(names)
    ]  # fmt: skip
    worker = {
        "pid": PID + 10, "ppid": PID, "name": "pt_data_worker", "cmd": "python -m core.train",
        "status": "sleeping", "cpu_pct": 12.0, "num_threads": 2, "rss_mib": 180.0, "uss_mib": 150.0,
        "num_fds": 9, "open_files": 1, "read_mib": 40.0, "write_mib": 0.0,
        "threads": [{"tid": PID + 11, "name": "pt_data_worker", "cpu_pct": 12.0, "user_s": 1.0, "system_s": 0.1}]
        if threads else [],
    }  # fmt: skip
    root = {
        "pid": PID, "ppid": 1, "name": "python", "cmd": "python -m core.train --profile demo-walks",
        "status": "running", "cpu_pct": 140.0, "num_threads": len(names), "rss_mib": r(rss, 2),
        "uss_mib": r(rss - 60, 2), "num_fds": 40, "open_files": 5, "read_mib": 300.0,
        "write_mib": 12.0, "threads": ths if threads else [],
    }  # fmt: skip
    return {
        "v": 1, "t": t, "type": "system",
        "proc": {
            "t": t, "root_pid": PID, "alive": True, "status": "running", "procs": [root, worker],
            "cpu_pct": 152.0, "rss_mib": r(rss + 180, 2), "uss_mib": r(rss + 90, 2),
            "num_threads": len(names) + 2, "error": None,
        },
        "sys": {
            "t": t, "cpu_pct": 78.5, "cpu_pct_per_core": [80.0, 77.0], "ram_used_mib": 6143.0,
            "ram_total_mib": 15872.0, "ram_pct": 38.7, "swap_used_mib": 0.0, "swap_total_mib": 2048.0,
            "disk_free_mib": 120034.0, "disk_total_mib": 480000.0, "disk_path": "logs",
        },
        "gpu": gpu,
    }  # fmt: skip


def make_run(name: str, t0: float, *, steps: int, gpu: bool) -> None:
    d = HERE / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    rng = random.Random(name)
    rng_ranks = random.Random(name + "/ranks")  # its own: the run's other figures stay as they were
    profile = name.split("-", 2)[-1]
    total = 600 if not gpu else 5000
    epochs = 3 if not gpu else 10
    per_epoch = total // epochs
    tps_step = 2048 if not gpu else 2 * 32 * 1024  # small-20m: 2 ranks x 32 x 1024
    ev: list[dict] = [
        E.RunStart(
            run_id=name, profile=profile, pid=PID, device="cuda" if gpu else "cpu",
            world_size=2 if gpu else 1, dtype="bfloat16" if gpu else "float32",
            n_params=409728 if not gpu else SMALL_20M_PARAMS, tokens_per_step=tps_step,
            total_steps=total, total_epochs=epochs, t=t0,
            peak_flops=PEAK if gpu else 9.1e10,
            peak_source=PEAK_SRC if gpu else "measured: fastest 1024x1024 float32 matmul on 2 threads",
        ).to_dict(),
        E.Phase(name="train", done=0, total=total, t=t0 + 0.5).to_dict(),
    ]  # fmt: skip
    log = [f"run dir: logs/{name}", f"training {profile}: {total} steps, {epochs} epochs"]
    losses, evals, ranks = [], [], [[], []]
    dt = 0.1 if not gpu else 0.25
    best = None
    for s in range(1, steps + 1):
        t = t0 + 1.0 + s * dt
        loss = 2.0 + 5.0 * math.exp(-s / 60) + rng.gauss(0, 0.04)
        if s == 130:
            loss += 6.0  # one spike: the downsampled curve must keep it
        losses.append(r(loss))
        ms = 1000 * dt * (1 + rng.gauss(0, 0.05))
        # what the trainer computes: FLOPs a token x tokens/s over the 2 GPUs' peak
        mfu = r(SMALL_20M_FLOPS * tps_step / (ms / 1000) / (2 * PEAK)) if gpu else None
        if gpu:
            rng.gauss(0, 0.01)  # drawn as before, so the other recorded figures stay as they were
        ev.append(
            E.Step(
                step=s, epoch=(s - 1) // per_epoch, loss=r(loss), lr=r(3e-3 * min(1, s / 30), 6),
                grad_norm=r(0.8 + rng.random() * 0.4, 3), tokens=s * tps_step, step_ms=r(ms, 2),
                tokens_per_s=r(tps_step / (ms / 1000), 1), mfu=mfu, t=t,
            ).to_dict()
        )  # fmt: skip
        for k, fwd in enumerate((0.45, 0.60) if gpu else ()):  # rank 1: 1.33x slower forward
            ranks[k].append({
                "v": 1, "t": t, "type": "step", "step": s, "step_ms": r(ms, 2),
                "fwd_ms": r(1000 * dt * fwd * (1 + rng_ranks.gauss(0, 0.03)), 2), "rss_mib": r(2900 + 40 * k, 1),
                "cuda_alloc_mib": 7200.0, "cuda_max_alloc_mib": r(8600.0 + 64 * k + s, 1),
            })  # fmt: skip
        if s % 25 == 0:
            log.append(
                f"step {s}/{total} | epoch {(s - 1) // per_epoch} | loss {loss:.4f} | "
                f"{tps_step / (ms / 1000) / 1e3:.1f}k tok/s | {ms:.0f} ms"
            )
        if s % (60 if not gpu else 75) == 0:
            val = r(loss + 0.15 + rng.gauss(0, 0.02))
            improved = best is None or val < best
            best = val if improved else best
            metrics = {"edge_compliance": r(min(1.0, 0.7 + s / 400), 3),
                       "rule_compliance": r(min(1.0, 0.3 + s / 250), 3)} if not gpu else {}  # fmt: skip
            ev.append(E.Eval(step=s, epoch=(s - 1) // per_epoch, val_loss=val,
                             val_ppl=r(math.exp(val), 3), metrics=metrics, t=t + 0.02).to_dict())  # fmt: skip
            evals.append((s, val, metrics))
            log.append(f"eval step {s} | val {val:.4f} ppl {math.exp(val):.2f}")
            if not gpu:
                ev.append(E.Sample(step=s, prompt="<bos> 54 71A 96", text="32 27 30B 112A 115 89",
                                   valid=s >= 120, t=t + 0.03).to_dict())  # fmt: skip
                th = {"edge_compliance": 0.95, "rule_compliance": 0.8}
                passed = all(metrics[k] >= v for k, v in th.items())
                ev.append(E.Gate(step=s, passed=passed, metrics=metrics, thresholds=th,
                                 t=t + 0.04).to_dict())  # fmt: skip
            tags = (["best"] if improved else []) + (
                ["final", "gate"] if s == steps and not gpu else []
            )
            ev.append(checkpoint(d, s, (s - 1) // per_epoch, s * tps_step, val, tags, t + 0.05))
    t_end = t0 + 1.0 + steps * dt + 0.2
    if gpu:
        log += [
            "warning: SIGINT: stopping after this step",
            "exiting with code 130, checkpoint saved",
        ]
        ev.append(
            checkpoint(
                d,
                steps,
                (steps - 1) // per_epoch,
                steps * tps_step,
                None,
                ["interrupt"],
                t_end - 0.1,
            )
        )
        ev.append(E.RunEnd(status="interrupted", step=steps, reason=f"signal 2: stopped after step {steps}, checkpoint saved", wall_s=r(t_end - t0, 2), t=t_end).to_dict())  # fmt: skip
    else:
        ev.append(E.RunEnd(status="gate_passed", step=steps, reason="every gate metric met its minimum", wall_s=r(t_end - t0, 2), t=t_end).to_dict())  # fmt: skip
    log.append(f"run {'interrupted' if gpu else 'gate_passed'} (step {steps})")
    write_lines(d / "events.jsonl", ev)
    for k, rows in enumerate(ranks if gpu else ()):
        (d / "ranks").mkdir(exist_ok=True)
        start = {"v": 1, "t": t0 + 0.4, "type": "start", "rank": k, "local_rank": k, "world_size": 2,
                 "pid": PID + 100 + k, "host": "recorded", "device": f"cuda:{k}"}  # fmt: skip
        end = {
            "v": 1,
            "t": t_end,
            "type": "end",
            "step": steps,
            "status": "interrupted",
            "exit_code": 130,
        }
        write_lines(d / "ranks" / f"rank-{k}.jsonl", [start, *rows, end])
    (d / "stdout.log").write_text("\n".join(log) + "\n")
    samples = []
    n = int((t_end - t0) // 2)
    for k in range(n):
        t = t0 + 1.0 + 2 * k
        g = {"t": t, "available": False, "reason": "NVML library not found (no NVIDIA driver)", "driver": None, "devices": []}  # fmt: skip
        if gpu:
            dev = {
                "index": 0, "name": GPU_NAME, "uuid": "GPU-00000000",
                "util_pct": r(38 + 6 * math.sin(k / 3), 1), "mem_util_pct": 14.0,
                "mem_used_mib": r(9800 + 4 * k, 1), "mem_total_mib": 81559.0, "temp_c": float(41 + k % 5),
                "power_w": r(190 + 20 * math.sin(k / 5), 1), "power_limit_w": 700.0,
                "sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "throttle": [],
                "proc_mem_mib": r(9300 + 4 * k, 1),
            }  # fmt: skip
            dev1 = dev | {"index": 1, "uuid": "GPU-00000001", "util_pct": r(dev["util_pct"] - 9, 1),
                          "temp_c": dev["temp_c"] - 2, "mem_used_mib": r(dev["mem_used_mib"] + 64, 1)}  # fmt: skip
            g = {
                "t": t,
                "available": True,
                "reason": None,
                "driver": "550.54.15",
                "devices": [dev, dev1],
            }
        samples.append(system(t, k, 900 + 1.5 * k, g, threads=k % 5 == 0))
    write_lines(d / "system.jsonl", samples)
    (d / "supervisor.json").write_text(json.dumps({
        "pid": PID, "pgid": PID, "create_time": 1.0, "host": "recorded", "cockpit_pid": PID,
        "run_dir": f"logs/{name}", "exit_code": 130 if gpu else 0, "cmd": ["python", "-m", "core.train"],
        "cwd": ".", "started": t0 - 0.5, "ended": t_end + 0.1,
    }, indent=2) + "\n")  # fmt: skip
    (d / "result.json").write_text(json.dumps({
        "status": "interrupted" if gpu else "gate_passed",
        "curves": {"train_loss": losses, "val_loss": [v for _, v, _ in evals],
                   "eval_step": [s for s, _, _ in evals]},
    }) + "\n")  # fmt: skip


def main() -> None:
    make_run(CPU_RUN, T_CPU, steps=180, gpu=False)
    make_run(GPU_RUN, T_GPU, steps=160, gpu=True)
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"wrote {CPU_RUN} and {GPU_RUN} under {HERE} ({total / 1024:.0f} KiB in all)")


if __name__ == "__main__":
    main()
