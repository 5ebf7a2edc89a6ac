"""The real trainer, run as a subprocess; its run directory is the oracle."""

import os
import signal
import time

import pytest
import yaml

from core import checkpoint as C
from tests.conftest import TINY_WALKS, events, result, run_core, sets, start_core, wait_for_event

pytestmark = pytest.mark.slow


@pytest.mark.heavy  # make test-heavy; CI runs it
def test_demo_walks_passes_its_gate_end_to_end(tmp_path):
    """The built-in default, unchanged: passes edge > 0.95 and rule > 0.80 by
    greedy generation from held-out start nodes (1000 walks per eval)."""
    rd = tmp_path / "run"
    t0 = time.time()
    run_core("--profile", "demo-walks", "--run-dir", str(rd), timeout=600, check_rc=0)
    wall = time.time() - t0
    r = result(rd)
    assert r["status"] == "gate_passed"
    assert r["gate"]["passed"] and r["gate"]["metrics"]["edge_compliance"] >= 0.95
    assert r["gate"]["metrics"]["rule_compliance"] >= 0.80
    assert len(r["curves"]["train_loss"]) == r["summary"]["steps"]  # every step
    assert len(r["curves"]["rule_compliance"]) == len(r["curves"]["val_loss"])  # every eval
    assert wall < 300
    # the run directory, as docs/architecture.md lists it
    for name in ("run.yaml", "events.jsonl", "result.json", "report.md", "checkpoints/latest"):
        assert (rd / name).exists(), name
    types = {e["type"] for e in events(rd)}
    assert {
        "run_start",
        "phase",
        "step",
        "eval",
        "sample",
        "gate",
        "checkpoint",
        "run_end",
    } <= types
    assert {e["name"] for e in events(rd) if e["type"] == "phase"} >= {"train", "eval"}
    final = C.latest(rd / "checkpoints")
    assert C.verify(final, deep=True) is None
    assert {"final", "gate"} <= set(C.read_sidecar(final)["tags"])
    run_yaml = yaml.safe_load((rd / "run.yaml").read_text())
    assert run_yaml["environment"]["peak_flops_source"].startswith("measured")  # CPU MFU says how
    assert "Gate **passed**" in (rd / "report.md").read_text()


def _curve(rd):
    return result(rd)["curves"]["train_loss"]


RESUME = TINY_WALKS + [
    "train.max_steps=240",
    "train.epochs=null",
    "checkpoint.every_epoch=false",
    "eval.every_epoch=false",
    "eval.every_steps=80",
    "gate.metrics={}",
]


