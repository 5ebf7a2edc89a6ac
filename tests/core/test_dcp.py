"""Sharded (DCP) checkpoints in one process: written under a temporary name and
renamed, every shard in the sidecar and verified, retention and `latest` as for
one file, async saves published when their files are written, and the weights
read back whole without a process group."""

from __future__ import annotations

import json

import pytest
import torch

from core import checkpoint as C
from core.config import ProfileError, checkpoint_format, load_profile
from core.dcp import ShardedSaver, load_sharded
from core.dcp_read import load_model_weights
from core.model import GPT, GPTConfig
from core.optim import Optimizers
from core.runtime import Dist


def _model_and_opt(seed: int = 0) -> tuple[GPT, Optimizers]:
    torch.manual_seed(seed)
    m = GPT(GPTConfig(64, 16, 1, 2, 32))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x = torch.randint(0, 64, (4, 17))
    m(x[:, :-1], x[:, 1:]).backward()
    opt.step()  # an optimizer with state to save
    return m, Optimizers({"adamw": opt}, 1e-2)


def _meta(step: int, val_loss=None, tags=()) -> dict:
    return {
        "step": step,
        "epoch": 0,
        "tokens": step * 10,
        "val_loss": val_loss,
        "tags": ["latest", *tags],
        "config_hash": "c",
        "tokenizer_hash": "t",
    }


def _trainer(step: int) -> dict:
    return {"step": step, "config_hash": "c", "tokenizer_hash": "t", "progress": {"step": step}}


def _save(saver, m, opt, step, val_loss=None, tags=()):
    got = []
    path = saver.save(m, opt, _trainer(step), _meta(step, val_loss, tags), got.append)
    saver.wait()
    return path, got


def test_a_sharded_checkpoint_lists_every_file_and_verify_checks_each(tmp_path):
    m, opt = _model_and_opt()
    saver = ShardedSaver(tmp_path, Dist(), torch.device("cpu"), use_async=False)
    path, got = _save(saver, m, opt, 7)
    assert path == tmp_path / "step-0000007" and path.is_dir()
    assert C.latest(tmp_path) == path and C.list_checkpoints(tmp_path) == [path]
    assert not [f for f in tmp_path.iterdir() if "tmp" in f.name]  # renamed when complete
    side = json.loads((tmp_path / "step-0000007.json").read_text())
    assert set(side["files"]) == {".metadata", "__0_0.distcp", "trainer.pt"}
    for name, f in side["files"].items():
        assert f["sha256"] == C.sha256_file(path / name)
        assert f["bytes"] == (path / name).stat().st_size
    assert side["bytes"] == sum(f["bytes"] for f in side["files"].values())
    assert (got[0].path, got[0].bytes, got[0].sha256) == (path, side["bytes"], side["sha256"])
    assert C.verify(path, deep=True) is None

    shard = path / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    why = C.verify(path)
    assert why is not None and "step-0000007/__0_0.distcp" in why and "corrupted" in why
    shard.write_bytes(bytes(data[:-10]))
    assert "truncated" in (C.verify(path) or "")
    shard.unlink()
    assert "__0_0.distcp: missing" in (C.verify(path) or "")


def test_a_file_not_in_the_sidecar_or_no_sidecar_fails_verification(tmp_path):
    m, opt = _model_and_opt()
    saver = ShardedSaver(tmp_path, Dist(), torch.device("cpu"), use_async=False)
    path, _ = _save(saver, m, opt, 3)
    (path / "__1_0.distcp").write_bytes(b"stray")
    assert "__1_0.distcp: not in the sidecar" in (C.verify(path) or "")
    (path / "__1_0.distcp").unlink()
    C.sidecar_path(path).unlink()
    assert "sidecar step-0000003.json is missing" in (C.verify(path) or "")
    assert C.find_resume(tmp_path)[0] is None


def test_sharded_round_trip_restores_model_and_optimizer_and_gathers_the_weights(tmp_path):
    m, opt = _model_and_opt(0)
    saver = ShardedSaver(tmp_path, Dist(), torch.device("cpu"), use_async=False)
    path, _ = _save(saver, m, opt, 1)
    m2, opt2 = GPT(GPTConfig(64, 16, 1, 2, 32)), None
    opt2 = Optimizers({"adamw": torch.optim.AdamW(m2.parameters(), lr=1e-2)}, 1e-2)
    load_sharded(path, m2, opt2, None)
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    for i in s1:
        assert torch.equal(s1[i]["exp_avg_sq"], s2[i]["exp_avg_sq"])
    whole = load_model_weights(path)
    assert set(whole) == set(m.state_dict())
    assert all(torch.equal(whole[k], v) for k, v in m.state_dict().items())
    state = C.load(path)  # as the post-flight reads any checkpoint
    assert state["step"] == 1 and set(state["model"]) == set(m.state_dict())


