"""Sharded training through the real trainer: FSDP2 on 2 gloo ranks under torchrun gives
the loss curve of one process with the same global batch; activation checkpointing changes
no loss, under fsdp or ddp; Muon runs sharded, and a Muon run resumed from a checkpoint
continues float for float. The run directory (result.json's curves) is the oracle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from core import checkpoint as C
from tests.conftest import REPO, TINY_WALKS, result, run_core, sets

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

STEPS = 50
B = 16  # per rank; one process takes 2 * B
REL_TOL = 1e-4
CFG = TINY_WALKS + [
    "model.n_layer=2",  # more than one block: fully_shard per block, then the root
    f"train.max_steps={STEPS}",
    "train.epochs=null",
    "eval.every_epoch=false",
    "eval.every_steps=25",  # the eval runs on the gathered shards (rank 0 alone generates)
    "checkpoint.every_epoch=false",
    "gate.metrics={}",
]


def torchrun(run_dir, *extra: str, timeout: float = 400) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["--log-dir", str(run_dir / "torchrun"), "-m", "core.train", "--run-dir", str(run_dir)]
    cmd += sets(*CFG, f"train.batch_size={B}", *extra)
    env = dict(os.environ, OMP_NUM_THREADS="1")  # one thread a rank on two cores
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]


def curve(run_dir) -> list[float]:
    return result(run_dir)["curves"]["train_loss"]


def worst(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b) == STEPS
    return max(abs(x - y) / abs(x) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    """One process, the same global batch (2B windows a step; val: 1 batch of 2B)."""
    rd = tmp_path_factory.mktemp("one") / "run"
    run_core("--run-dir", str(rd), *sets(*CFG, f"train.batch_size={2 * B}", "eval.val_batches=1"),
             check_rc=0)  # fmt: skip
    return rd


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory):
    rd = tmp_path_factory.mktemp("fsdp") / "run"
    torchrun(rd, "train.parallel=fsdp")
    return rd


def test_fsdp_on_two_ranks_gives_the_loss_curve_of_one_process(one, fsdp):
    d = worst(curve(one), curve(fsdp))
    print(
        f"\nmax relative train-loss difference, fsdp 2 ranks vs 1 process, {STEPS} steps: {d:.2e}"
    )
    assert d <= REL_TOL
    for x, y in zip(result(one)["curves"]["val_loss"], result(fsdp)["curves"]["val_loss"],
                    strict=True):  # fmt: skip
        assert abs(x - y) / abs(x) <= REL_TOL
    assert result(fsdp)["curves"]["eval_step"] == [25, 50]


def test_fsdp_with_activation_checkpointing_equals_fsdp_without(tmp_path, fsdp):
    """Checkpointed blocks, kept gathered to the backward (ZeRO-2) this time: neither
    changes the arithmetic, so the curve is the ZeRO-3 run's without checkpointing."""
    rd = tmp_path / "ac"
    ac = ["train.activation_checkpointing=true", "train.reshard_after_forward=false"]
    torchrun(rd, "train.parallel=fsdp", *ac)
    assert curve(rd) == curve(fsdp)


def test_ddp_with_activation_checkpointing_equals_ddp_without(tmp_path, one):
    """Two DDP ranks with checkpointed blocks give one process's curve, as plain DDP does
    (tests/core/test_ddp.py), and one process is unchanged by it, float for float."""
    rd = tmp_path / "ddp-ac"
    torchrun(rd, "train.activation_checkpointing=true")
    assert worst(curve(one), curve(rd)) <= REL_TOL
    solo = tmp_path / "solo-ac"
    run_core("--run-dir", str(solo), *sets(*CFG, f"train.batch_size={2 * B}", "eval.val_batches=1",
             "train.activation_checkpointing=true"), check_rc=0)  # fmt: skip
    assert curve(solo) == curve(one)


def test_muon_under_fsdp_follows_muon_in_one_process(tmp_path):
    """Sharded, Muon orthogonalises each matrix through DTensor (its Newton-Schulz steps
    gather what they need) in bf16, as it does whole: the curves agree to bf16 rounding."""
    muon = ["train.optimizer=muon", "train.lr=3e-3"]
    solo = tmp_path / "solo"
    run_core("--run-dir", str(solo), *sets(*CFG, f"train.batch_size={2 * B}", "eval.val_batches=1",
             *muon), check_rc=0)  # fmt: skip
    rd = tmp_path / "fsdp-muon"
    torchrun(rd, "train.parallel=fsdp", *muon)
    d = worst(curve(solo), curve(rd))
    print(f"\nmax relative train-loss difference, muon fsdp 2 ranks vs 1 process: {d:.2e}")
    assert d <= 5e-3  # measured 6.4e-4
    assert curve(rd)[-1] < curve(rd)[0] - 0.5  # and it trains


def test_an_interrupted_muon_run_resumes_float_for_float(tmp_path):
    """Resumed from its step-20 checkpoint (the state a stop there saves), a Muon run's
    remaining steps equal the uninterrupted run's, float for float, on CPU."""
    cfg = [*CFG, "train.optimizer=muon", "checkpoint.every_steps=20", "checkpoint.keep_last=5"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_core("--run-dir", str(straight), *sets(*cfg), check_rc=0)
    ck = straight / "checkpoints" / C.ckpt_name(20)
    (resumed / "checkpoints").mkdir(parents=True)
    for f in (ck, C.sidecar_path(ck)):
        shutil.copy(f, resumed / "checkpoints" / f.name)
    t0 = time.time()
    out = run_core("--run-dir", str(resumed), "--resume", "auto", *sets(*cfg), check_rc=0)
    assert f"resume: from {resumed / 'checkpoints' / ck.name}" in out.stdout
    assert curve(resumed) == curve(straight), f"({time.time() - t0:.1f}s)"
