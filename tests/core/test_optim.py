"""core/optim.py and the scale keys: which parameters Muon takes, the schedule over both
optimizers, an optimizer's state saved and restored float for float, per-block activation
checkpointing giving the same gradients, and the clear word when this torch lacks a piece.
In-process and small: each test takes well under a second."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from core.config import Profile, ProfileError, TrainConfig, load_profile
from core.model import GPT, GPTConfig
from core.optim import Optimizers, build_optimizers, split_params, support_problems
from core.runtime import checkpoint_blocks
from tests.conftest import REPO


def tiny(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=40, context=16, n_layer=2, n_head=2, n_embd=32))


def profile(**train: object) -> Profile:
    return Profile(train=TrainConfig(**train))  # type: ignore[arg-type]


def batches(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 40, (4, 17), generator=g) for _ in range(n)]


def train(model: GPT, opt: Optimizers, xs: list[torch.Tensor], lr: float) -> list[float]:
    out = []
    for x in xs:
        opt.set_lr(lr)
        loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
        out.append(loss.item())
    return out


def test_muon_takes_the_block_matrices_and_adamw_the_embedding():
    model = tiny()
    muon, adamw = split_params(model)
    names = {id(q): n for n, q in model.named_parameters()}
    assert sorted(names[id(q)] for q in muon) == sorted(
        f"blocks.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    )
    assert [names[id(q)] for q in adamw] == ["wte.weight"]  # the tied head is the same tensor
    # wrapped for activation checkpointing, the blocks' matrices are still Muon's
    checkpoint_blocks(model)
    assert len(split_params(model)[0]) == 8


def test_the_schedule_keeps_each_optimizers_share_of_the_lr():
    opt = build_optimizers(tiny(), profile(optimizer="muon", lr=1e-3, muon_lr=0.02))
    opt.set_lr(5e-4)  # half way down the schedule
    lrs = {k: [g["lr"] for g in o.param_groups] for k, o in opt.named.items()}
    assert lrs == {"adamw": [5e-4], "muon": [pytest.approx(0.01)]}
    adamw_only = build_optimizers(tiny(), profile(lr=1e-3))
    adamw_only.set_lr(3.3e-4)
    assert [g["lr"] for g in adamw_only.param_groups] == [3.3e-4]  # the very float given


@pytest.mark.parametrize("kind", ["adamw", "muon"])
def test_a_restored_optimizer_continues_float_for_float(kind):
    """Interrupted after 3 steps (model and optimizer state through torch.save, as a
    checkpoint holds them) and resumed equals 6 uninterrupted steps, bit for bit."""
    p = profile(optimizer=kind, lr=3e-3)
    xs = batches(6)
    a = tiny()
    straight = train(a, build_optimizers(a, p), xs, 3e-3)

    b = tiny()
    opt_b = build_optimizers(b, p)
    first = train(b, opt_b, xs[:3], 3e-3)
    state = copy.deepcopy({"model": b.state_dict(), "optimizer": opt_b.state_dict()})
    c = tiny(seed=99)  # another init: everything must come from the state
    c.load_state_dict(state["model"])
    opt_c = build_optimizers(c, p)
    opt_c.load_state_dict(state["optimizer"])
    assert first + train(c, opt_c, xs[3:], 3e-3) == straight
    if kind == "muon":  # Muon's momentum buffers are part of what was saved
        assert any("momentum_buffer" in s for s in opt_b.named["muon"].state.values())


def test_an_optimizer_state_of_the_other_kind_is_refused_with_the_key_to_change():
    muon_state = build_optimizers(tiny(), profile(optimizer="muon")).state_dict()
    with pytest.raises(ValueError, match="train.optimizer: muon"):
        build_optimizers(tiny(), profile()).load_state_dict(muon_state)
    adamw_state = build_optimizers(tiny(), profile()).state_dict()
    assert "param_groups" in adamw_state  # AdamW alone: the layout older checkpoints hold
    with pytest.raises(ValueError, match="train.optimizer: adamw"):
        build_optimizers(tiny(), profile(optimizer="muon")).load_state_dict(adamw_state)


def test_activation_checkpointing_gives_the_same_losses_and_state_dict_names():
    p = profile(lr=3e-3)
    xs = batches(4)
    a, b = tiny(), tiny()
    checkpoint_blocks(b)
    assert list(b.state_dict()) == list(a.state_dict())  # checkpoints resume either way
    assert train(a, build_optimizers(a, p), xs, 3e-3) == train(b, build_optimizers(b, p), xs, 3e-3)


def test_bad_scale_values_name_the_key_and_the_choices():
    with pytest.raises(ProfileError) as e:
        load_profile(
            "demo-walks",
            [
                "train.parallel=zero3",
                "train.optimizer=sgd",
                "train.muon_lr=0",
                "train.muon_momentum=1",
            ],
        )
    text = str(e.value)
    assert "train.parallel: expected ddp or fsdp, got 'zero3'" in text
    assert "train.optimizer: expected adamw or muon, got 'sgd'" in text
    assert "train.muon_lr: must be greater than 0" in text
    assert "train.muon_momentum: must be in [0, 1)" in text


def test_what_an_older_torch_cannot_run_is_said_with_the_key_and_the_fix():
    p = profile(optimizer="muon", parallel="fsdp")
    assert support_problems(p) == []  # this torch (2.13) has both
    old = support_problems(p, has_muon=False, has_fully_shard=False, torch_version="2.5.1")
    assert [k for k, _ in old] == ["train.optimizer", "train.parallel"]
    muon, fsdp = (why for _, why in old)
    assert "torch.optim.Muon" in muon and "2.5.1" in muon and "torch>=2.9" in muon
    assert "train.optimizer: adamw" in muon
    assert "fully_shard" in fsdp and "torch>=2.6" in fsdp and "train.parallel: ddp" in fsdp
    assert support_problems(profile(), has_muon=False, has_fully_shard=False) == []


@pytest.mark.heavy  # a subprocess that imports torch: a few seconds
def test_validate_refuses_muon_on_a_torch_without_it_in_one_paragraph(tmp_path):
    """The real `cockpit validate`, in a Python whose torch lacks torch.optim.Muon (as
    torch < 2.9 does): exit 2, the key, the torch it needs and the way out; no traceback."""
    code = (
        "import sys, torch; del torch.optim.Muon; from cockpit.cli import main; "
        "sys.exit(main(['validate', 'demo-walks', '--set', 'train.optimizer=muon']))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "train.optimizer: muon needs torch.optim.Muon" in r.stderr
    assert "Install torch>=2.9, or set train.optimizer: adamw" in r.stderr
