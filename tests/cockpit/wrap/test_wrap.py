"""Wrapped runs: stdout.log followed into events.jsonl exactly once (torn lines,
small reads, a cockpit killed between writing events and saving its offset, a
second cockpit waiting for the first), run_end from the exit code, and a
Session watching a wrapped run the way `cockpit run -- CMD` will."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from cockpit.session import Session
from cockpit.supervisor import Trainer
from cockpit.wrap.adapters import parse_text
from cockpit.wrap.adapters.runinfo import command_name, end_of, world_size
from cockpit.wrap.wrapped import Adapting, attach_wrapped, launch_wrapped
from tests.conftest import until


def events(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


def nanogpt_lines(a: int, b: int) -> str:
    return "".join(
        f"iter {i}: loss {4 - i / 1e4:.4f}, time 2.00ms, mfu 3.25%\n" for i in range(a, b)
    )


def write(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


# -----------------------------------------------------------------------------
# the reader, on a stdout.log written by hand


def test_small_reads_and_torn_lines_give_every_event_once(tmp_path):
    log = tmp_path / "stdout.log"
    text = "tokens per iteration will be: 1,024\n" + nanogpt_lines(0, 500)
    half = len(text) // 2 + 7  # mid-line
    write(log, text[:half])
    a = Adapting(tmp_path, "auto", command=["python", "train.py"])
    while a.pump(max_bytes=997) and a.more:  # reads that end mid-line, again and again
        pass
    n_first = sum(1 for e in events(tmp_path) if e["type"] == "step")
    assert 0 < n_first < 500
    write(log, text[half:])
    while a.pump(max_bytes=997):
        pass
    a.stop()
    evs = events(tmp_path)
    assert evs[0]["type"] == "run_start" and evs[0]["tokens_per_step"] == 1024
    expected = parse_text(text)[1]
    assert [(e["step"], e["loss"]) for e in evs[1:]] == [(e["step"], e["loss"]) for e in expected]


def test_a_killed_cockpit_is_continued_without_duplicates_or_gaps(tmp_path):
    log = tmp_path / "stdout.log"
    write(log, nanogpt_lines(0, 100))
    a = Adapting(tmp_path, "nanogpt", command=["python", "train.py"])
    a.pump()  # its first read saves the offset at once...
    write(log, nanogpt_lines(100, 200))
    a.pump()  # ...a second within the second does not: events.jsonl is ahead of adapter.json
    write(log, '{"torn": ')  # and the process died mid-line
    saved = json.loads((tmp_path / "adapter.json").read_text())
    assert saved["offset"] < log.stat().st_size
    for fd in (a._log_fd, a._events_fd, a._lock_fd):  # kill -9: no stop(), no save
        os.close(fd)
    with open(tmp_path / "events.jsonl", "ab") as f:
        f.write(b'{"v": 1, "t": 1.0, "type": "st')  # killed mid-write too

    write(log, "\n" + nanogpt_lines(200, 300))
    b = Adapting(tmp_path, "auto")
    while b.pump():
        pass
    b.stop()
    steps = [e["step"] for e in events_tolerant(tmp_path) if e.get("type") == "step"]
    assert steps == list(range(300))
    assert sum(1 for e in events_tolerant(tmp_path) if e.get("type") == "run_start") == 1


def events_tolerant(run_dir: Path) -> list[dict]:
    out = []
    for x in (run_dir / "events.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(x))
        except ValueError:
            pass  # the line torn by the kill, ended by the next cockpit: readers skip it
    return out


# -----------------------------------------------------------------------------
# real processes

LOOP = """
import os, signal, sys, time
# Ctrl+C raises KeyboardInterrupt even when the launching process ignores SIGINT (an
# ignored signal stays ignored across exec, and Python then installs no handler)
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # and a blocked one too
if os.environ.get("LOOP_SAVES"):  # a trainer that saves on SIGUSR1, as ours does
    signal.signal(signal.SIGUSR1, lambda *_: print("saving now", flush=True))
n, pause = int(sys.argv[1]), float(sys.argv[2])
for i in range(n):
    print(f"step={i} loss={4 - i / 1000:.4f} lr=3e-4", flush=True)
    time.sleep(pause)
if len(sys.argv) > 3:
    raise ValueError(sys.argv[3])
