"""CPU DDP determinism smoke: the real trainer under torchrun with gloo.

Two ranks with batch_size B give the same loss curve as one process with batch
size 2B (the same global batch: the same windows each step, gradients averaged
over ranks), and a 2-rank run stopped by SIGINT to torchrun and resumed gives
the curve of one that was never stopped. The run directory is the oracle:
events.jsonl (rank 0's alone), result.json, ranks/rank-N.jsonl.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import REPO, TINY_WALKS, events, result, run_core, sets, wait_for_event

pytestmark = pytest.mark.slow

CFG = TINY_WALKS + [
    "train.max_steps=100",
    "train.epochs=null",
    "eval.every_epoch=false",
    "eval.every_steps=40",
    "checkpoint.every_epoch=false",
    "gate.metrics={}",
]
STEPS = 100
B = 16  # per rank; one process takes 2 * B
REL_TOL = 1e-4


def torchrun(run_dir, *args: str, nproc: int = 2) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(nproc), "--role", "rank", "--tee", "3"]
    cmd += ["--log-dir", str(run_dir / "torchrun"), "-m", "core.train", "--run-dir", str(run_dir)]
    cmd += [*args, *sets(*CFG, f"train.batch_size={B}")]
    # one thread a rank: two ranks share the two cores; its own session, as the supervisor does
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill_tree(proc)
    return proc.returncode, out


def kill_tree(proc: subprocess.Popen) -> None:
    """torchrun starts each rank in a session of its own: killing torchrun's group
    would leave them, so kill its descendants by pid."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        kids = []
    for k in kids:
        try:
            k.kill()
        except psutil.Error:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


def rank_lines(run_dir, rank: int) -> list[dict]:
    path = run_dir / "ranks" / f"rank-{rank}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


def losses(run_dir) -> list[float]:
    return [e["loss"] for e in events(run_dir) if e["type"] == "step"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 2-rank run, shared by the tests below."""
    rd = tmp_path_factory.mktemp("ddp") / "straight"
    rc, out = finish(torchrun(rd))
    assert rc == 0, out[-4000:]
    return rd


@pytest.mark.heavy
def test_two_ranks_give_the_loss_curve_of_one_process_with_the_same_global_batch(
    tmp_path, straight, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as each rank: two threads stall on a busy box
    one = tmp_path / "one"
    t0 = time.time()
    # val_batches x batch_size windows at any world size: half the batches of twice the size
    run_core(
        "--run-dir",
        str(one),
        *sets(*CFG, f"train.batch_size={2 * B}", "eval.val_batches=1"),
        check_rc=0,
    )
    a, b = result(one)["curves"], result(straight)["curves"]
    assert len(a["train_loss"]) == len(b["train_loss"]) == STEPS
    worst = max(abs(x - y) / abs(x) for x, y in zip(a["train_loss"], b["train_loss"], strict=True))
    assert worst <= REL_TOL, f"max relative loss difference {worst:.2e}"
    # eval scores the same windows, shared out over the ranks
    for x, y in zip(a["val_loss"], b["val_loss"], strict=True):
        assert abs(x - y) / abs(x) <= REL_TOL
    print(
        f"\nmax relative train-loss difference, 1 vs 2 ranks: {worst:.2e} ({time.time() - t0:.1f}s)"
    )

    # rank 0 alone writes events: one step event a step, a run_start that says 2 ranks
    ev = events(straight)
    assert [e["step"] for e in ev if e["type"] == "step"] == list(range(1, STEPS + 1))
    start = next(e for e in ev if e["type"] == "run_start")
    assert start["world_size"] == 2
    assert (
        start["tokens_per_step"]
        == next(e for e in events(one) if e["type"] == "run_start")["tokens_per_step"]
    )
    assert [e["status"] for e in ev if e["type"] == "run_end"] == ["completed"]
    # every rank writes its own figures
    for rank in (0, 1):
        lines = rank_lines(straight, rank)
        assert lines[0]["type"] == "start" and lines[0]["rank"] == rank
        steps = [x for x in lines if x["type"] == "step"]
        assert [x["step"] for x in steps] == list(range(1, STEPS + 1))
        assert all(x["step_ms"] > 0 and x["fwd_ms"] > 0 and x["rss_mib"] > 0 for x in steps)
        assert lines[-1] == dict(lines[-1], type="end", step=STEPS, status="completed", exit_code=0)
    assert not (one / "ranks").exists()  # one process: no per-rank files


@pytest.mark.heavy
def test_an_interrupted_two_rank_run_resumes_to_the_uninterrupted_curve(tmp_path, straight):
    broken = tmp_path / "broken"
    proc = torchrun(broken)
    try:
        wait_for_event(broken, lambda e: e["type"] == "step" and e["step"] >= 10, proc)
        proc.send_signal(signal.SIGINT)  # to torchrun, as the cockpit's stop does
        rc, out = finish(proc, 120)
    finally:
        kill_tree(proc)
    # torchrun itself exits 1 on a signal; the ranks stopped cleanly after the same step
    assert rc != 0, out[-3000:]
    r = result(broken)
    assert r["status"] == "interrupted", out[-3000:]
    k = r["summary"]["steps"]
    assert 10 <= k < STEPS
    for rank in (0, 1):
        assert rank_lines(broken, rank)[-1] == dict(
            rank_lines(broken, rank)[-1], type="end", step=k, status="interrupted", exit_code=130
        )
    ck = json.loads((broken / "checkpoints" / f"step-{k:07d}.json").read_text())
    assert "interrupt" in ck["tags"]

    rc, out = finish(torchrun(broken, "--resume", "auto"))
    assert rc == 0, out[-4000:]
    assert f"resume: from {broken / 'checkpoints' / f'step-{k:07d}.pt'}" in out
    assert result(broken)["curves"]["train_loss"] == result(straight)["curves"]["train_loss"]
    assert losses(broken) == losses(straight)  # the events too: steps 1..k, then k+1..STEPS
    ends = [x for x in rank_lines(broken, 1) if x["type"] == "end"]
    assert [x["status"] for x in ends] == ["interrupted", "completed"]


@pytest.mark.heavy
def test_mfu_under_torchrun_divides_by_every_ranks_peak(straight):
    """tokens_per_s counts both ranks' tokens; each rank has one device's peak: MFU is
    flops_per_token x tokens_per_s / (peak x world size), not / peak (2x too high)."""
    import yaml

    from core.model import GPT, GPTConfig  # the core's one FLOP model

    y = yaml.safe_load((straight / "run.yaml").read_text())
    env, summ, prof = y["environment"], y["summary"], y["profile"]
    m = GPT(GPTConfig(summ["vocab_size"], prof["data"]["context"], prof["model"]["n_layer"],
                      prof["model"]["n_head"], prof["model"]["n_embd"]))  # fmt: skip
    steps = [e for e in events(straight) if e["type"] == "step"]
    assert env["world_size"] == 2 and env["peak_flops"] > 0
    for e in steps:
        want = m.flops_per_token() * e["tokens_per_s"] / (env["peak_flops"] * 2)
        assert e["mfu"] == pytest.approx(want, rel=1e-9)