def test_resume_after_sigint_gives_the_identical_loss_curve(tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    run_core("--run-dir", str(straight), *sets(*RESUME), check_rc=0)

    proc = start_core("--run-dir", str(broken), *sets(*RESUME))
    wait_for_event(broken, lambda e: e["type"] == "step" and e["step"] >= 30, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    r = result(broken)
    assert r["status"] == "interrupted"
    k = r["summary"]["steps"]
    assert 30 <= k < 240
    ck = C.latest(broken / "checkpoints")
    assert C.read_sidecar(ck)["step"] == k and "interrupt" in C.read_sidecar(ck)["tags"]

    out = run_core("--run-dir", str(broken), "--resume", "auto", *sets(*RESUME), check_rc=0)
    assert f"resume: from {ck}" in out.stdout
    assert _curve(broken) == _curve(straight)  # equal floats, every step


@pytest.mark.heavy  # make test-heavy; CI runs it
def test_kill_9_at_random_instants_during_checkpointing(tmp_path):
    """Checkpoint every step, kill -9 at random moments many times: `latest`
    always verifies, resume always works, and the finished curve still equals
    an uninterrupted run's."""
    cfg = TINY_WALKS + [
        "model.n_embd=128",
        "model.n_layer=2",
        "train.max_steps=150",
        "train.epochs=null",
        "checkpoint.every_steps=1",
        "checkpoint.every_epoch=false",
        "eval.every_epoch=false",
        "gate.metrics={}",
    ]
    straight, rd = tmp_path / "straight", tmp_path / "run"
    run_core("--run-dir", str(straight), *sets(*cfg), check_rc=0)
    rng = __import__("random").Random(0)
    kills = 0
    for _ in range(8):
        proc = start_core("--run-dir", str(rd), "--resume", "auto", *sets(*cfg))
        seen = len([e for e in events(rd) if e["type"] == "checkpoint"])
        try:
            wait_for_event(
                rd,
                lambda e, s=seen: (
                    e["type"] == "checkpoint"
                    and e["step"] > 0
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
        assert lp is not None and C.verify(lp) is None, f"latest broken after kill {kills}"
        foreign = [
            p.name
            for p in (rd / "checkpoints").iterdir()
            if p.name.startswith(".") and "tmp" in p.name
        ]
        assert all(n.startswith(".step-") or n.startswith(".latest") for n in foreign)
    assert kills >= 4
    run_core("--run-dir", str(rd), "--resume", "auto", *sets(*cfg), check_rc=0)
    curve = _curve(rd)
    assert curve == _curve(straight)


def test_sigusr1_saves_and_goes_on_sigusr2_dumps_stacks(tmp_path):
    rd = tmp_path / "run"
    cfg = TINY_WALKS + [
        "train.max_steps=100000",
        "train.epochs=null",
        "checkpoint.every_epoch=false",
        "eval.every_epoch=false",
        "gate.metrics={}",
    ]
    proc = start_core("--run-dir", str(rd), *sets(*cfg))
    try:
        wait_for_event(rd, lambda e: e["type"] == "step" and e["step"] >= 5, proc)
        proc.send_signal(signal.SIGUSR1)
        ck = wait_for_event(rd, lambda e: e["type"] == "checkpoint", proc)
        assert C.verify(rd / "checkpoints" / os.path.basename(ck["path"])) is None
        step_at_save = ck["step"]
        wait_for_event(
            rd, lambda e: e["type"] == "step" and e["step"] > step_at_save + 5, proc
        )  # goes on
        proc.send_signal(signal.SIGUSR2)
        deadline = time.time() + 20
        while not list((rd / "stacks").glob("stacks-*.txt")) and time.time() < deadline:
            time.sleep(0.05)
        dump = next((rd / "stacks").glob("stacks-*.txt")).read_text()
        assert "## thread MainThread" in dump and "## thread heartbeat" in dump
        assert "core/train.py" in dump
        assert proc.poll() is None  # still training
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    end = [e for e in events(rd) if e["type"] == "run_end"][-1]
    assert end["status"] == "interrupted"


def test_heartbeat_events_arrive_between_steps(tmp_path):
    rd = tmp_path / "run"
    cfg = TINY_WALKS + [
        "train.max_steps=100000",
        "train.epochs=null",
        "train.heartbeat_s=0.2",
        "eval.every_epoch=false",
        "checkpoint.every_epoch=false",
        "gate.metrics={}",
    ]
    proc = start_core("--run-dir", str(rd), *sets(*cfg))
    try:
        wait_for_event(rd, lambda e: e["type"] == "heartbeat" and e["step"] > 0, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def test_heartbeat_events_arrive_during_a_long_step(tmp_path):
    """The heartbeat has its own thread: a long step (here 64 micro-batches of
    accumulation) shows the trainer alive while it runs, not only after it."""
    rd = tmp_path / "run"
    cfg = TINY_WALKS + [
        "train.max_steps=2",
        "train.epochs=null",
        "train.heartbeat_s=0.05",
        "train.grad_accum=64",
        "model.n_embd=128",
        "eval.every_epoch=false",
        "checkpoint.every_epoch=false",
        "gate.metrics={}",
    ]
    run_core("--run-dir", str(rd), *sets(*cfg), check_rc=0)
    evs = events(rd)
    long = max((e for e in evs if e["type"] == "step"), key=lambda e: e["step_ms"])
    # ~0.6 s on two idle cores (16 micro-batches took 0.15 s: too close to the bar)
    assert long["step_ms"] >= 200, f"the step took {long['step_ms']:.0f} ms: too short to tell"
    t_end = long["t"]
    t_start = t_end - long["step_ms"] / 1000
    beats = [e for e in evs if e["type"] == "heartbeat" and t_start + 0.05 < e["t"] < t_end - 0.05]
    assert len(beats) >= 2, f"{len(beats)} heartbeats in a {long['step_ms']:.0f} ms step"
    assert all(b["step"] < long["step"] for b in beats)  # the step was still running


def test_nan_loss_ends_diverged_and_keeps_the_good_checkpoint(tmp_path):
    rd = tmp_path / "run"
    # an absurd learning rate without clipping blows the weights up within a few steps
    cfg = TINY_WALKS + [
        "train.lr=1e12",
        "train.min_lr=0",
        "train.warmup_frac=0",
        "train.grad_clip=null",
        "train.max_steps=200",
        "train.epochs=null",
        "checkpoint.every_steps=1",
        "checkpoint.every_epoch=false",
        "eval.every_epoch=false",
        "gate.metrics={}",
    ]
    r = run_core("--run-dir", str(rd), *sets(*cfg))
    assert r.returncode == 1, r.stdout + r.stderr
    res = result(rd)
    assert res["status"] == "diverged"
    alerts = [e for e in events(rd) if e["type"] == "alert" and e["code"] == "nan_loss"]
    assert alerts and alerts[0]["level"] == "error"
    lp = C.latest(rd / "checkpoints")
    assert lp is not None and C.verify(lp, deep=True) is None
    state = C.load(lp)
    assert all(v.isfinite().all() for v in state["model"].values())  # the saved state is finite
    assert C.read_sidecar(lp)["step"] < res["summary"]["steps"]


def test_eval_every_steps_early_stop_on_patience(tmp_path):
    rd = tmp_path / "run"
    # lr 0 after warmup 0: val never improves after the first eval
    cfg = TINY_WALKS + [
        "train.lr=1e-9",
        "train.min_lr=0",
        "train.max_steps=500",
        "train.epochs=null",
        "eval.every_steps=10",
        "eval.every_epoch=false",
        "eval.patience=2",
        "gate.metrics={}",
        "checkpoint.every_epoch=false",
    ]
    run_core("--run-dir", str(rd), *sets(*cfg), check_rc=0)
    res = result(rd)
    assert res["status"] == "early_stopped"
    assert len(res["curves"]["val_loss"]) == 3 and res["summary"]["steps"] == 30
    assert "failure" not in res  # no gate configured: nothing failed


def test_gate_not_passed_after_the_budget_is_recorded_with_its_metrics(tmp_path):
    """A failed config is flagged with failure metadata in result.json."""
    rd = tmp_path / "run"
    run_core(
        "--run-dir",
        str(rd),
        *sets(*TINY_WALKS, "train.max_steps=3", "train.epochs=null"),
        check_rc=0,
    )
    res = result(rd)
    assert res["status"] == "completed"
    assert res["failure"]["reason"] == "gate not passed"
    gate = res["failure"]["gate"]
    assert gate["passed"] is False and set(gate["metrics"]) == {
        "edge_compliance",
        "rule_compliance",
    }
    assert gate["thresholds"] == {"edge_compliance": 0.95, "rule_compliance": 0.8}
    assert "Gate **not passed**" in (rd / "report.md").read_text()


@pytest.mark.heavy  # one of the longest end-to-end runs: make test-heavy (CI runs it)
def test_resume_from_a_named_older_checkpoint_and_refuse_a_corrupt_one(tmp_path):
    cfg = RESUME + ["train.max_steps=60", "checkpoint.every_steps=20", "checkpoint.keep_last=5"]
    rd, branch = tmp_path / "run", tmp_path / "branch"
    run_core("--run-dir", str(rd), *sets(*cfg), check_rc=0)
    older = rd / "checkpoints" / "step-0000020.pt"
    out = run_core("--run-dir", str(branch), "--resume", str(older), *sets(*cfg), check_rc=0)
    assert f"resume: from {older} (step 20" in out.stdout
    assert _curve(branch) == _curve(rd)  # steps 21..60 recomputed identically in a new run dir

    data = bytearray(older.read_bytes())
    data[100] ^= 0xFF
    older.write_bytes(bytes(data))
    r = run_core("--run-dir", str(tmp_path / "x"), "--resume", str(older), *sets(*cfg))
    assert r.returncode == 2 and "sha256" in r.stderr and "step-0000020.pt" in r.stderr
    assert "Traceback" not in r.stderr
