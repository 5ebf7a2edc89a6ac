"""`cockpit validate PROFILE`: check a profile without running it, and say what it
would train (model, data, budget, gate)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from cockpit.checks.cost import param_counts
from cockpit.fmt import fmt_estimate
from core.config import ProfileError, load_profile

if TYPE_CHECKING:
    from argparse import Namespace

    from core.config import Profile


def cmd_validate(args: Namespace) -> int:
    try:
        p = load_profile(args.profile, args.set)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from core.optim import support_problems  # lazy: imports torch (seconds)

    unsupported = support_problems(p)
    if unsupported:  # valid keys, but this torch cannot run them: say so now, not at step 1
        print(f"error: {args.profile}: this torch cannot run the profile as set:", file=sys.stderr)
        for key, why in unsupported:
            print(f"  {key}: {why}", file=sys.stderr)
        return 2
    total, non_emb, vocab = param_counts(p)
    t = p.train
    budget = f"{t.max_steps} steps" if t.max_steps else f"{t.epochs} epochs"
    tokens_per_step = t.batch_size * t.grad_accum * p.data.context
    print(f"{args.profile}: valid profile '{p.name}'")
    print(
        f"  model    {p.model.n_layer}L x {p.model.n_head}H x {p.model.n_embd}d, vocab {vocab}: "
        f"{total:,} parameters ({non_emb:,} non-embedding)"
    )
    print(
        f"  data     {p.data.source}, context {p.data.context}, stride {p.data.stride}"
        + (f", paths {p.data.paths}" if p.data.source == "files" else "")
    )
    print(
        f"  train    {budget}, {tokens_per_step:,} tokens/step, lr {t.lr:g}, device {t.device}, dtype {t.dtype}"
    )
    sharding = (
        f" (reshard after forward: {'yes, ZeRO-3' if t.reshard_after_forward else 'no, ZeRO-2'})"
    )
    optimizer = (
        f"muon (lr {t.muon_lr:g}, momentum {t.muon_momentum:g}) for the block matrices, "
        f"adamw (lr {t.lr:g}) for the rest"
        if t.optimizer == "muon"
        else f"adamw (lr {t.lr:g})"
    )
    print(
        f"  scale    {t.parallel}{sharding if t.parallel == 'fsdp' else ''}, activation "
        f"checkpointing {'on' if t.activation_checkpointing else 'off'}; {optimizer}"
    )
    if p.gate.metrics:
        print("  gate     " + ", ".join(f"{k} >= {v:g}" for k, v in p.gate.metrics.items()))
    val_s, gen_s = eval_estimate(p, vocab)
    print(
        f"  eval     about {fmt_estimate(val_s + gen_s)} each on this machine's CPU "
        f"(val loss {fmt_estimate(val_s)}, generation {fmt_estimate(gen_s)}; from the shapes)"
    )
    return 0


def eval_estimate(p: Profile, vocab: int) -> tuple[float, float]:
    """(val loss s, generation s) of one eval: its FLOPs at this CPU's matmul rate
    (timed for 0.2 s at the model's width) plus a fixed cost per decode step."""
    import torch  # lazy: loads torch (seconds); only this path needs it

    from core.evaluate import eval_seconds, eval_work  # lazy: imports torch
    from core.model import GPT, GPTConfig  # lazy: imports torch

    m = p.model
    with torch.device("meta"):
        model = GPT(GPTConfig(vocab, p.data.context, m.n_layer, m.n_head, m.n_embd))
    fwd = model.flops_per_token() / 3  # forward only: a third of training's 6N + attention
    a, b = torch.randn(512, m.n_embd), torch.randn(m.n_embd, 4 * m.n_embd)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.2:
        a @ b
        reps += 1
    rate = reps * 2 * a.numel() * b.size(1) / (time.perf_counter() - t0)
    return eval_seconds(eval_work(p, fwd, m.n_layer), rate)
