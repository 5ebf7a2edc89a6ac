"""The checkpoint watcher, the run model and the checkpoints panel on a sharded (DCP)
checkpoint written by the core's own saver: listed as one checkpoint with all its
files' bytes, verified shard by shard on the watcher's thread, a damaged shard named,
and the save's time and the pause it cost training shown from its event."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from cockpit.collect.ckwatch import CheckpointWatcher
from cockpit.commands.verify import cmd_verify
from cockpit.model.runmodel import RunModel
from cockpit.model.view import ViewBuilder
from cockpit.ui.widgets.base import Lines
from cockpit.ui.widgets.training import CheckpointsPanel
from core import checkpoint as C
from core import events as E
from core.dcp import ShardedSaver
from core.model import GPT, GPTConfig
from core.runtime import Dist


def _sharded(ckpt_dir, step: int, use_async: bool) -> tuple[C.Saved, ShardedSaver]:
    torch.manual_seed(0)
    m = GPT(GPTConfig(64, 16, 1, 2, 32))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    saver = ShardedSaver(ckpt_dir, Dist(), torch.device("cpu"), use_async)
    meta = dict(step=step, epoch=0, tokens=1, val_loss=1.5, tags=["latest"])
    meta |= dict(config_hash="c", tokenizer_hash="t")
    got: list[C.Saved] = []
    trainer = {"step": step, "config_hash": "c", "tokenizer_hash": "t"}
    saver.save(m, opt, trainer, meta, got.append)
    saver.close()
    return got[0], saver


def _scan_until(w: CheckpointWatcher, pred, timeout: float = 20.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        states = w.scan()
        if pred(states):
            return states
        time.sleep(0.02)
    raise AssertionError(f"watcher never got there: {w.scan()}")


def test_the_watcher_verifies_a_sharded_checkpoint_and_names_a_damaged_shard(tmp_path, capsys):
    saved, _ = _sharded(tmp_path, 12, use_async=True)
    w = CheckpointWatcher(tmp_path)
    try:
        (s,) = _scan_until(w, lambda st: st and st[0].verified is not None)
        assert (s.name, s.step, s.verified, s.latest) == ("step-0000012", 12, True, True)
        assert s.bytes == saved.bytes == C.read_sidecar(saved.path)["bytes"]
        assert s.shards == 3  # .metadata, __0_0.distcp, trainer.pt

        assert cmd_verify(SimpleNamespace(path=str(saved.path))) == 0
        assert "in 3 files" in capsys.readouterr().out

        shard = saved.path / "__0_0.distcp"
        shard.write_bytes(shard.read_bytes()[:-3])
        (s,) = _scan_until(w, lambda st: st and st[0].verified is False)
        assert "step-0000012/__0_0.distcp" in (s.why or "") and "truncated" in (s.why or "")
    finally:
        w.close()


def test_the_panel_shows_a_saves_time_and_the_pause_it_cost(tmp_path):
    saved, _ = _sharded(tmp_path / "checkpoints", 12, use_async=False)
    m = RunModel(run_dir=tmp_path)
    ev = E.Checkpoint(
        step=12, path=str(saved.path), bytes=saved.bytes, sha256=saved.sha256,
        seconds=2.5, tags=["latest"], blocked_s=0.04, t=100.0,
    )  # fmt: skip
    m.feed(ev.to_dict())
    w = CheckpointWatcher(tmp_path / "checkpoints")
    try:
        m.set_checkpoints(_scan_until(w, lambda st: st and st[0].verified))
    finally:
        w.close()
    c = m.checkpoints["step-0000012"]
    assert (c.seconds, c.blocked_s, c.shards, c.verified) == (2.5, 0.04, 3, True)
    out = Lines(120, 8)
    CheckpointsPanel().draw(ViewBuilder().build(m, 110.0), out)
    text = "\n".join("".join(t for t, _ in row) for row in out.rows)
    assert "✓      12" in text and "in 3" in text
    assert "2.5s, paused 0.040s" in text


def test_an_older_event_without_blocked_s_shows_no_pause():
    m = RunModel()
    m.feed({"v": 1, "t": 5.0, "type": "checkpoint", "step": 3, "path": "", "bytes": 9,
            "sha256": "x", "seconds": 1.0, "tags": ["latest"]})  # fmt: skip
    out = Lines(120, 8)
    CheckpointsPanel().draw(ViewBuilder().build(m, 10.0), out)
    text = "\n".join("".join(t for t, _ in row) for row in out.rows)
    assert "paused" not in text and "3" in text