def test_async_save_is_published_when_written_and_reports_its_pause(tmp_path):
    m, opt = _model_and_opt()
    saver = ShardedSaver(tmp_path, Dist(), torch.device("cpu"), use_async=True)
    got: list = []
    before = {k: v.clone() for k, v in m.state_dict().items()}
    path = saver.save(m, opt, _trainer(5), _meta(5), got.append)
    with torch.no_grad():  # training goes on: the save holds the state as it was
        for q in m.parameters():
            q.add_(1.0)
    saver.close()
    assert not saver.in_flight() and len(got) == 1
    s = got[0]
    assert s.path == path and C.latest(tmp_path) == path and C.verify(path, deep=True) is None
    assert s.blocked_s is not None and 0 < s.blocked_s <= s.seconds
    whole = load_model_weights(path)
    assert all(torch.equal(whole[k], v) for k, v in before.items())


def test_retention_deletes_old_directories_and_dead_temporaries_alike(tmp_path):
    m, opt = _model_and_opt()
    saver = ShardedSaver(tmp_path, Dist(), torch.device("cpu"), use_async=False)
    _save(saver, m, opt, 1, val_loss=1.0)  # best
    _save(saver, m, opt, 2, val_loss=3.0, tags=["gate"])
    for s in (3, 4, 5, 6):
        _save(saver, m, opt, s, val_loss=5.0)
    dead = tmp_path / ".step-0000007.tmp-999999999"  # a killed writer's half directory
    dead.mkdir()
    (dead / "__0_0.distcp").write_bytes(b"half")
    (tmp_path / "step-0000009").write_bytes(b"a file named like a directory: not ours")
    C.retain(tmp_path, keep_last=2)
    kept = [p.name for p in C.list_checkpoints(tmp_path)]
    assert kept == ["step-0000001", "step-0000002", "step-0000005", "step-0000006"]
    assert not (tmp_path / "step-0000003.json").exists() and not dead.exists()
    assert (tmp_path / "step-0000009").is_file()


def test_saving_a_step_again_replaces_its_directory(tmp_path):
    m, opt = _model_and_opt()
    saver = ShardedSaver(tmp_path, Dist(), torch.device("cpu"), use_async=False)
    path, _ = _save(saver, m, opt, 4)
    (path / "__0_0.distcp").write_bytes(b"a killed run's leftovers")
    path2, _ = _save(saver, m, opt, 4)
    assert path2 == path and C.verify(path, deep=True) is None
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]


def test_checkpoint_format_and_async_keys(tmp_path):
    p = load_profile("demo-walks")
    assert p.checkpoint.format == "auto" and checkpoint_format(p) == "file"
    p = load_profile("demo-walks", ["checkpoint.async=true"])  # the YAML key is `async`
    assert p.checkpoint.async_ and checkpoint_format(p) == "dcp"
    assert checkpoint_format(load_profile("demo-walks", ["checkpoint.format=dcp"])) == "dcp"
    with pytest.raises(ProfileError) as e:
        load_profile("demo-walks", ["checkpoint.async=true", "checkpoint.format=file"])
    assert "checkpoint.async: async saves write dcp checkpoints" in str(e.value)
    with pytest.raises(ProfileError) as e:
        load_profile("demo-walks", ["checkpoint.format=zip"])
    assert "expected auto, file or dcp" in str(e.value)


def test_a_directory_named_on_resume_is_a_checkpoint_not_a_run(tmp_path):
    from argparse import Namespace

    from core.runstate import resolve_run_dir

    ck = tmp_path / "run" / "checkpoints" / "step-0000004"
    ck.mkdir(parents=True)
    args = Namespace(resume=str(ck), run_dir=None)
    assert resolve_run_dir(args, load_profile("demo-walks")) == (tmp_path / "run", ck)


def test_a_failed_save_leaves_no_half_directory_and_latest_unchanged(tmp_path):
    m, opt = _model_and_opt()
    saver = ShardedSaver(tmp_path, Dist(), torch.device("cpu"), use_async=False)
    good, _ = _save(saver, m, opt, 1)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        saver.save(m, opt, {"step": 2, "bad": lambda: 0}, _meta(2), lambda s: None)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert C.latest(tmp_path) == good and C.list_checkpoints(tmp_path) == [good]
