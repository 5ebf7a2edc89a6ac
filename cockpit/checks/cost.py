"""The kinds that say what the run will cost: sizing (model size against the data), the
probe (a few real steps of the actual profile on the actual device), disk and GPU.

Sizing estimates by formula, as people do by hand; the probe measures. The
pre-flight's summary table is built from both (`summary_rows`).
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from cockpit.checks.base import Context, Kind, Progress, StepResult, StepSpec, threshold
from cockpit.collect.follow import EventsFollower
from cockpit.collect.gpu import GpuSampler
from cockpit.fmt import fmt_estimate
from cockpit.supervisor import Trainer, log_tail, trainer_command
from core.config import Profile
from core.jsonl import read_jsonl

MIB = 2**20

# -----------------------------------------------------------------------------
# sizing: parameters, tokens, the param/token ratio, Chinchilla


def param_counts(p: Profile) -> tuple[int, int, int]:
    """(total, non-embedding, vocab) without allocating the weights."""
    vocab = p.data.walks.n_nodes + 1 if p.data.source == "walks" else p.tokenizer.vocab_size
    m = _meta_model(vocab, p.data.context, p.model.n_layer, p.model.n_head, p.model.n_embd)
    return m.n_params(), m.n_params_non_embedding(), vocab


@functools.lru_cache(maxsize=8)
def _meta_model(vocab: int, context: int, n_layer: int, n_head: int, n_embd: int) -> Any:
    """The GPT of a shape on the meta device (no weights): its counts and FLOPs. Cached:
    sizing, the probe and the disk step ask for the same shape (~0.4 s to build)."""
    import torch  # lazy: loads torch (seconds); only this path needs it

    from core.model import GPT, GPTConfig  # lazy: loads torch (seconds); only this path needs it

    with torch.device("meta"):
        return GPT(GPTConfig(vocab, context, n_layer, n_head, n_embd))


def checkpoint_bytes(p: Profile) -> int:
    """Weights plus AdamW's two moments, fp32: 12 bytes a parameter (and a little)."""
    total, _, _ = param_counts(p)
    return 12 * total + MIB


# the model-size table: the recommended model by training tokens, d12 under 100M,
# d16 under 500M, d24 beyond
SIZE_TABLE = (
    (100e6, "d12", 124e6, "n_layer=12, n_embd=768"),
    (500e6, "d16", 200e6, "n_layer=16, n_embd=1024"),
    (float("inf"), "d24", 350e6, "n_layer=24, n_embd=1536"),
)


def recommended(tokens: float) -> tuple[str, float, str]:
    for below, name, params, shape in SIZE_TABLE:
        if tokens < below:
            return name, params, shape
    raise AssertionError("the table ends at infinity")


def dataset_tokens(ctx: Context) -> tuple[float | None, str]:
    """Training tokens in the data, and how they were found."""
    p = ctx.profile
    if p.data.source == "walks":
        w = p.data.walks
        return w.n_walks * (p.data.context + 1) * (1 - p.data.val_fraction), "walks x context"
    nbytes = ctx.figures.get("dataset", {}).get("bytes")
    bpt = ctx.figures.get("compression", {}).get("bytes_per_token")
    if nbytes is None:
        return None, "no dataset figures (the dataset step did not run)"
    if not bpt:
        return nbytes / 4, "bytes / 4 (no measured bytes per token yet)"
    return nbytes / bpt, f"bytes / {bpt:.2f} bytes per token"


# -----------------------------------------------------------------------------
# memory a GPU: parameters, gradients, optimizer state, activations, by parallelism

GIB = 2**30
# activation bytes kept a layer, per token and unit of width, with SDPA (no attention
# matrix kept). bf16 autocast: the fp32 residual stream at the two norms (4+4), the bf16
# inputs of qkv, proj, fc and mlp proj (2+2+2+8), q/k before and after RoPE and v (4+6),
# the attention output (2), the GELU input (8): 42. fp32: the same tensors at 4 bytes.
ACT_BYTES = {"bf16": 42, "fp32": 76}
# the head: logits (bf16), their fp32 copy and log-softmax for the loss, and the fp32
# gradient coming back, per token and vocabulary entry
LOGIT_BYTES = {"bf16": 14, "fp32": 12}
OVERHEAD_MIB = 1024 + 512  # CUDA context, cuBLAS/NCCL workspaces, allocator slack


