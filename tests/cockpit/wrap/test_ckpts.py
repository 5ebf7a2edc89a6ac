"""A wrapped trainer's own checkpoints (cockpit.collect.foreign): found in the known
layouts once they stop changing, announced once as checkpoint events with their
step, size and sha256, recorded beside the run, and `cockpit verify RUN_DIR` says
when one changed afterwards."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from argparse import Namespace
from pathlib import Path

import pytest

from cockpit.collect import foreign
from cockpit.commands.verify import cmd_verify
from cockpit.wrap.wrapped import launch_wrapped
from tests.conftest import until

TRAINER = textwrap.dedent(
    """
    import os, sys, time
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "checkpoint-10"), exist_ok=True)
    for i in range(3):
        print(f"iter {i * 10}: loss {3 - i / 10:.4f}, time 2.00ms, mfu 3.25%", flush=True)
        with open(os.path.join(out, "ckpt.pt"), "wb") as f:   # nanoGPT: one file, rewritten
            f.write(bytes([i]) * 1000)
        time.sleep(0.1)
    with open(os.path.join(out, "checkpoint-10", "model.safetensors"), "wb") as f:  # HF
        f.write(b"w" * 500)
    os.makedirs(os.path.join(out, "lightning_logs/version_0/checkpoints"), exist_ok=True)
    with open(os.path.join(out, "lightning_logs/version_0/checkpoints/epoch=0-step=20.ckpt"), "wb") as f:
        f.write(b"l" * 700)
    """
)


def events(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_known_layouts_become_checkpoint_events_and_verify_sees_a_change(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "old.ckpt").write_bytes(b"before the run")  # older than the run: not ours
    os.utime(work / "old.ckpt", (1e9, 1e9))
    (work / "train.py").write_text(TRAINER)
    run_dir = tmp_path / "run"
    since = 0.0
    trainer, a = launch_wrapped([sys.executable, "train.py", "."], run_dir, cwd=work, pty=(80, 24))
    try:
        since = a.t_begin
        a.start()
        assert until(lambda: a.ended)
    finally:
        a.stop()
    assert since > 0
    ck = {Path(e["path"]).name: e for e in events(run_dir) if e["type"] == "checkpoint"}
    assert set(ck) == {"ckpt.pt", "checkpoint-10", "epoch=0-step=20.ckpt"}
    assert (ck["checkpoint-10"]["step"], ck["checkpoint-10"]["bytes"]) == (10, 500)
    assert (ck["epoch=0-step=20.ckpt"]["step"], ck["ckpt.pt"]["bytes"]) == (20, 1000)
    assert ck["ckpt.pt"]["step"] == 20  # the step the run had reached
    assert all(len(e["sha256"]) == 64 for e in ck.values())
    assert [e["type"] for e in events(run_dir)][-1] == "run_end"  # the checkpoints come first

    assert cmd_verify(Namespace(path=str(run_dir))) == 0
    (work / "ckpt.pt").write_bytes(b"\x07" * 1000)  # same size, other bytes
    assert cmd_verify(Namespace(path=str(run_dir))) == 1
    out = capsys.readouterr().out
    assert "ckpt.pt: changed since it was written" in out and "2 of 3 as written" in out


def test_a_checkpoint_still_being_written_waits_and_the_sidecar_keeps_it_once(tmp_path):
    run_dir, d = tmp_path / "run", tmp_path / "ckpts"
    run_dir.mkdir()
    d.mkdir()
    w = foreign.ForeignCheckpoints(run_dir, tmp_path, since=0.0, roots=[d])
    try:
        (d / "model-step_7.safetensors").write_bytes(b"x" * 10)
        assert w.poll(3) == []  # just seen: not yet stable
        evs = w.final(3)
        assert [(e["step"], e["bytes"]) for e in evs] == [(7, 10)]
        again = foreign.ForeignCheckpoints(run_dir, tmp_path, since=0.0, roots=[d])
        assert again.final(3) == []  # recorded: not announced twice
        again.close()
    finally:
        w.close()
    assert foreign.verify(run_dir) == [(str((d / "model-step_7.safetensors").resolve()), None)]
