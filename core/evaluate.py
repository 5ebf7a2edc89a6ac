"""Evaluation: val loss and perplexity, gate metrics, samples.

Nothing here touches the global RNG (sampling uses its own seeded generator),
so an eval never changes the training trajectory and resume stays exact.
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from core import events as E
from core import walks as W
from core.config import Profile
from core.data import EOT
from core.validators import Verdict, validator_for
from core.validators import python_is_valid as python_is_valid  # moved; old import path kept

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from core.data import TokenWindows, WalkWindows
    from core.model import GPT
    from core.runstate import RunProgress


@dataclass
class EvalResult:
    val_loss: float
    metrics: dict[str, float]
    samples: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole eval

    @property
    def val_ppl(self) -> float:
        return math.exp(min(self.val_loss, 50.0))


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager[object]:
    if device.type == "cuda" and dtype == torch.bfloat16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def val_loss(
    model: GPT,
    val: TokenWindows | WalkWindows,
    p: Profile,
    device: torch.device,
    dtype: torch.dtype,
    rank: int = 0,
    world: int = 1,
) -> float:
    """Mean loss per token over `val_batches` x batch_size windows spread evenly
    over the val windows: the same windows at any world size, so curves from
    different launches compare. Under DDP each rank takes every world-th chunk
    of batch_size windows and the token-weighted sums are all-reduced (a short
    last chunk weighs what its tokens weigh): every rank must call."""
    B = p.train.batch_size
    n = min(len(val), p.eval.val_batches * B)
    idx = np.linspace(0, len(val) - 1, n).round().astype(np.int64)
    loss_sum, n_tokens = 0.0, 0
    for i in range(rank * B, n, B * world):
        rows = val.batch(idx[i : i + B]).to(device)
        with autocast(device, dtype):
            loss = model(rows[:, :-1], rows[:, 1:])
        loss_sum += loss.item() * rows[:, 1:].numel()  # the model's loss is a mean per token
        n_tokens += rows[:, 1:].numel()
    if world > 1:
        tot = torch.tensor([loss_sum, n_tokens], dtype=torch.float64, device=device)
        dist.all_reduce(tot)
        loss_sum, n_tokens = float(tot[0]), int(tot[1])
    return loss_sum / n_tokens


@torch.no_grad()
def gate_walks(
    model: GPT,
    graph: W.Graph,
    val_walks: torch.Tensor,
    p: Profile,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[dict, list[dict]]:
    """Greedy generation from the prompts of held-out walks, scored."""
    w = p.data.walks
    prompts = val_walks[: w.eval_walks, : w.prompt_len]
    n_new = min(w.eval_nodes, val_walks.size(1) - w.prompt_len)
    outs = []
    for i in range(0, len(prompts), 500):
        with autocast(device, dtype):
            outs.append(
                model.generate(prompts[i : i + 500].to(device), n_new, temperature=0.0).cpu()
            )
    gen = torch.cat(outs).numpy()
    metrics = W.score_walks(graph, gen, w.prompt_len)
    samples = [
        {
            "prompt": W.format_walk(graph, gen[j, : w.prompt_len]),
            "text": W.format_walk(graph, gen[j, w.prompt_len :]),
            "valid": W.walk_is_valid(graph, gen[j], w.prompt_len),
        }
        for j in range(min(3, len(gen)))
    ]
    return metrics, samples


@torch.no_grad()
def text_samples(
    model: GPT,
    tok: Tokenizer | None,
    p: Profile,
    device: torch.device,
    dtype: torch.dtype,
    step: int,
) -> tuple[dict, list[dict]]:
    s = p.eval.samples
    if not s.prompts:
        return {}, []
    assert tok is not None  # text data carries its tokenizer
    g = torch.Generator(device=device).manual_seed(p.train.seed * 7919 + step)
    judge = validator_for(p.eval.validator, p.eval.json_schema)
    samples: list[dict] = []
    verdicts: list[Verdict] = []
    eot = tok.token_to_id(EOT)
    for prompt in s.prompts:
        ids = tok.encode(prompt, add_special_tokens=False).ids or [0]
        x = torch.tensor([ids] * s.per_prompt, dtype=torch.long, device=device)
        with autocast(device, dtype):
            y = model.generate(
                x, s.max_new_tokens, temperature=s.temperature, top_k=50, generator=g
            )
        for row in y[:, len(ids) :].tolist():
            # cut at the document's end before decoding: decode() drops special tokens,
            # so after it the next document would read as this one's continuation
            if eot is not None and eot in row:
                row = row[: row.index(eot)]
            text = tok.decode(row)
            verdict = judge.judge(prompt, text) if judge else None
            verdicts += [verdict] if verdict else []
            samples.append(
                {"prompt": prompt, "text": text, "valid": verdict.valid if verdict else None}
            )
    metrics: dict = judge.rates(verdicts) if judge else {}
    return metrics, samples


def evaluate(
    model: GPT,
    val: TokenWindows | WalkWindows,
    p: Profile,
    device: torch.device,
    dtype: torch.dtype,
    step: int,
    graph: W.Graph | None = None,
    val_walks: torch.Tensor | None = None,
    tok: Tokenizer | None = None,
    rank: int = 0,
    world: int = 1,
    sink: E.Sink | None = None,
) -> EvalResult:
    """Val loss on every rank (shared out, see val_loss); gate metrics and samples
    on rank 0 only (the other ranks get empty ones and rank 0's verdict). A phase
    event opens each part, so a watcher sees which one is running."""
    sink = sink or E.NullSink()
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        sink.write(E.Phase(name="eval val loss", done=0, total=2))
        vl = val_loss(model, val, p, device, dtype, rank, world)
        metrics: dict = {}
        samples: list[dict] = []
        if rank == 0 and (graph is not None or p.eval.samples.prompts):
            sink.write(E.Phase(name="eval generation", done=1, total=2))
        if rank == 0 and graph is not None:
            assert val_walks is not None  # walks data carries both
            metrics, samples = gate_walks(model, graph, val_walks, p, device, dtype)
        elif rank == 0:
            metrics, samples = text_samples(model, tok, p, device, dtype, step)
    finally:
        model.train(was_training)
    return EvalResult(vl, metrics, samples, time.perf_counter() - t0)


def gate_check(p: Profile, result: EvalResult) -> tuple[bool, dict[str, float]]:
    """(passed, the metrics the gate names). No gate metrics: never passes."""
    figures = dict(result.metrics, val_loss=result.val_loss, val_ppl=result.val_ppl)
    named = {k: figures[k] for k in p.gate.metrics}
    passed = bool(named) and all(figures[k] >= thr for k, thr in p.gate.metrics.items())
    return passed, named


def record_eval(
    r: EvalResult, prog: RunProgress, p: Profile, sink: E.Sink
) -> tuple[str | None, bool, str]:
    """Fold one eval into the run's progress (curves, early-stopping state, gate)
    and its events. Returns (a status that ends the run or None, whether val
    improved, the one-line summary to print)."""
    prog.curves["val_loss"].append(r.val_loss)
    prog.curves["eval_step"].append(prog.step)
    for k, v in r.metrics.items():
        prog.curves.setdefault(k, []).append(v)
    sink.write(
        E.Eval(
            step=prog.step,
            epoch=prog.epoch,
            val_loss=r.val_loss,
            val_ppl=r.val_ppl,
            metrics=r.metrics,
            seconds=r.seconds,
        )
    )
    for s in r.samples:
        sink.write(E.Sample(step=prog.step, **s))
    improved = math.isfinite(r.val_loss) and r.val_loss < prog.best_val - p.eval.min_delta
    if improved:
        prog.best_val, prog.bad_evals = r.val_loss, 0
    else:
        prog.bad_evals += 1
    line = f"eval step {prog.step} epoch {prog.epoch} | val {r.val_loss:.4f} ppl {r.val_ppl:.2f}"
    line += "".join(f" | {k} {v:.3f}" for k, v in r.metrics.items())
    line += f" | {r.seconds:.1f}s"
    status = None
    if p.gate.metrics:
        passed, named = gate_check(p, r)
        prog.gate = {
            "step": prog.step,
            "passed": passed,
            "metrics": named,
            "thresholds": dict(p.gate.metrics),
        }
        sink.write(
            E.Gate(step=prog.step, passed=passed, metrics=named, thresholds=dict(p.gate.metrics))
        )
        line += f" | gate {'PASSED' if passed else 'not yet'}"
        if passed and p.gate.stop_on_pass:
            status = "gate_passed"
    if status is None and p.eval.patience and prog.bad_evals >= p.eval.patience:
        status = "early_stopped"
    return status, improved, line


# -----------------------------------------------------------------------------
# what one eval costs, from the shapes

# measured on 2 CPU cores (4L x 256d, context 256; 2L x 128d, context 32): a forward
# reaches about 0.4 of a bare matmul's rate, and a decode step costs about 1 ms a
# layer beyond its FLOPs
FORWARD_EFFICIENCY = 0.4
DECODE_STEP_S_PER_LAYER = 1e-3


def eval_work(p: Profile, fwd_flops_per_token: float, n_layer: int) -> dict[str, float]:
    """One eval's work: forward FLOPs of the val loss and of generation (with the
    KV cache each generated token costs one token's forward), and the sequential
    decode steps, whose fixed cost dominates a small model's generation."""
    B, T = p.train.batch_size, p.data.context
    val_tokens = p.eval.val_batches * B * T  # at most: a small val split has fewer windows
    if p.data.source == "walks":
        w = p.data.walks
        n_new = min(w.eval_nodes, T + 1 - w.prompt_len)
        gen_tokens = w.eval_walks * (w.prompt_len + n_new)
        steps = n_new * math.ceil(w.eval_walks / 500)
    else:
        s = p.eval.samples
        gen_tokens = len(s.prompts) * s.per_prompt * s.max_new_tokens
        steps = len(s.prompts) * s.max_new_tokens
    return {
        "val_flops": val_tokens * fwd_flops_per_token,
        "gen_flops": gen_tokens * fwd_flops_per_token,
        "decode_steps": steps * n_layer,
    }


def eval_seconds(work: dict[str, float], flops_per_s: float) -> tuple[float, float]:
    """(val loss s, generation s) given a bare matmul's rate on the device."""
    rate = flops_per_s * FORWARD_EFFICIENCY
    val_s = work["val_flops"] / rate
    gen_s = work["gen_flops"] / rate + work["decode_steps"] * DECODE_STEP_S_PER_LAYER
    return val_s, gen_s
