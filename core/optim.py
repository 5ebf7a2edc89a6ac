"""The optimizer the loop steps, built in one place: AdamW alone (`train.optimizer: adamw`),
or Muon for the 2-D matrices inside the blocks and AdamW for the rest (`muon`), as nanochat
splits them; and what this torch supports of the profile's parallelism and optimizer.

Both kinds behave as one optimizer to the loop and to checkpoints: `step`, `zero_grad`,
`set_lr` (the schedule, applied to every group in proportion to its own base lr) and
`state_dict`/`load_state_dict`, so a single-file checkpoint saves and resumes either."""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn as nn

from core.config import Profile
from core.model import param_groups

MUON_SINCE = "2.9"
"the torch release that added torch.optim.Muon"
FSDP2_SINCE = "2.6"
"the torch release that made torch.distributed.fsdp.fully_shard public"


# -----------------------------------------------------------------------------
# which parameters Muon takes


def is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    """A 2-D weight inside a transformer block (attention qkv/proj, MLP fc/proj): Muon's.
    The embedding, the (tied) head and any gain or bias stay with AdamW, as nanochat and
    Muon's authors do: orthogonalised updates suit hidden linear maps, not lookups."""
    return param.ndim == 2 and (name.startswith("blocks.") or ".blocks." in name)


def split_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(Muon's, AdamW's): every trainable parameter in exactly one (tied weights once)."""
    muon: list[nn.Parameter] = []
    adamw: list[nn.Parameter] = []
    for name, q in model.named_parameters():  # named_parameters yields a tied weight once
        if q.requires_grad:
            (muon if is_hidden_matrix(name, q) else adamw).append(q)
    return muon, adamw


# -----------------------------------------------------------------------------
# the optimizer the loop steps


class Optimizers:
    """One or two torch optimizers stepped as one. `set_lr(lr)` takes the schedule's lr
    for `train.lr` and gives each group lr x (its base lr / train.lr): Muon's groups keep
    their own ratio (train.muon_lr / train.lr) through warmup and decay."""

    def __init__(self, named: dict[str, torch.optim.Optimizer], ref_lr: float):
        self.named = named
        self.ref_lr = ref_lr
        # base lrs kept here, not in the groups: a group's keys are saved and loaded with
        # the state, and checkpoints from before this class hold AdamW's groups as they were
        self.base = {k: [g["lr"] for g in o.param_groups] for k, o in named.items()}

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.named.values() for g in o.param_groups]

    def set_lr(self, lr: float) -> None:
        for k, o in self.named.items():
            for g, base in zip(o.param_groups, self.base[k], strict=True):
                # the same float as the schedule for a group at train.lr (bit-identical curves)
                g["lr"] = lr if base == self.ref_lr else lr * (base / self.ref_lr)

    def step(self) -> None:
        for o in self.named.values():
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.named.values():
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """AdamW alone: its own state dict, the layout every checkpoint had before Muon
        (so those still resume); otherwise {name: state dict} for each optimizer."""
        if list(self.named) == ["adamw"]:
            return self.named["adamw"].state_dict()
        return {k: o.state_dict() for k, o in self.named.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(self.named) == ["adamw"]:
            if "adamw" in state and "param_groups" not in state:
                raise ValueError(
                    "the checkpoint holds a Muon + AdamW optimizer state and this run uses "
                    "AdamW alone (train.optimizer: adamw); resume with train.optimizer: muon"
                )
            self.named["adamw"].load_state_dict(state)
            return
        if "param_groups" in state:
            raise ValueError(
                "the checkpoint holds an AdamW-only optimizer state and this run uses Muon "
                "(train.optimizer: muon); resume with train.optimizer: adamw"
            )
        for k, o in self.named.items():
            o.load_state_dict(state[k])


def build_optimizers(model: nn.Module, p: Profile) -> Optimizers:
    """The profile's optimizer over `model`'s parameters. Build it after the model is
    sharded (fully_shard replaces the parameters with DTensors) and wrapped for
    activation checkpointing."""
    t = p.train
    fused = not any(_is_dtensor(q) for q in model.parameters())  # fused AdamW: plain tensors
    if t.optimizer == "adamw":
        adamw = torch.optim.AdamW(
            param_groups(model, t.weight_decay),
            lr=t.lr,
            betas=(0.9, 0.95),
            fused=fused,
            foreach=None if fused else True,
        )
        return Optimizers({"adamw": adamw}, t.lr)
    muon_params, adamw_params = split_params(model)
    decay = [q for q in adamw_params if q.ndim >= 2]
    no_decay = [q for q in adamw_params if q.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": t.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    adamw = torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=t.lr,
        betas=(0.9, 0.95),
        fused=fused,
        foreach=None if fused else True,
    )
    muon = torch.optim.Muon(  # torch >= 2.9: support_problems says so before a run
        muon_params,
        lr=t.muon_lr,
        momentum=t.muon_momentum,
        nesterov=True,
        weight_decay=t.weight_decay,
        adjust_lr_fn="original",  # Keller Jordan's sqrt(max(1, rows/cols)), as nanochat
    )
    return Optimizers({"adamw": adamw, "muon": muon}, t.lr)


def _is_dtensor(q: torch.Tensor) -> bool:
    dtensor = sys.modules.get("torch.distributed.tensor")  # not imported: no DTensor exists
    return dtensor is not None and isinstance(q, dtensor.DTensor)


# -----------------------------------------------------------------------------
# what this torch supports


def support_problems(
    p: Profile,
    has_muon: bool | None = None,
    has_fully_shard: bool | None = None,
    torch_version: str | None = None,
) -> list[tuple[str, str]]:
    """(key, one paragraph) for each setting this torch cannot run, so `cockpit validate`
    and the trainer say so before a run starts, not at its first step. The keyword
    arguments stand in for this torch's answers (tests ask about other releases)."""
    version = torch_version or str(torch.__version__).split("+")[0]
    if has_muon is None:
        has_muon = hasattr(torch.optim, "Muon")
    if has_fully_shard is None:
        try:
            from torch.distributed.fsdp import fully_shard  # noqa: F401

            has_fully_shard = torch.distributed.is_available()
        except ImportError:
            has_fully_shard = False
    t = p.train
    out = []
    if t.optimizer == "muon" and not has_muon:
        out.append((
            "train.optimizer",
            f"muon needs torch.optim.Muon, which this torch ({version}) does not have (it came "
            f"in torch {MUON_SINCE}). Install torch>={MUON_SINCE}, or set train.optimizer: "
            "adamw (train.muon_lr and train.muon_momentum are then unused).",
        ))  # fmt: skip
    if t.parallel == "fsdp" and not has_fully_shard:
        extra = (
            " With train.optimizer: muon as well, the Muon matrices are sharded DTensors, so "
            "both need that torch."
            if t.optimizer == "muon"
            else ""
        )
        out.append((
            "train.parallel",
            f"fsdp needs torch.distributed.fsdp.fully_shard (FSDP2), which this torch "
            f"({version}) does not have (public since torch {FSDP2_SINCE}, and it needs "
            f"torch.distributed). Install torch>={FSDP2_SINCE}, or set train.parallel: ddp "
            f"(every rank then holds the whole model and optimizer).{extra}",
        ))  # fmt: skip
    return out