"""


def launch(tmp_path: Path, name: str, *args: str, fmt: str = "auto"):
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    run_dir = tmp_path / "logs" / name
    # these tests are about events and endings: no scan of the cwd for a trainer's checkpoints
    cmd = [sys.executable, str(script), *args]
    return run_dir, *launch_wrapped(cmd, run_dir, fmt, watch_checkpoints=False)


def test_a_failing_command_ends_failed_with_its_last_words(tmp_path):
    run_dir, trainer, a = launch(tmp_path, "fails", "5", "0", "boom at step 5")
    try:
        a.start()
        assert until(lambda: a.ended)
    finally:
        a.stop()
        trainer.kill_group()
    end = events(run_dir)[-1]
    assert (end["type"], end["status"], end["step"]) == ("run_end", "failed", 4)
    assert end["reason"] == "exit code 1: ValueError: boom at step 5"
    assert json.loads((run_dir / "supervisor.json").read_text())["exit_code"] == 1


def test_sigint_ends_interrupted_and_a_watcher_waits_for_the_launcher(tmp_path):
    run_dir, trainer, a = launch(tmp_path, "stopped", "100000", "0.002")
    watcher = attach_wrapped(run_dir, Trainer.find(run_dir))
    try:
        a.start()
        assert until(lambda: sum(1 for e in events(run_dir) if e["type"] == "step") > 20)
        assert watcher.pump() == 0 and not watcher.owner  # the launcher writes; a watcher waits
        trainer.signal(signal.SIGINT)
        assert until(lambda: a.ended)
    finally:
        a.stop()
        watcher.stop()
        trainer.kill_group()
    evs = events(run_dir)
    assert [e["type"] for e in evs].count("run_end") == 1
    assert (evs[-1]["status"], evs[-1]["reason"]) == ("interrupted", "stopped by SIGINT (exit 130)")
    steps = [e["step"] for e in evs if e["type"] == "step"]
    assert steps == list(range(len(steps)))


def test_a_session_watches_a_wrapped_run_like_one_of_ours(tmp_path):
    run_dir, trainer, a = launch(tmp_path, "session", "40", "0.01")
    session = Session(run_dir, trainer, notify=False, sample_every_s=0.2)
    try:
        a.start()
        session.replay()
        while not session.done():
            session.tick()
            time.sleep(0.05)
        session.settle()
    finally:
        session.close()
        a.stop()
        trainer.kill_group()
    m = session.model
    assert (m.status, m.exit_code, m.step) == ("completed", 0, 39)
    assert m.profile == "loop.py" and m.info["wrapped"]["format"] == "kv"
    assert not [x for x in m.alerts if x.code == "crash"]  # run_end came before the exit was seen


def test_save_and_stack_requests_go_only_to_a_command_that_handles_them(tmp_path, monkeypatch):
    """SIGUSR1/SIGUSR2's default action kills: a wrapped command without handlers is
    never sent them, and the monitor does not offer `s`/`d` for it; one that handles
    SIGUSR1 gets `s`."""
    from cockpit.ui.app import CockpitApp
    from tests.cockpit.ui.tuikit import until as ui_until

    async def keys_offered(run_dir: Path, trainer: Trainer) -> set[str]:
        app = CockpitApp("monitor", session=Session(run_dir, trainer, sample_every_s=0.2))
        async with app.run_test(size=(100, 30)) as pilot:
            await ui_until(
                pilot, lambda: app.screen.view and app.screen.view.handles[0] is not None
            )
            await pilot.press("s", "d")  # nothing happens when they are not offered
            await pilot.pause(0.3)
            return {b.binding.action for b in app.screen.active_bindings.values()}

    run_dir, trainer, a = launch(tmp_path, "plain", "100000", "0.01")
    try:
        a.start()
        assert trainer.handles(signal.SIGUSR1) is False and trainer.handles(signal.SIGUSR2) is False
        assert trainer.signal(signal.SIGUSR1) is False and trainer.signal(signal.SIGUSR2) is False
        offered = asyncio.run(keys_offered(run_dir, trainer))
        assert "stop" in offered and "save" not in offered and "dump" not in offered
        assert trainer.alive()  # neither signal was sent: either would have killed it
    finally:
        a.stop()
        trainer.kill_group()

    monkeypatch.setenv("LOOP_SAVES", "1")
    run_dir, trainer, a = launch(tmp_path, "saves", "100000", "0.01")
    try:
        a.start()
        assert until(lambda: trainer.handles(signal.SIGUSR1) is True)
        offered = asyncio.run(keys_offered(run_dir, trainer))
        assert "save" in offered and "dump" not in offered
        assert until(lambda: "saving now" in (run_dir / "stdout.log").read_text())  # `s` pressed
        assert trainer.alive()
    finally:
        a.stop()
        trainer.kill_group()


# -----------------------------------------------------------------------------
# what a command line says


def test_command_names_world_sizes_and_exit_codes():
    assert command_name(["python", "train.py", "config/x.py"]) == "train.py"
    assert command_name(["torchrun", "--nproc_per_node", "8", "-m", "scripts.base_train"]) == (
        "scripts.base_train"
    )
    assert command_name(["accelerate", "launch", "--num_processes=2", "run_clm"]) == "run_clm"
    assert world_size(["torchrun", "--nproc_per_node=4", "--nnodes", "2", "train.py"]) == 8
    assert world_size(["torchrun", "--nproc-per-node", "gpu", "train.py"]) is None
    assert world_size(["python", "train.py", "--nproc_per_node=4"]) is None
    assert end_of(0, "") == ("completed", "the command exited with code 0")
    assert end_of(143, "x") == ("interrupted", "stopped by SIGTERM (exit 143)")
    assert end_of(137, "Killed") == ("failed", "killed by SIGKILL (exit 137): Killed")
    assert end_of(2, "") == ("failed", "exit code 2")


def test_alive_says_gone_only_once_the_exit_hook_has_run(tmp_path):
    t = Trainer.launch([sys.executable, "-c", "pass"], tmp_path / "run")
    seen = []

    def hook(trainer):
        time.sleep(0.3)  # writing a run_end takes a moment
        seen.append(trainer.exit_code)

    t.on_exit = hook
    t.proc.wait(60)
    other = threading.Thread(target=t.alive)
    other.start()
    time.sleep(0.05)
    assert t.alive() is False and seen == [0]  # whichever thread ran the hook, it had finished
    other.join()
    assert seen == [0]  # once
    assert json.loads((tmp_path / "run" / "supervisor.json").read_text())["exit_code"] == 0
