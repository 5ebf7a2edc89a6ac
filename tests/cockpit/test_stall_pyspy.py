"""A wrapped trainer (no SIGUSR2 handler) that stalls: the cockpit reads its stacks
with py-spy and shows them in the alert; and, end to end, `cockpit run --notify`
on a wrapped trainer: the POSTs that arrive, how soon after the alert, and the
run's energy in the summary and energy.json."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from cockpit.collect import pyspy
from cockpit.model.health import HealthConfig
from cockpit.session import Session
from cockpit.wrap.wrapped import launch_wrapped
from tests.cockpit.test_notify import Hooks
from tests.conftest import REPO

STUCK = """
import time
for i in range(3):
    print(f"step={i} loss={4 - i / 1000:.4f} lr=3e-4", flush=True)

def waiting_for_the_data_loader():
    time.sleep(60)

waiting_for_the_data_loader()
"""


def test_a_stalled_wrapped_trainer_gets_a_py_spy_dump_naming_where_it_waits(tmp_path):
    if pyspy.py_spy() is None:
        pytest.fail("py-spy is not installed: `make setup` installs it (the [stalls] extra)")
    dump = stall_dump(tmp_path, STUCK)
    assert dump is not None
    if dump.level == "warn" and "ptrace" in dump.message:
        pytest.skip(f"ptrace is not permitted here: {dump.message}")
    assert dump.message.startswith("py-spy dump after the stall (pid ")
    assert "waiting_for_the_data_loader (t.py:7)" in (dump.detail or ""), dump.detail
    print(f"\n{dump.message}\n{dump.detail}")


LAUNCHER = '''
import os, subprocess, sys, time
RANK = """
import sys, time
def rank_{r}_waits_in_all_reduce():
    time.sleep(60)
rank_{r}_waits_in_all_reduce()
"""
kids = [subprocess.Popen([sys.executable, "-c", RANK.format(r=r)], env=dict(os.environ, RANK=str(r)))
        for r in (1, 0)]
time.sleep(0.5)
for i in range(3):
    print(f"step={i} loss={4 - i / 1000:.4f} lr=3e-4", flush=True)
for k in kids:
    k.wait()
'''


def stall_dump(tmp_path, source: str):
    """Run `source` wrapped, wait for its stall's stack_dump alert."""
    script = tmp_path / "t.py"
    script.write_text(source)
    run_dir = tmp_path / "logs" / "t"
    trainer, adapting = launch_wrapped(
        [sys.executable, str(script)], run_dir, "auto", watch_checkpoints=False
    )
    adapting.start()
    s = Session(run_dir, trainer, HealthConfig(stall_min_s=0.5), sample_every_s=0.2, notify=False)
    try:
        s.replay()
        deadline, dump = time.time() + 20, None
        while time.time() < deadline and dump is None:
            s.tick()
            dump = next((a for a in s.model.alerts if a.code == "stack_dump"), None)
            time.sleep(0.05)
        return dump
    finally:
        adapting.stop()
        trainer.kill_group()
        s.close()


def test_a_wrapped_launcher_gets_one_dump_per_rank(tmp_path):
    dump = stall_dump(tmp_path, LAUNCHER)
    assert dump is not None
    if dump.level == "warn" and "ptrace" in dump.message:
        pytest.skip(f"ptrace is not permitted here: {dump.message}")
    assert "(rank 0, rank 1; by rank)" in dump.message
    text = dump.detail or ""
    assert text.index("--- rank 0") < text.index("rank_0_waits_in_all_reduce")
    assert text.index("rank_0_waits_in_all_reduce") < text.index("--- rank 1")
    assert text.index("--- rank 1") < text.index("rank_1_waits_in_all_reduce")


def test_without_ptrace_the_alert_says_how_to_allow_it():
    assert "kernel.yama.ptrace_scope=0" in pyspy.ptrace_hint(1)
    assert "CAP_SYS_PTRACE".lower() in pyspy.ptrace_hint(None).lower()
    assert "reboot" in pyspy.ptrace_hint(3)


def test_a_dump_of_no_such_process_is_an_error_not_a_raise():
    d = pyspy.dump(2**22 + 12345)
    assert d.text == "" and d.error and "py-spy could not read pid" in d.error


# -----------------------------------------------------------------------------
# end to end: cockpit run --notify on a wrapped trainer

EVENTS = """
import json, sys, time
def ev(**d):
    print(json.dumps({"v": 1, "t": time.time(), **d}), flush=True)
ev(type="run_start", run_id="scripted-run", profile="scripted", pid=0, device="cpu", world_size=1,
   dtype="float32", n_params=1000, tokens_per_step=64, total_steps=20, total_epochs=1)
for i in range(1, 21):
    ev(type="step", step=i, epoch=0, loss=3.0 - i / 100, lr=1e-3, grad_norm=1.0,
       tokens=64 * i, step_ms=10.0, tokens_per_s=6400.0)
    time.sleep(0.02)
    if i == 10:
        ev(type="alert", level="error", code="data_error", message="shard 7 is unreadable")
        time.sleep(2.0)  # long enough for the notification to be measured alone
ev(type="run_end", status="completed", step=20, reason="budget done", wall_s=3.0)
"""


@pytest.mark.heavy
def test_cockpit_run_notifies_the_alert_and_the_end_with_its_energy(tmp_path):
    hooks = Hooks()
    script = tmp_path / "events.py"
    script.write_text(EVENTS)
    run_dir = tmp_path / "run"
    try:
        r = subprocess.run(
            [sys.executable, "-m", "cockpit.cli", "run", "--headless", "--run-dir", str(run_dir),
             "--format", "jsonl", "--price-kwh", "0.3",
             "--notify", f"json+http://{hooks.url('/hook/SECRETTOKEN')}",
             "--", sys.executable, str(script)],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        got = [json.loads(g["body"]) | {"arrived": g["t"]} for g in hooks.wait(2)]
    finally:
        hooks.close()
    assert [g["event"] for g in got] == ["alert", "run_end"]
    assert got[0]["line"] == "scripted-run: error data_error: shard 7 is unreadable"
    assert got[1]["line"] == "scripted-run: run completed (exit 0): budget done"
    assert got[1]["figures"]["run dir"] == str(run_dir)
    # from the alert's own time (the trainer's clock, in events.jsonl) to the POST received
    alert = next(
        json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if '"alert"' in x
    )
    latency = got[0]["arrived"] - alert["t"]
    print(f"notification latency, alert written -> POST received: {latency * 1000:.0f} ms")
    assert 0 < latency < 3.0
    # the token is masked wherever the cockpit says where it notifies
    assert "SECRETTOKEN" not in r.stdout + r.stderr
    assert "json+http://127.0.0.1" in r.stderr
    # the cockpit measured the wrapped command's energy; the summary shows it
    energy = json.loads((run_dir / "energy.json").read_text())
    assert energy["measured_by"] == "cockpit" and energy["tokens"] == 1280
    assert energy["price_kwh"] == 0.3 or energy["kwh"] is None
    assert "energy" in r.stdout