@dataclass(frozen=True)
class Layout:
    """The figures the estimate needs: the model's shape and the run's batch."""

    n_params: int
    n_layer: int
    n_embd: int
    vocab: int
    context: int
    batch: int  # sequences a micro-batch on each rank


def layout(p: Profile) -> Layout:
    total, _, vocab = param_counts(p)
    m = p.model
    return Layout(total, m.n_layer, m.n_embd, vocab, p.data.context, p.train.batch_size)


def memory_per_gpu(
    lay: Layout,
    world: int,
    parallel: str = "ddp",
    checkpointing: bool = False,
    optimizer: str = "adamw",
    dtype: str = "bf16",
    reshard_after_forward: bool = True,
) -> dict[str, float]:
    """MiB a GPU holds at the peak of a step, by part; `total` includes OVERHEAD_MIB.

    ddp: every rank holds fp32 weights (4 B a parameter), fp32 gradients (4) and
    DDP's gradient buckets (4), and the optimizer's state (AdamW: two fp32 moments,
    8; Muon: one momentum, 4, for the block matrices, AdamW's 8 for the embedding).
    fsdp: the weights, gradients and optimizer state are sharded over the ranks
    (a 1/world share each), plus the gathered bf16 weights in use: two blocks (the
    one computing and the one prefetched) with the embedding, or all of them when
    reshard_after_forward is false (ZeRO-2). Activations: ACT_BYTES a layer per token
    and unit of width, or with activation checkpointing the fp32 input of each block
    plus one block recomputed at a time; and the head's logits."""
    P, L, h = lay.n_params, lay.n_layer, lay.n_embd
    emb = lay.vocab * h
    block = (P - emb) / max(1, L)
    opt = 8 * P if optimizer != "muon" else 4 * (P - emb) + 8 * emb
    if parallel == "fsdp":
        shard = (4 * P + 4 * P + opt) / world
        half = 2 if dtype == "bf16" else 4  # gathered weights: bf16 under mixed precision
        gathered = half * (P if not reshard_after_forward else 2 * block + emb)
        grads_working = 4 * 2 * block  # a block's unsharded gradient while it reduce-scatters
        state = {"weights_grads_optimizer": shard, "gathered": gathered + grads_working}
    else:
        state = {"weights_grads_optimizer": 4 * P + 4 * P + 4 * P + opt, "gathered": 0.0}
    tokens = lay.batch * lay.context
    per_layer = ACT_BYTES[dtype] * tokens * h
    act = (L * 4 * tokens * h + per_layer) if checkpointing else L * per_layer
    logits = LOGIT_BYTES[dtype] * tokens * lay.vocab
    out = {k: v / MIB for k, v in state.items()}
    out["activations"] = act / MIB
    out["logits"] = logits / MIB
    out["overhead"] = float(OVERHEAD_MIB)
    out["total"] = sum(out.values())
    return {k: round(v, 1) for k, v in out.items()}


GPUS_RE = re.compile(r"(\d{1,5})\s{0,3}[xX]\s{0,3}(\d{1,4}(?:\.\d{1,3})?)\s{0,3}(?:GB|GiB|G)?")


def parse_gpus(hint: str) -> tuple[int, float] | None:
    """'8x80GB' -> (8, 81920.0 MiB); a GPU's 'GB' is its GiB (an 80GB card holds 80 GiB)."""
    m = GPUS_RE.fullmatch(hint.strip())
    if not m or int(m.group(1)) < 1:
        return None
    return int(m.group(1)), float(m.group(2)) * 1024


def _gpus_here() -> tuple[int, float] | None:
    """(count, MiB of the smallest) of this machine's GPUs, from NVML; None without."""
    g = GpuSampler()
    snap = g.sample()
    g.close()
    mems = [d.mem_total_mib for d in snap.devices if d.mem_total_mib]
    return (len(mems), float(min(mems))) if snap.available and mems else None


