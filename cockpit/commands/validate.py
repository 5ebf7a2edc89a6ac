"""`cockpit validate PROFILE`: check a profile without running it, and say what it
would train (model, data, budget, gate)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from cockpit.checks.cost import param_counts
from core.config import ProfileError, load_profile

if TYPE_CHECKING:
    from argparse import Namespace


def cmd_validate(args: Namespace) -> int:
    try:
        p = load_profile(args.profile, args.set)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
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
    if p.gate.metrics:
        print("  gate     " + ", ".join(f"{k} >= {v:g}" for k, v in p.gate.metrics.items()))
    return 0
