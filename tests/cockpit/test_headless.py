"""`cockpit run --headless`, `cockpit watch` and `cockpit runs` against a real
trainer subprocess under the supervisor, with real signals."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cockpit.collect.gpu import GpuSampler
from cockpit.supervisor import Trainer
from tests.conftest import (
    ENDLESS_WALKS,
    REPO,
    TINY_WALKS,
    Output,
    cockpit,
    events,
    sets,
    start_cockpit,
    start_core,
    until,
)

pytestmark = pytest.mark.slow


def _has_gpu() -> bool:
    """The machine's GPU state, an input of these tests (asked as the cockpit asks)."""
    s = GpuSampler()
    try:
        return s.sample().available
    finally:
        s.close()


HAS_GPU = _has_gpu()
GPU_RE = r"GPU [\d–]+%" if HAS_GPU else "no GPU"  # the summary line's end


@pytest.fixture
def run_dirs(tmp_path):
    """Run directories a test creates; their trainers are killed at the end whatever happens."""
    made: list[Path] = []

    def new(name: str) -> Path:
        d = tmp_path / "logs" / name
        made.append(d)
        return d

    yield new
    for d in made:
        t = Trainer.find(d)
        if t is not None and t.alive():  # checks the pid still is that trainer
            t.kill_group()


def trainer_pid(run_dir: Path, timeout: float = 30) -> int:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            return json.loads((run_dir / "supervisor.json").read_text())["pid"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    pytest.fail("no supervisor.json")


def steps(run_dir: Path) -> list[int]:
    return [e["step"] for e in events(run_dir) if e["type"] == "step"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_headless_plain_lines_when_not_a_terminal(run_dirs):
    d = run_dirs("plain")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cockpit.cli",
            "run",
            "--headless",
            "--skip-preflight",
            "--skip-postflight",
            "--every",
            "1",
        ]
        + ["--run-dir", str(d)]
        + sets(*TINY_WALKS, "train.epochs=3", "gate.stop_on_pass=false"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "\x1b" not in out  # no ANSI codes in a log file
    lines = out.splitlines()
    assert lines[0].startswith(f"cockpit: training 'demo-walks' in {d} (pid ")
    # one line per eval, at the steps the trainer evaluated, with every figure
    eval_steps = [e["step"] for e in events(d) if e["type"] == "eval"]
    eval_lines = [x for x in lines if x.startswith("eval  ")]
    assert len(eval_steps) == 3 and len(eval_lines) == 3
    for k, (s, line) in enumerate(zip(eval_steps, eval_lines, strict=True)):
        assert line.startswith(f"eval  step {s}/201 ")
        assert f" · epoch {k + 1}/3 · loss " in line
        gpu = " MiB · GPU " if HAS_GPU else " MiB · no GPU"  # the machine's, sampled
        for part in (" · val ", " · lr ", " tok/s · ETA ", " · RSS ", gpu):
            assert part in line, line
    val = [e["val_loss"] for e in events(d) if e["type"] == "eval"]
    assert f"val {val[-1]:.4f}" in eval_lines[-1]
    # the periodic summary lines, and a line per checkpoint
    assert any(re.match(r"step \d+/201 \(\d+%\) · epoch \d/3 · loss \d", x) for x in lines)
    assert [x.split()[1] for x in lines if x.startswith("checkpoint ")] == [
        "step-0000067.pt",
        "step-0000134.pt",
        "step-0000201.pt",
    ]
    # the final table, and the exit code is the trainer's
    tail = lines[lines.index(f"run {d.name}") :]
    assert "  status       completed (exit 0)" in tail
    assert "  steps        201/201" in tail
    assert any(x.startswith("  checkpoints  3, newest step-0000201.pt") for x in tail)
    assert "  alerts       none" in tail
    assert json.loads((d / "supervisor.json").read_text())["exit_code"] == 0
    # the cockpit recorded system samples while the run lived
    sysl = [json.loads(x) for x in (d / "system.jsonl").read_text().splitlines()]
    assert sysl and all(x["type"] == "system" and x["gpu"]["available"] is HAS_GPU for x in sysl)
    assert sysl[-1]["proc"]["root_pid"] == trainer_pid(d)

    # a replay of the finished run tells the same story, memory included
    w = cockpit("watch", str(d), "--headless")
    assert w.returncode == 0, w.stdout
    replayed = [x for x in w.stdout.splitlines() if x.startswith("eval  ")]
    strip = lambda x: re.sub(r" · (ETA|RSS) [^·]*", "", x)  # noqa: E731
    assert [strip(x) for x in replayed] == [strip(x) for x in eval_lines]
    assert all(re.search(r" · RSS \d+ MiB · " + GPU_RE, x) for x in replayed)
    assert "  status       completed (exit 0)" in w.stdout.splitlines()


@pytest.mark.heavy  # one of the longest end-to-end runs: make test-heavy (CI runs it)
def test_headless_progress_bar_on_a_terminal(run_dirs):
    d = run_dirs("tty")
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cockpit.cli",
            "run",
            "--headless",
            "--skip-preflight",
            "--skip-postflight",
            "--run-dir",
            str(d),
        ]
        + sets(*TINY_WALKS, "train.epochs=2"),
        cwd=REPO,
        stdout=slave,
        stderr=slave,
        env=dict(os.environ, COLUMNS="150", LINES="40", TERM="xterm-256color"),
    )
    os.close(slave)
    chunks, deadline = [], time.time() + 120
    while time.time() < deadline:
        if not select.select([master], [], [], 1.0)[0]:
            continue
        try:
            b = os.read(master, 65536)
        except OSError:
            break  # EIO: the child closed the terminal
        if not b:
            break
        chunks.append(b)
    rc = p.wait(10)
    os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert rc == 0, out
    assert "\x1b[" in out  # a live terminal gets a drawn bar
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert re.search(r"steps\s+━+\s+134/134 loss \d", plain)
    assert re.search(r"epoch 2/2\s+━+\s+67/67 ", plain)
    assert "eval  step 134/134 " in plain  # the same summary lines as without a terminal
    assert "status" in out and "completed (exit 0)" in out