def memory_fit(p: Profile, gpus: tuple[int, float], lay: Layout | None = None) -> dict:
    """The profile's estimate on these GPUs, and which configurations would fit."""
    lay = lay or layout(p)
    n, mib = gpus
    t = p.train
    dt = "bf16" if t.device != "cpu" and t.dtype != "float32" else "fp32"
    kw = dict(optimizer=getattr(t, "optimizer", "adamw"), dtype=dt,
              reshard_after_forward=getattr(t, "reshard_after_forward", True))  # fmt: skip
    mine = (getattr(t, "parallel", "ddp"), bool(getattr(t, "activation_checkpointing", False)))
    table = []
    for par in ("ddp", "fsdp"):
        for ac in (False, True):
            est = memory_per_gpu(lay, n, par, ac, **kw)  # type: ignore[arg-type]
            table.append({"parallel": par, "activation_checkpointing": ac,
                          "total_mib": est["total"], "fits": est["total"] <= mib, "parts": est})  # fmt: skip
    own = next(x for x in table if (x["parallel"], x["activation_checkpointing"]) == mine)
    return {"gpus": n, "gpu_mib": mib, "dtype": dt, "batch": lay.batch, "context": lay.context,
            "parallel": mine[0], "activation_checkpointing": mine[1], "est_mib": own["total_mib"],
            "parts": own["parts"], "fits": own["fits"], "table": table}  # fmt: skip


def _config_name(par: str, ac: bool) -> str:
    return par + (" + activation checkpointing" if ac else "")


