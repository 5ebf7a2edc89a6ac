"""Sharded checkpoints end to end, the real trainer as the oracle: a run saved by two
ranks (torchrun, gloo) resumes on one and one on two, going on with the loss of the
run that never stopped and the data where it was; an async save killed with kill -9
leaves `latest` whole and the run resumable; the cockpit verifies, exports and
post-flights a sharded checkpoint."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from core import checkpoint as C
from tests.conftest import (
    REPO,
    TINY_WALKS,
    cockpit,
    events,
    result,
    run_core,
    sets,
    start_core,
    wait_for_event,
)
from tests.core.test_ddp import kill_tree

pytestmark = pytest.mark.slow

STEPS, AT = 60, 40  # resume at step 40 of 60: in epoch 1 (33 steps of 32 windows an epoch)
CFG = TINY_WALKS + [
    f"train.max_steps={STEPS}",
    "train.epochs=null",
    "eval.every_epoch=false",
    "eval.every_steps=20",
    "eval.patience=null",
    "checkpoint.every_epoch=false",
    "checkpoint.every_steps=20",
    "checkpoint.keep_last=10",
    "checkpoint.format=dcp",
    "gate.metrics={}",
]
GLOBAL_BATCH = 32
REL_TOL = 1e-4


def _launch(nproc: int, run_dir, *args: str) -> tuple[int, str]:
    """The trainer on `nproc` ranks (torchrun, one thread a rank) or as one process,
    with the same global batch either way."""
    b = GLOBAL_BATCH // nproc
    train = ["-m", "core.train", "--run-dir", str(run_dir), *args]
    train += sets(*CFG, f"train.batch_size={b}")
    if nproc == 1:
        cmd = [sys.executable, *train]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += ["--nproc-per-node", str(nproc), *train]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        kill_tree(proc)
    return proc.returncode, out


def _losses(run_dir) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events(run_dir) if e["type"] == "step"}


def _position(ckpt) -> tuple[int, int, int]:
    prog = C.load(ckpt, model=False)["progress"]
    return prog["step"], prog["epoch"], prog["batch_in_epoch"]


@pytest.mark.heavy  # four runs, two under torchrun: about 2 minutes on 2 cores
@pytest.mark.parametrize(
    ("saved_on", "resumed_on", "parallel"), [(2, 1, "ddp"), (1, 2, "ddp"), (2, 1, "fsdp")]
)
def test_a_sharded_checkpoint_resumes_on_another_world_size(
    tmp_path, saved_on, resumed_on, parallel
):
    """fsdp: each rank holds a shard of every parameter and of its optimizer state; the
    one process that resumes gathers them all from the two ranks' files."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    both = ["--set", f"train.parallel={parallel}"]
    extra = [*both, "--set", "checkpoint.async=true"] if saved_on == 2 else both
    rc, out = _launch(saved_on, straight, *extra)
    assert rc == 0, out[-4000:]
    ck = straight / "checkpoints" / f"step-{AT:07d}"
    assert C.verify(ck, deep=True) is None
    shards = sorted(json.loads(C.sidecar_path(ck).read_text())["files"])
    assert [s for s in shards if s.endswith(".distcp")] == [
        f"__{r}_0.distcp" for r in range(saved_on)
    ]  # every rank wrote its shard

    # the checkpoint of step 40 resumed in another run directory, on the other world size
    rc, out = _launch(resumed_on, resumed, "--resume", str(ck), *both)
    assert rc == 0, out[-4000:]
    assert f"resume: from {ck} (step {AT}" in out
    a, b = _losses(straight), _losses(resumed)
    assert sorted(b) == list(range(AT + 1, STEPS + 1))  # every step after 40, each once
    first = abs(a[AT + 1] - b[AT + 1]) / a[AT + 1]
    worst = max(abs(a[s] - b[s]) / a[s] for s in b)
    print(f"\n{saved_on} -> {resumed_on} ranks: first resumed step's loss differs by {first:.2e}"
          f" (relative), the worst of {len(b)} steps by {worst:.2e}")  # fmt: skip
    assert first <= REL_TOL
    # a batch repeated or skipped would give that step another loss (far beyond 1e-4),
    # and every later one; the position in the data ends where the straight run's did
    assert worst <= REL_TOL
    end_a = C.latest(straight / "checkpoints")
    end_b = C.latest(resumed / "checkpoints")
    assert _position(end_a) == _position(end_b) == (STEPS, 1, STEPS - 33)
    windows = (STEPS - AT) * GLOBAL_BATCH  # windows the resumed run consumed
    assert (_position(end_b)[2] - _position(ck)[2]) * GLOBAL_BATCH == windows
    assert (
        result(resumed)["curves"]["train_loss"][:AT]
        == result(straight)["curves"]["train_loss"][:AT]
    )  # the curve so far came with the checkpoint


KILL_CFG = TINY_WALKS + [
    "model.n_embd=128",
    "model.n_layer=2",
    "train.max_steps=150",
    "train.epochs=null",
    "checkpoint.every_steps=1",
    "checkpoint.every_epoch=false",
    "checkpoint.async=true",
    "eval.every_epoch=false",
    "gate.metrics={}",
]