def test_a_trainer_failure_shows_its_reason_and_exit_code(run_dirs):
    d = run_dirs("bad-data")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cockpit.cli",
            "run",
            "--headless",
            "--skip-preflight",
            "--skip-postflight",
            "--run-dir",
            str(d),
        ]
        + sets(*TINY_WALKS, "data.walks.n_walks=2"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stdout  # the trainer's own code for bad data
    assert "  status       failed (exit 2)" in r.stdout
    assert "  reason       too few training windows (1) for one batch of 16" in r.stdout


@pytest.mark.heavy  # one of the longest end-to-end runs: make test-heavy (CI runs it)
def test_kill_9_on_the_cockpit_leaves_training_running_and_watch_reattaches(run_dirs):
    d = run_dirs("detach")
    p = start_cockpit(
        "run",
        "--headless",
        "--skip-preflight",
        "--skip-postflight",
        "--run-dir",
        str(d),
        *sets(*ENDLESS_WALKS),
    )
    out = Output(p)
    out.wait_for("eval  step 200/")
    pid = trainer_pid(d)
    p.kill()  # kill -9 the cockpit
    p.wait()
    n0 = len(steps(d))
    assert until(lambda: len(steps(d)) > n0 + 20)  # still training, on its own
    assert alive(pid)

    w = start_cockpit("watch", str(d), "--headless", "--every", "1")
    wout = Output(w)
    wout.wait_for("cockpit: watching")
    wout.wait_for("eval  step 400/")
    sys_before = (d / "system.jsonl").stat().st_size
    # the watcher took over recording
    assert until(lambda: (d / "system.jsonl").stat().st_size > sys_before)
    os.kill(pid, signal.SIGINT)  # stop the run the way `x` will: gracefully
    rc = wout.finish(120)
    assert rc == 130, wout.text
    # the whole history, each eval once, in order, and the run's end
    seen = [int(m.group(1)) for m in re.finditer(r"^eval  step (\d+)/", wout.text, re.M)]
    assert seen == [e["step"] for e in events(d) if e["type"] == "eval"]
    assert seen[:2] == [100, 200] and len(seen) == len(set(seen))
    assert "  status       interrupted" in wout.text
    assert events(d)[-1]["type"] == "run_end"


@pytest.mark.heavy  # one of the longest end-to-end runs: make test-heavy (CI runs it)
def test_watch_finds_a_trainer_started_without_the_cockpit(run_dirs):
    d = run_dirs("direct")
    core = start_core("--run-dir", str(d), *sets(*ENDLESS_WALKS))
    try:
        t0 = time.time()
        while not d.is_dir() and time.time() - t0 < 60:
            time.sleep(0.05)
        w = start_cockpit("watch", str(d), "--headless", "--every", "1")  # maybe before any event
        out = Output(w)
        out.wait_for("eval  step 100/")
        # found by the pid its run_start announced: sampled like one of ours
        out.wait_for(rf"^step \d+/1000000 .* · RSS \d+ MiB · {GPU_RE}$", timeout=90, regex=True)
        core.send_signal(signal.SIGINT)
        assert out.finish(120) == 130
        assert "  status       interrupted" in out.text
    finally:
        core.kill()
        core.wait()


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
def test_a_stopped_trainer_raises_a_stall_with_a_stack_dump(run_dirs):
    d = run_dirs("stall")
    p = start_cockpit(
        "run", "--headless", "--skip-preflight", "--skip-postflight", "--run-dir", str(d), "--health", "stall_min_s=3",
        *sets(*ENDLESS_WALKS, "train.heartbeat_s=0.5"),
    )  # fmt: skip
    out = Output(p)
    out.wait_for("eval  step 100/")
    pid = trainer_pid(d)
    os.kill(pid, signal.SIGSTOP)
    line = out.wait_for("the process is stopped", timeout=90)
    assert line.startswith("ALERT error stall: no step or heartbeat for ")
    time.sleep(0.5)
    os.kill(pid, signal.SIGCONT)  # the SIGUSR2 the cockpit sent is delivered now
    out.wait_for("ALERT info stack_dump:", timeout=90)
    out.wait_for(r"^  \| .*(File|thread)", timeout=30, regex=True)  # printed after the alert
    assert re.search(r"^  \| .*(File|thread)", out.text, re.M)  # the stacks themselves
    assert list((d / "stacks").glob("stacks-*.txt"))
    p.send_signal(signal.SIGINT)
    assert out.finish(120) == 130
    assert "  status       interrupted (exit 130)" in out.text


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
def test_sigkill_on_the_trainer_is_a_crash_with_its_exit_code(run_dirs, tmp_path):
    d = run_dirs("crash")
    p = start_cockpit(
        "run",
        "--headless",
        "--skip-preflight",
        "--skip-postflight",
        "--run-dir",
        str(d),
        *sets(*ENDLESS_WALKS),
    )
    out = Output(p)
    out.wait_for("eval  step 100/")
    w = Output(start_cockpit("watch", str(d), "--headless"))  # a second terminal, watching
    w.wait_for("eval  step 100/")
    os.kill(trainer_pid(d), signal.SIGKILL)
    assert out.finish(120) == 137
    crash = "ALERT error crash: the trainer died without finishing the run (exit code 137)"
    assert crash in out.text
    assert "  status       failed (exit 137)" in out.text
    # the watcher learns the exit code from the launcher, through supervisor.json
    assert w.finish(120) == 137
    assert crash in w.text and "  status       failed (exit 137)" in w.text
    r = cockpit("runs", "--logs", str(tmp_path / "logs"))
    row = [x for x in r.stdout.splitlines() if x.startswith("crash ")]
    assert row and row[0].split()[2] == "failed", r.stdout


@pytest.mark.heavy  # one of the longest end-to-end runs: make test-heavy (CI runs it)
def test_ctrl_c_stops_gracefully_and_twice_kills(run_dirs):
    d = run_dirs("ctrlc")
    p = start_cockpit(
        "run",
        "--headless",
        "--skip-preflight",
        "--skip-postflight",
        "--run-dir",
        str(d),
        *sets(*ENDLESS_WALKS),
    )
    out = Output(p)
    out.wait_for("eval  step 100/")
    p.send_signal(signal.SIGINT)
    assert out.finish(120) == 130
    assert "asking the trainer to stop gracefully" in out.text
    ck = [e for e in events(d) if e["type"] == "checkpoint"]
    assert "interrupt" in ck[-1]["tags"]
    assert [e["status"] for e in events(d) if e["type"] == "run_end"] == ["interrupted"]

    d2 = run_dirs("ctrlc2")
    p = start_cockpit(
        "run",
        "--headless",
        "--skip-preflight",
        "--skip-postflight",
        "--run-dir",
        str(d2),
        *sets(*ENDLESS_WALKS),
    )
    out = Output(p)
    out.wait_for("eval  step 100/")
    os.kill(trainer_pid(d2), signal.SIGSTOP)  # a trainer that cannot stop by itself
    p.send_signal(signal.SIGINT)
    out.wait_for("asking the trainer to stop gracefully")
    p.send_signal(signal.SIGINT)
    assert out.finish(120) == 137
    assert "second Ctrl+C: killed the trainer (SIGKILL)" in out.text
    assert not [e for e in events(d2) if e["type"] == "run_end"]


@pytest.mark.heavy  # one of the longest end-to-end runs: make test-heavy (CI runs it)
def test_runs_lists_every_run_with_its_status(run_dirs, tmp_path):
    done = run_dirs("done")
    r = cockpit(
        "run",
        "--headless",
        "--skip-preflight",
        "--skip-postflight",
        "--run-dir",
        str(done),
        *sets(*TINY_WALKS, "train.epochs=1"),
    )
    assert r.returncode == 0, r.stdout
    live = run_dirs("live")
    p = start_cockpit(
        "run",
        "--headless",
        "--skip-preflight",
        "--skip-postflight",
        "--run-dir",
        str(live),
        *sets(*ENDLESS_WALKS),
    )
    out = Output(p)
    out.wait_for("eval  step 100/")
    rows = {
        x.split()[0]: x.split()
        for x in cockpit("runs", "--logs", str(tmp_path / "logs")).stdout.splitlines()[1:]
    }
    assert rows["done"][1:4] == ["demo-walks", "completed", "67/67"]
    assert rows["live"][2] == "live" and int(rows["live"][3].split("/")[0]) >= 100
    p.send_signal(signal.SIGINT)
    out.finish(120)
    rows = {
        x.split()[0]: x.split()
        for x in cockpit("runs", "--logs", str(tmp_path / "logs")).stdout.splitlines()[1:]
    }
    assert rows["live"][2] == "interrupted"
