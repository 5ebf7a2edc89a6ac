"""The engine keeps what it promises: the best weights are saved when val improves,
run.yaml's dtype is the dtype the forward computes in, every trainable parameter is
optimized, and a resume in another batch shape says so and keeps its place in the epoch."""

import json
import sys

import pytest
import torch
import yaml

from core import checkpoint as C
from core.model import GPT, GPTConfig, param_groups
from tests.conftest import REPO, TINY_WALKS, events, result, run_core, sets

# --- the best weights are saved when val improves, whatever the checkpoint cadence


@pytest.mark.slow
@pytest.mark.parametrize("ckpt_every", ["null", "4"], ids=["never", "every-4"])
def test_best_weights_are_saved_when_val_improves(ckpt_every, tmp_path):
    """Eval every 3 steps, checkpoints never (or every 4): a learning rate of ~0 makes the
    first eval the only improvement, and patience ends the run two evals later, so the
    best is neither a checkpoint step nor the final one."""
    rd = tmp_path / "run"
    cfg = TINY_WALKS + [
        "train.lr=1e-9",
        "train.min_lr=0",
        "train.max_steps=500",
        "train.epochs=null",
        "eval.every_steps=3",
        "eval.every_epoch=false",
        "eval.patience=2",
        "gate.metrics={}",
        "checkpoint.every_epoch=false",
        f"checkpoint.every_steps={ckpt_every}",
        # enough to keep them all: which of equal val losses retention keeps is its own
        # rule (the newest; tests/core/test_checkpoint.py), not what this test is about
        "checkpoint.keep_last=4",
    ]
    run_core("--run-dir", str(rd), *sets(*cfg), check_rc=0)
    res = result(rd)
    assert res["status"] == "early_stopped" and res["summary"]["steps"] == 9
    val = res["curves"]["val_loss"]
    assert res["curves"]["eval_step"] == [3, 6, 9] and all(v >= val[0] - 1e-3 for v in val)
    best = rd / "checkpoints" / C.ckpt_name(3)
    assert best.exists(), sorted(p.name for p in (rd / "checkpoints").iterdir())
    assert C.verify(best, deep=True) is None
    side = C.read_sidecar(best)
    assert "best" in side["tags"] and side["val_loss"] == val[0]
    saved = [e for e in events(rd) if e["type"] == "checkpoint"]
    assert [e["step"] for e in saved if "best" in e["tags"]] == [3]
    assert "final" in C.read_sidecar(C.latest(rd / "checkpoints"))["tags"]


# --- run.yaml's dtype is the dtype of the arithmetic