def check_sizing(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:
    p = ctx.profile
    total, non_emb, vocab = param_counts(p)
    hint = ctx.gpus
    gpus = parse_gpus(hint) if hint else (_gpus_here() if p.train.device != "cpu" else None)
    if hint and gpus is None:
        r.status = "FAIL"
        r.message = f"--gpus {hint!r}: expected COUNTxMEMORY, e.g. 8x80GB or 4x24GB"
        return
    mem = memory_fit(p, gpus) if gpus else None
    tokens, how = dataset_tokens(ctx)
    if not tokens:
        r.status, r.message = "SKIP", f"cannot size without a token count: {how}"
        r.figures = {"params": total}
        if mem:
            r.figures["memory"] = mem
        return
    ratio = total / tokens
    rec, rec_params, rec_shape = recommended(tokens)
    chin = 20 * total  # Chinchilla-optimal training tokens for this model
    r.figures = {
        "params": total,
        "params_non_embedding": non_emb,
        "vocab_size": vocab,
        "tokens": round(tokens),
        "tokens_from": how,
        "param_per_token": round(ratio, 4),
        "recommended_model": rec,
        "recommended_params": rec_params,
        "recommended_shape": rec_shape,
        "chinchilla_tokens": chin,
        "chinchilla_epochs": round(chin / tokens, 2),
        "risk": "low",
    }
    r.status = "PASS"
    r.message = (
        f"{total / 1e6:,.2f}M params on ~{tokens / 1e6:,.2f}M tokens: {ratio:.2f} params a token; "
        f"Chinchilla-optimal is {chin / 1e6:,.1f}M tokens ({chin / tokens:,.1f} epochs of this data)"
    )
    if mem:
        r.figures["memory"] = mem
        r.message += "; " + memory_line(mem, hint)
    severe = spec.warn.get("param_per_token_severe")
    if severe is not None and ratio > severe:
        r.status, r.figures["risk"] = "WARN", "extreme"
        r.message = (
            f"{ratio:.1f} params a token (> {severe:g}): extreme overfitting risk; add data "
            f"(augment) or use a smaller model (the recommended size for this much data is {rec})"
        )
    elif (bar := spec.warn.get("param_per_token")) is not None and ratio > bar:
        r.status, r.figures["risk"] = "WARN", "moderate"
        r.message = (
            f"{ratio:.1f} params a token (> {bar:g}): moderate overfitting risk; regularise "
            "hard (weight decay, dropout, early stopping on val loss) or add data"
        )

    if mem and not mem["fits"]:  # the first thing to fix: the run would not start
        before = f"; also {r.message}" if r.status == "WARN" else ""
        r.status = "WARN"
        fits = [
            _config_name(x["parallel"], x["activation_checkpointing"])
            for x in mem["table"]
            if x["fits"]
        ]
        r.message = (
            memory_line(mem, hint)
            + (
                f"; fits: {', '.join(fits)} (train.parallel, train.activation_checkpointing)"
                if fits
                else "; no configuration fits: lower train.batch_size (raise grad_accum to keep the batch), use more GPUs, or a smaller model"
            )
            + before
        )


def memory_line(mem: dict, hint: str | None) -> str:
    where = f"{mem['gpus']} GPU(s) of {mem['gpu_mib'] / 1024:,.0f} GiB" + (
        " (--gpus)" if hint else ""
    )
    return (
        f"~{mem['est_mib'] / 1024:,.1f} GiB a GPU under "
        f"{_config_name(mem['parallel'], mem['activation_checkpointing'])} at batch "
        f"{mem['batch']} x context {mem['context']} on {where}: "
        + ("fits" if mem["fits"] else "does NOT fit")
    )


# -----------------------------------------------------------------------------
# probe: a few real steps of the profile, measured


def _tree_rss(pid: int) -> int:
    """RSS of a process and its descendants; the main process's peak (VmHWM) too."""

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    rss = 0
    for q in procs:
        try:
            rss += q.memory_info().rss
        except psutil.Error:
            pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = max(rss, int(line.split()[1]) * 1024)
    except OSError:
        pass
    return rss


def _gpu_mib(gpu: GpuSampler, pid: int) -> float:
    snap = gpu.sample([pid])
    return sum(d.proc_mem_mib or 0 for d in snap.devices) if snap.available else 0.0


def probe(ctx: Context, steps: int, timeout_s: float, progress: Progress | None = None) -> dict:
    """Run the profile in a subprocess until `steps` step events, then kill it. Returns
    the step events, the run_start, peak memory and the seconds spent before step 1."""

    ctx.logs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".probe-", dir=ctx.logs))
    cmd = trainer_command(ctx.profile_ref or ctx.profile.name, tmp / "run", list(ctx.sets))
    t0 = time.time()
    # CORE_RANK_LOG: the trainer writes ranks/rank-0.jsonl, whose lines carry torch's own
    # peak CUDA memory (NVML's per-process figure reads 0 inside many containers)
    trainer = Trainer.launch(cmd, tmp / "run", env={"CORE_RANK_LOG": "1"})
    fol = EventsFollower(tmp / "run" / "events.jsonl", notify=False)
    gpu = GpuSampler() if ctx.profile.train.device != "cpu" else None
    out: dict[str, Any] = {
        "steps": [],
        "run_start": None,
        "peak_rss": 0,
        "peak_gpu_mib": 0.0,
        "exit": None,
    }
    next_mem = 0.0
    try:
        while time.time() - t0 < timeout_s:
            for e in fol.poll():
                if e.get("type") == "run_start":
                    out["run_start"] = e
                elif e.get("type") == "step":
                    out["steps"].append(e)
                elif e.get("type") == "phase" and progress:
                    progress(0, steps)
            if time.time() >= next_mem:  # VmHWM keeps the peak between looks; a look costs CPU
                next_mem = time.time() + 1.0
                out["peak_rss"] = max(out["peak_rss"], _tree_rss(trainer.pid))
                if gpu is not None:
                    out["peak_gpu_mib"] = max(out["peak_gpu_mib"], _gpu_mib(gpu, trainer.pid))
            if progress and out["steps"]:
                progress(min(steps, len(out["steps"])), steps)
            if len(out["steps"]) >= steps:
                break
            if not trainer.alive():
                out["exit"] = trainer.exit_code
                out["log"] = log_tail(tmp / "run", 8)
                for e in fol.poll():  # what it wrote before it ended
                    if e.get("type") == "step":
                        out["steps"].append(e)
                break
            time.sleep(0.2)  # the probe must not take the CPU it measures
        out["peak_rss"] = max(out["peak_rss"], _tree_rss(trainer.pid))
        out["wall_s"] = time.time() - t0
    finally:
        trainer.kill_group()
        trainer.wait(10)
        out.update(_torch_peaks(tmp / "run"))
        fol.close()
        if gpu is not None:
            gpu.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _torch_peaks(run_dir: Path) -> dict[str, float]:
    """The highest torch.cuda.max_memory_allocated / max_memory_reserved (MiB) the
    probe's trainer wrote to ranks/rank-0.jsonl; none on a CPU."""
    out: dict[str, float] = {}
    for d in read_jsonl(run_dir / "ranks" / "rank-0.jsonl"):  # core/ranklog.py's file
        for key in ("cuda_max_alloc_mib", "cuda_max_reserved_mib"):
            v = d.get(key)
            if isinstance(v, int | float) and v > out.get(key, -1.0):
                out[key] = float(v)
    return out


def probe_peak_mib(res: dict, cuda: bool) -> tuple[float, str]:
    """(peak MiB, what measured it) from the probe's figures. On a GPU: what torch's
    allocator reserved from the device (its allocated peak plus its cache: what the
    next process could not have), else NVML's per-process figure; on a CPU: RSS."""
    if not cuda:
        return res.get("peak_rss", 0) / MIB, "peak RSS"
    reserved = res.get("cuda_max_reserved_mib")
    if isinstance(reserved, int | float) and reserved > 0:
        return float(reserved), "torch.cuda.max_memory_reserved"
    return float(res.get("peak_gpu_mib") or 0.0), "NVML per-process memory"


