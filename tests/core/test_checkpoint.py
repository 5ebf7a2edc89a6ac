import json
import subprocess
import sys

import pytest
import torch

from core import checkpoint as C


def _save(d, step, val_loss=None, tags=()):
    meta = {
        "step": step,
        "epoch": 0,
        "tokens": step * 10,
        "val_loss": val_loss,
        "tags": ["latest", *tags],
        "config_hash": "c",
        "tokenizer_hash": "t",
    }
    state = {
        "step": step,
        "w": torch.full((64,), float(step)),
        "config_hash": "c",
        "tokenizer_hash": "t",
    }
    return C.save(d, state, meta).path


def test_save_writes_pt_then_sidecar_then_latest(tmp_path):
    p = _save(tmp_path, 7)
    assert p.name == "step-0000007.pt"
    side = json.loads((tmp_path / "step-0000007.json").read_text())
    assert side["sha256"] == C.sha256_file(p) and side["bytes"] == p.stat().st_size
    assert set(C.SIDECAR_KEYS) <= set(side)
    assert C.latest(tmp_path) == p
    assert C.verify(p, deep=True) is None
    assert not [f for f in tmp_path.iterdir() if "tmp" in f.name]  # no temporaries left


def test_retention_keeps_last_k_plus_best_gate_final_and_never_touches_foreign_files(tmp_path):
    foreign = {
        "notes.txt": b"mine",
        "step-1.pt": b"not ours: wrong digits",
        "model.pt": b"x",
        "step-0000003.pt.bak": b"backup",
    }
    for name, data in foreign.items():
        (tmp_path / name).write_bytes(data)
    _save(tmp_path, 1, val_loss=3.0)
    _save(tmp_path, 2, val_loss=1.0)  # best
    _save(tmp_path, 3, val_loss=2.0, tags=["gate"])
    for s in range(4, 9):
        _save(tmp_path, s, val_loss=5.0)
    _save(tmp_path, 9, val_loss=float("nan"))  # non-finite never becomes best
    deleted = C.retain(tmp_path, keep_last=3)
    kept = {p.name for p in C.list_checkpoints(tmp_path)}
    assert kept == {
        "step-0000002.pt",
        "step-0000003.pt",
        "step-0000007.pt",
        "step-0000008.pt",
        "step-0000009.pt",
    }
    assert all(p.name.startswith("step-") for p in deleted)
    for name, data in foreign.items():
        assert (tmp_path / name).read_bytes() == data
    # every kept checkpoint still has its sidecar; deleted ones lost both files
    for s in (1, 4, 5, 6):
        assert not (tmp_path / f"step-{s:07d}.json").exists()
    assert C.retain(tmp_path, keep_last=3) == []  # idempotent


def test_final_checkpoint_survives_retention(tmp_path):
    _save(tmp_path, 1, tags=["final"])
    for s in range(2, 6):
        _save(tmp_path, s)
    C.retain(tmp_path, keep_last=2)
    assert {p.name for p in C.list_checkpoints(tmp_path)} == {
        "step-0000001.pt",
        "step-0000004.pt",
        "step-0000005.pt",
    }


def test_find_resume_skips_corrupt_newest(tmp_path):
    _save(tmp_path, 1)
    p2 = _save(tmp_path, 2)
    data = bytearray(p2.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p2.write_bytes(bytes(data))
    found, skipped = C.find_resume(tmp_path)
    assert found.name == "step-0000001.pt"
    assert len(skipped) == 1 and "sha256" in skipped[0] and "step-0000002.pt" in skipped[0]


def test_leftover_temporaries_from_a_killed_save_are_cleaned_but_only_ours(tmp_path):
    (tmp_path / ".step-0000005.pt.tmp-999999").write_bytes(b"half")
    (tmp_path / ".latest.tmp-999999").write_bytes(b"half")
    (tmp_path / ".hidden-user-file").write_bytes(b"keep")
    _save(tmp_path, 1)
    C.retain(tmp_path, keep_last=3)
    names = {p.name for p in tmp_path.iterdir()}
    assert ".hidden-user-file" in names
    assert not any(n.endswith("tmp-999999") for n in names)


def test_retention_never_deletes_a_live_process_temporaries(tmp_path):
    """Another trainer mid-save in the same folder: its temporaries stay while it runs."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        (tmp_path / f".step-0000005.pt.tmp-{live.pid}").write_bytes(b"half")
        (tmp_path / f".step-0000005.json.tmp-{live.pid}").write_bytes(b"half")
        (tmp_path / f".step-0000004.pt.tmp-{dead.pid}").write_bytes(b"half")
        _save(tmp_path, 1)
        C.retain(tmp_path, keep_last=3)
        names = {p.name for p in tmp_path.iterdir()}
        assert f".step-0000005.pt.tmp-{live.pid}" in names
        assert f".step-0000005.json.tmp-{live.pid}" in names
        assert f".step-0000004.pt.tmp-{dead.pid}" not in names
    finally:
        live.kill()
        live.wait()


def test_a_failed_save_removes_its_temporary_and_keeps_latest(tmp_path, monkeypatch):
    """A full disk: torch.save raises RuntimeError (not OSError) after writing part of the file."""
    good = _save(tmp_path, 1)

    def full_disk(obj, f, *a, **k):
        f.write(b"x" * 4096)
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4096")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        _save(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "latest",
        "step-0000001.json",
        "step-0000001.pt",
    ]
    assert C.latest(tmp_path) == good and C.verify(good, deep=True) is None


def test_add_tags_rewrites_the_sidecar_and_the_checkpoint_still_verifies(tmp_path):
    p = _save(tmp_path, 3, tags=["best"])
    C.add_tags(p, ["interrupt", "best"])
    assert C.read_sidecar(p)["tags"] == ["latest", "best", "interrupt"]
    assert C.verify(p, deep=True) is None