# Runs the trainer with a global forward hook that records the dtype of every
# Linear's output: what the matmuls actually computed in.
PROBE = """
import json, sys, torch
seen = set()
def hook(mod, args, out):
    if isinstance(mod, torch.nn.Linear):
        seen.add(str(out.dtype).removeprefix("torch."))
torch.nn.modules.module.register_module_forward_hook(hook)
from core.train import main
rc = main(sys.argv[2:])
open(sys.argv[1], "w").write(json.dumps(sorted(seen)))
sys.exit(rc)
"""


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "auto"])
def test_run_yaml_dtype_is_the_dtype_the_forward_computes_in(dtype, tmp_path):
    import subprocess

    rd, seen = tmp_path / "run", tmp_path / "seen.json"
    cfg = TINY_WALKS + [
        "train.device=cpu",
        f"train.dtype={dtype}",
        "train.max_steps=2",
        "train.epochs=null",
        "eval.every_epoch=false",
        "gate.metrics={}",
    ]
    r = subprocess.run(
        [sys.executable, "-c", PROBE, str(seen), "--run-dir", str(rd), *sets(*cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    computed = json.loads(seen.read_text())
    env = yaml.safe_load((rd / "run.yaml").read_text())["environment"]
    assert computed == [env["dtype"]], f"run.yaml says {env['dtype']}, matmuls ran in {computed}"
    start = next(e for e in events(rd) if e["type"] == "run_start")
    assert start["dtype"] == env["dtype"]
    # the MFU peak is measured in the same dtype
    assert f"{env['dtype']} matmul" in env["peak_flops_source"]
    warned = [e for e in events(rd) if e["type"] == "alert" and e["code"] == "dtype_fallback"]
    if dtype == "bfloat16":  # asked for and not given: said, on stdout and as an alert
        assert warned and warned[0]["level"] == "warn" and "float32" in warned[0]["message"]
        assert "warning: train.dtype bfloat16" in r.stdout
    else:
        assert not warned


# --- every trainable parameter is optimized, exactly once


def _tiny_gpt() -> GPT:
    return GPT(GPTConfig(vocab_size=33, context=16, n_layer=2, n_head=2, n_embd=32))


def _check_groups(model: torch.nn.Module, wd: float) -> list[dict]:
    groups = param_groups(model, wd)
    ids = [id(q) for g in groups for q in g["params"]]
    trainable = [q for q in model.parameters() if q.requires_grad]
    assert sorted(ids) == sorted(id(q) for q in trainable), "each trainable parameter once"
    for g in groups:
        for q in g["params"]:  # matrices decay; vectors (gains, biases) do not
            assert g["weight_decay"] == (wd if q.dim() >= 2 else 0.0)
    opt = torch.optim.AdamW(groups, lr=1e-3)  # and AdamW takes the groups as they are
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable)
    return groups


def test_every_trainable_parameter_is_in_the_optimizer_exactly_once():
    model = _tiny_gpt()
    assert model.lm_head.weight is model.wte.weight  # tied: one parameter, listed once
    _check_groups(model, 0.1)


def test_one_dimensional_parameters_get_a_no_decay_group():
    model = _tiny_gpt()
    # a variant with learnable norm gains and a bias, as many GPTs have
    for b in model.blocks:
        b.gain = torch.nn.Parameter(torch.ones(32))
    model.blocks[0].mlp.fc.bias = torch.nn.Parameter(torch.zeros(128))
    model.blocks[1].frozen = torch.nn.Parameter(torch.ones(32, 32), requires_grad=False)
    groups = _check_groups(model, 0.1)
    no_decay = next(g for g in groups if g["weight_decay"] == 0.0)
    assert len(no_decay["params"]) == 3


# --- resuming in another batch shape


# 236 training windows: an epoch is 14 steps of 16 windows, or 3 of 64
SMALL = TINY_WALKS + [
    "data.walks.n_walks=300",
    "train.epochs=null",
    "eval.every_epoch=false",
    "checkpoint.every_epoch=false",
    "gate.metrics={}",
    "eval.patience=null",
]


@pytest.mark.slow
def test_resume_with_another_batch_shape_warns_and_keeps_the_epoch_position(tmp_path):
    rd = tmp_path / "run"
    run_core("--run-dir", str(rd), *sets(*SMALL, "train.max_steps=12"), check_rc=0)
    first = C.load(C.latest(rd / "checkpoints"))["progress"]
    assert (first["epoch"], first["batch_in_epoch"]) == (0, 12)  # 192 windows used
    # 64 windows a step: the old position (step 12 of 16) is past this shape's epoch of 4
    out = run_core(
        "--run-dir",
        str(rd),
        "--resume",
        "auto",
        *sets(*SMALL, "train.max_steps=14", "train.batch_size=64"),
        check_rc=0,
    )
    alerts = [e for e in events(rd) if e["type"] == "alert" and e["code"] == "batch_shape_changed"]
    assert len(alerts) == 1 and alerts[0]["level"] == "warn"
    msg = alerts[0]["message"]
    assert "16 x 1 x 1" in msg and "64 x 1 x 1" in msg, msg
    assert f"warning: {msg}" in out.stdout
    assert "going on from epoch 1" in msg  # 192 windows used: less than a step of 64 left
    end = C.load(C.latest(rd / "checkpoints"))["progress"]
    assert (end["step"], end["epoch"], end["batch_in_epoch"]) == (14, 1, 2)
    assert end["shape"] == [64, 1, 1]
    assert all(v == v for v in result(rd)["curves"]["train_loss"])  # no empty batch, no NaN


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
@pytest.mark.slow
def test_resume_in_the_same_shape_says_nothing(tmp_path):
    rd = tmp_path / "run"
    run_core("--run-dir", str(rd), *sets(*SMALL, "train.max_steps=3"), check_rc=0)
    run_core(
        "--run-dir", str(rd), "--resume", "auto", *sets(*SMALL, "train.max_steps=5"), check_rc=0
    )
    assert not [
        e for e in events(rd) if e["type"] == "alert" and e["code"] == "batch_shape_changed"
    ]
    end = C.load(C.latest(rd / "checkpoints"))["progress"]
    assert (end["epoch"], end["batch_in_epoch"]) == (0, 5)