def judge_memory(r: StepResult, peak_mib: float, free_mib: float, margin: float) -> bool:
    """FAIL the probe when the peak with its margin exceeds the free memory; True if so."""
    if peak_mib * margin <= free_mib:
        return False
    r.status = "FAIL"
    r.message = (
        f"peak memory {peak_mib:,.0f} MiB x {margin:g} margin exceeds the {free_mib:,.0f} MiB "
        "free: lower train.batch_size (raise grad_accum to keep the batch) or data.context, "
        "or set train.activation_checkpointing / train.parallel: fsdp (see the sizing step)"
    )
    return True


def flops_per_token(p: Profile) -> float:
    """The core's own FLOP model (GPT.flops_per_token: 6N plus attention), built on the
    meta device: the same figure the trainer's MFU counts."""
    _, _, vocab = param_counts(p)
    m = _meta_model(vocab, p.data.context, p.model.n_layer, p.model.n_head, p.model.n_embd)
    return float(m.flops_per_token())


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if s else 0.0


def check_probe(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:

    if ctx.profile.train.device == "cuda" and not _gpu_free_mib():
        r.status, r.message = "SKIP", "the profile asks for CUDA and there is no GPU (see gpu)"
        return
    steps = int(spec.params.get("steps", 12))
    skip = int(spec.params.get("warmup_steps", 3))  # the first steps pay for allocation
    margin = float(spec.params.get("memory_margin", 1.2))
    res = probe(ctx, steps + skip, float(spec.params.get("timeout_s", 900)), progress)
    got = res["steps"]
    if len(got) < steps + skip and res["exit"] is not None:
        r.status = "FAIL"
        r.message = (
            f"the profile exited {res['exit']} after {len(got)} step(s) of the probe: "
            + (res.get("log") or "").strip().replace("\n", " | ")[-400:]
        )
        return
    if len(got) <= skip:
        r.status = "FAIL"
        r.message = f"no steps within {res['wall_s']:.0f} s (params.timeout_s): the run is stuck or far too slow"
        return
    start = res["run_start"] or {}
    timed = got[skip:]
    step_ms = _median([e["step_ms"] for e in timed])
    # wall time between steps, not just the step's own time: the loader's wait is in it
    gaps = [(b["t"] - a["t"]) * 1e3 for a, b in zip(got[skip - 1 :], timed, strict=False)]
    wall_ms = max(step_ms, _median(gaps)) if gaps else step_ms
    tps = start.get("tokens_per_step", 0) / (wall_ms / 1e3) if wall_ms else 0.0
    total_steps = int(start.get("total_steps") or 0)
    mfus = [e["mfu"] for e in timed if e.get("mfu") is not None]
    train_s = total_steps * wall_ms / 1e3
    fpt = flops_per_token(ctx.profile)  # the FLOPs the trainer's MFU counts, attention in
    flops_s = fpt * tps  # achieved, every rank together
    tokens = total_steps * start.get("tokens_per_step", 0)
    # an independent second figure: the time at the devices' peak (MFU 100%), a floor
    world_peak = (start.get("peak_flops") or 0) * (start.get("world_size") or 1)
    device = start.get("device") or ctx.profile.train.device
    cuda = "cuda" in str(device)
    peak_mib, peak_from = probe_peak_mib(res, cuda)
    free_mib = _gpu_free_mib() if cuda else psutil.virtual_memory().available / MIB
    r.figures = {
        "device": device,
        "probe_steps": len(timed),
        "step_ms": round(wall_ms, 2),
        "tokens_per_s": round(tps, 1),
        "mfu": round(_median(mfus), 4) if mfus else None,
        "achieved_tflops": round(flops_s / 1e12, 4),
        "flops_per_token": fpt,
        "peak_mem_mib": round(peak_mib, 1),
        "peak_mem_from": peak_from,
        "cuda_max_alloc_mib": res.get("cuda_max_alloc_mib"),
        "cuda_max_reserved_mib": res.get("cuda_max_reserved_mib"),
        "nvml_proc_mib": round(res["peak_gpu_mib"], 1) if cuda else None,
        "free_mem_mib": round(free_mib, 1),
        "total_steps": total_steps,
        "est_train_s": round(train_s, 1),
        "min_train_s_at_peak": round(fpt * tokens / world_peak, 1) if world_peak else None,
        "startup_s": round(got[0]["t"] - res["run_start"]["t"], 2) if res["run_start"] else None,
    }
    r.status = "PASS"
    r.message = (
        f"{wall_ms:,.1f} ms a step, {tps:,.0f} tokens/s on {device}; {total_steps:,} steps take "
        f"~{fmt_estimate(train_s)}; peak memory {peak_mib:,.0f} MiB of {free_mib:,.0f} MiB free"
    )
    if judge_memory(r, peak_mib, free_mib, margin):
        return
    threshold(spec, r, "est_train_s", train_s, False, "a long run")


def _gpu_free_mib() -> float:

    g = GpuSampler()
    snap = g.sample()
    g.close()
    free = [(d.mem_total_mib or 0) - (d.mem_used_mib or 0) for d in snap.devices]
    return min(free) if free else 0.0


# -----------------------------------------------------------------------------
# gpu: NVML devices; no GPU is fine for a CPU profile


def check_gpu(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:

    g = GpuSampler()
    snap = g.sample()
    g.close()
    device = ctx.profile.train.device
    if not snap.available:
        r.figures = {"devices": 0, "reason": snap.reason}
        if device == "cuda":
            r.status = "FAIL"
            r.message = (
                f"the profile asks for train.device=cuda, but there is no GPU: {snap.reason}"
            )
        else:
            r.status = "PASS"
            r.message = f"no GPU ({snap.reason}): the profile runs on CPU"
        return
    free = [(d.mem_total_mib or 0) - (d.mem_used_mib or 0) for d in snap.devices if d.mem_total_mib]
    r.figures = {
        "devices": len(snap.devices),
        "driver": snap.driver,
        "names": [d.name for d in snap.devices],
        "free_mib": free,
    }
    r.status = "PASS"
    r.message = f"{len(snap.devices)} GPU(s), driver {snap.driver}; free MiB: " + ", ".join(
        f"{f:,.0f}" for f in free
    )
    if free:
        threshold(spec, r, "free_mib", min(free), True, "too little free GPU memory")


# -----------------------------------------------------------------------------
# disk: room for the checkpoints the run keeps, and the data cache


def check_disk(spec: StepSpec, ctx: Context, r: StepResult, progress: Progress) -> None:
    p = ctx.profile
    where = ctx.logs if ctx.logs.exists() else Path(".")
    free = shutil.disk_usage(where).free
    ckpt = checkpoint_bytes(p)
    cache = 0
    if p.data.source == "files":
        from core.data import expand_paths  # lazy: loads torch (seconds); only this path needs it

        # token caches hold at most ~1 uint16/uint32 per byte of text: the text's size bounds them
        cache = sum(f.stat().st_size for f in expand_paths(list(p.data.paths)))
    keep = int(spec.params.get("extra_checkpoints", 3))
    need = (p.checkpoint.keep_last + keep) * ckpt + cache
    mib = 2**20
    r.figures = {
        "free_mib": round(free / mib, 1),
        "need_mib": round(need / mib, 1),
        "checkpoint_mib": round(ckpt / mib, 1),
        "cache_mib": round(cache / mib, 1),
        "headroom": round(free / need, 2) if need else None,
    }
    if free < need:
        r.status = "FAIL"
        r.message = (
            f"{free / mib:,.0f} MiB free under {where.resolve()}, the run needs "
            f"{need / mib:,.0f} MiB ({p.checkpoint.keep_last} + {keep} checkpoints of "
            f"{ckpt / mib:,.1f} MiB, plus the data cache); free space or lower checkpoint.keep_last"
        )
        return
    r.status = "PASS"
    r.message = f"{free / mib:,.0f} MiB free, {need / mib:,.0f} MiB needed"
    threshold(spec, r, "headroom", free / need, True, "little room beyond what the run needs")


RUN_KINDS: dict[str, Kind] = {
    "sizing": Kind(check_sizing, figures=("param_per_token", "param_per_token_severe")),
    "probe": Kind(
        check_probe,
        params=("steps", "warmup_steps", "memory_margin", "timeout_s"),
        figures=("est_train_s",),
    ),
    "disk": Kind(check_disk, params=("extra_checkpoints",), figures=("headroom",)),
    "gpu": Kind(check_gpu, figures=("free_mib",)),
}