@pytest.mark.heavy  # make test-heavy; CI runs it
def test_kill_9_during_async_saves_leaves_latest_whole_and_the_run_resumable(tmp_path):
    """An async save every step, kill -9 at random moments many times (most land while
    a save is being written): `latest` always verifies, every shard included, resume
    always works, and the finished curve equals an uninterrupted run's."""
    straight, rd = tmp_path / "straight", tmp_path / "run"
    run_core("--run-dir", str(straight), *sets(*KILL_CFG), check_rc=0)
    rng = random.Random(0)
    kills = 0
    for _ in range(8):
        proc = start_core("--run-dir", str(rd), "--resume", "auto", *sets(*KILL_CFG))
        seen = len([e for e in events(rd) if e["type"] == "checkpoint"])
        try:
            wait_for_event(
                rd,
                lambda e, s=seen: (
                    e["type"] == "checkpoint"
                    and len([x for x in events(rd) if x["type"] == "checkpoint"]) > s
                ),
                proc,
            )
        except BaseException:
            if proc.poll() == 0:
                break  # finished before we could kill it
            raise
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        if proc.returncode == 0:
            break
        kills += 1
        lp = C.latest(rd / "checkpoints")
        assert lp is not None and lp.is_dir() and C.verify(lp) is None, f"after kill {kills}"
        names = [p.name for p in (rd / "checkpoints").iterdir() if p.name.startswith(".")]
        assert all(n.startswith((".step-", ".latest")) for n in names), names
    assert kills >= 4
    run_core("--run-dir", str(rd), "--resume", "auto", *sets(*KILL_CFG), check_rc=0)
    assert result(rd)["curves"]["train_loss"] == result(straight)["curves"]["train_loss"]
    assert not [p for p in (rd / "checkpoints").iterdir() if ".tmp-" in p.name]
    blocked = [e["blocked_s"] for e in events(rd) if e["type"] == "checkpoint"]
    assert blocked and all(isinstance(b, float) and b >= 0 for b in blocked)


ONE = TINY_WALKS + [
    "train.max_steps=300",
    "train.epochs=null",
    "eval.every_epoch=false",
    "eval.every_steps=150",
    "eval.patience=null",
    "checkpoint.every_epoch=false",
    "checkpoint.every_steps=15",
    "checkpoint.keep_last=30",
    "checkpoint.async=true",
    "gate.metrics={}",
]


@pytest.mark.heavy  # three runs and five cockpit commands: about a minute on a busy box
def test_an_async_sharded_run_stopped_and_resumed_gives_the_identical_curve(tmp_path):
    """SIGINT while async saves are written: the stop waits for the save in flight,
    then saves its own; resume gives the float-for-float curve of a run never stopped.
    The cockpit verifies every shard and exports the model as one file."""
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    run_core("--run-dir", str(straight), *sets(*ONE), check_rc=0)
    ev = [e for e in events(straight) if e["type"] == "checkpoint"]
    assert [e["step"] for e in ev] == list(range(15, 301, 15))
    assert all(0 <= e["blocked_s"] <= e["seconds"] for e in ev)

    proc = start_core("--run-dir", str(broken), *sets(*ONE))
    wait_for_event(broken, lambda e: e["type"] == "checkpoint" and e["step"] == 30, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    k = result(broken)["summary"]["steps"]
    ck = C.latest(broken / "checkpoints")
    assert ck is not None and ck.name == f"step-{k:07d}" and C.verify(ck, deep=True) is None
    assert "interrupt" in C.read_sidecar(ck)["tags"]
    run_core("--run-dir", str(broken), "--resume", "auto", *sets(*ONE), check_rc=0)
    assert result(broken)["curves"]["train_loss"] == result(straight)["curves"]["train_loss"]

    v = cockpit("verify", str(straight))
    assert v.returncode == 0, v.stdout + v.stderr
    assert "OK      step-0000300" in v.stdout and "latest -> step-0000300" in v.stdout
    shard = straight / "checkpoints" / "step-0000015" / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:-1])
    v = cockpit("verify", str(straight))
    assert v.returncode == 1 and "step-0000015/__0_0.distcp: " in v.stdout

    x = cockpit("export", str(straight), "--model", "--step", "30")
    assert x.returncode == 0, x.stdout + x.stderr
    out = straight / "export" / "model-step-0000030.pt"
    assert f"wrote {out}" in x.stdout
    import torch

    from core.model import GPT, GPTConfig

    got = torch.load(out, weights_only=True)
    assert got["step"] == 30
    m = GPT(GPTConfig(**got["model_config"]))
    m.load_state_dict(got["model"])  # a whole model, loadable without DCP
    x = cockpit("export", str(straight), "--model", "--format", "safetensors")
    assert x.returncode == 0, x.stdout + x.stderr
    assert (straight / "export" / "model-step-0000300.safetensors").is_file()
    shutil.rmtree(straight / "export")

    # the post-flight measures a sharded checkpoint: its val loss is the run's own eval's
    pf = cockpit("postflight", str(straight), "--json", "--checkpoint", "step-0000150")
    assert pf.returncode in (0, 1), pf.stdout + pf.stderr
    ppl = next(s for s in json.loads(pf.stdout)["steps"] if s["id"] == "perplexity")
    ev = next(e for e in events(straight) if e["type"] == "eval" and e["step"] == 150)
    assert ppl["figures"]["val_loss"] == pytest.approx(ev["val_loss"], rel=1e-5)
