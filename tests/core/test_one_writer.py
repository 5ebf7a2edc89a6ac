"""One writer per run directory, and a save that fails leaves the run readable.

A second trainer (or a `--resume auto`) on a live run directory is refused
before it writes anything; a save that fails (a full disk: torch raises
RuntimeError, not OSError) leaves no temporary, keeps `latest`, and the run
still ends `failed` with its reason in events.jsonl and result.json."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys

import pytest

from core import checkpoint as C
from core.runstate import lock_run_dir
from tests.conftest import (
    ENDLESS_WALKS,
    REPO,
    TINY_WALKS,
    events,
    result,
    run_core,
    sets,
    start_core,
    wait_for_event,
)


@pytest.mark.slow
def test_a_trainer_refuses_a_run_dir_whose_lock_is_held(tmp_path):
    """This process holds the lock, as a live trainer would: nothing is written."""
    rd = tmp_path / "run"
    rd.mkdir()
    fd, _ = lock_run_dir(rd)
    try:
        r = run_core(
            "--run-dir",
            str(rd),
            "--resume",
            "auto",
            *sets(*TINY_WALKS, "train.max_steps=3", "train.epochs=null"),
            timeout=120,
        )
    finally:
        os.close(fd)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"pid {os.getpid()}" in r.stderr and "Traceback" not in r.stderr
    assert [f.name for f in rd.iterdir()] == [".trainer.lock"]


@pytest.mark.heavy  # two trainers at once (~40 s on a busy 2-core box); CI runs it
def test_a_second_trainer_on_a_live_run_dir_is_refused(tmp_path):
    rd = tmp_path / "run"
    short = sets(*TINY_WALKS, "train.max_steps=3", "train.epochs=null")
    proc = start_core("--run-dir", str(rd), *sets(*ENDLESS_WALKS))
    try:
        wait_for_event(rd, lambda e: e["type"] == "step" and e["step"] >= 3, proc)
        for resume in ([], ["--resume", "auto"]):
            r = run_core("--run-dir", str(rd), *resume, *short, timeout=120)
            assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
            assert f"pid {proc.pid}" in r.stderr and ".trainer.lock" in r.stderr
            assert "Traceback" not in r.stderr
        ev = events(rd)
        assert [e["type"] for e in ev].count("run_start") == 1
        assert not [e for e in ev if e["type"] == "run_end"]
        assert proc.poll() is None  # the live run goes on
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    # the lock went with its holder: the lock file left behind blocks nobody
    fd = os.open(rd / ".trainer.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_the_run_dir_lock_names_its_holder_and_dies_with_it(tmp_path):
    fd, holder = lock_run_dir(tmp_path)
    assert fd is not None and holder == ""
    try:
        assert lock_run_dir(tmp_path) == (None, str(os.getpid()))  # flock: per open file
    finally:
        os.close(fd)
    fd, _ = lock_run_dir(tmp_path)
    assert fd is not None
    os.close(fd)


# The trainer with a disk that fills up on the second checkpoint: torch.save writes
# part of the file and raises RuntimeError, as it does on ENOSPC; report.md cannot be
# written either.
FULL_DISK = """
import runpy, sys
import torch
import core.report

real, calls = torch.save, [0]

def save(obj, f, *a, **k):
    calls[0] += 1
    if calls[0] >= 2:
        f.write(b"x" * 4096)
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4096 vs 4032")
    return real(obj, f, *a, **k)

def no_space(*a, **k):
    raise OSError(28, "No space left on device")

torch.save = save
core.report.write_report = no_space
sys.argv = ["core.train", *sys.argv[1:]]
runpy.run_module("core.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_a_failed_save_ends_the_run_failed_and_keeps_latest(tmp_path):
    rd = tmp_path / "run"
    cfg = TINY_WALKS + [
        "train.max_steps=50",
        "train.epochs=null",
        "eval.every_epoch=false",
        "gate.metrics={}",
        "checkpoint.every_epoch=false",
        "checkpoint.every_steps=10",
    ]
    r = subprocess.run(
        [sys.executable, "-c", FULL_DISK, "--run-dir", str(rd), *sets(*cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-3000:]
    ck = rd / "checkpoints"
    assert sorted(f.name for f in ck.iterdir()) == [
        "latest",
        "step-0000010.json",
        "step-0000010.pt",
    ]  # no temporary of the failed save
    assert C.verify(C.latest(ck), deep=True) is None
    res = result(rd)
    assert res["status"] == "failed"
    assert "checkpoint save at step 20 failed" in res["reason"] and "RuntimeError" in res["reason"]
    ends = [e for e in events(rd) if e["type"] == "run_end"]
    assert len(ends) == 1 and ends[0]["status"] == "failed" and ends[0]["step"] == 20
    assert "could not write report.md" in r.stderr  # said, and nothing else lost to it
