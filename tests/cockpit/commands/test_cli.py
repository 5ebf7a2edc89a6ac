"""`cockpit verify` and `cockpit validate` through the real command."""

import pytest
import torch

from core import checkpoint as C
from tests.conftest import cockpit


def _run_with_checkpoints(tmp_path, n=3):
    ck = tmp_path / "run" / "checkpoints"
    for s in range(1, n + 1):
        meta = {
            "step": s,
            "epoch": 0,
            "tokens": s,
            "val_loss": None,
            "tags": ["latest"],
            "config_hash": "c",
            "tokenizer_hash": "t",
        }
        C.save(
            ck, {"step": s, "w": torch.randn(256), "config_hash": "c", "tokenizer_hash": "t"}, meta
        )
    return tmp_path / "run", ck


def test_verify_ok(tmp_path):
    rd, ck = _run_with_checkpoints(tmp_path)
    r = cockpit("verify", str(rd))
    assert r.returncode == 0, r.stdout
    assert "3 checkpoint(s) valid" in r.stdout and "latest -> step-0000003.pt" in r.stdout
    r = cockpit("verify", str(ck / "step-0000002.pt"))
    assert r.returncode == 0 and r.stdout.startswith("OK")


def _flip(p):
    b = bytearray(p.read_bytes())
    b[len(b) // 3] ^= 0x01
    p.write_bytes(bytes(b))


def _truncate(p):
    p.write_bytes(p.read_bytes()[:-100])


def _drop_sidecar(p):
    C.sidecar_path(p).unlink()


@pytest.mark.parametrize(
    ("damage", "reason"), [(_flip, "sha256"), (_truncate, "truncated"), (_drop_sidecar, "sidecar")]
)
def test_verify_catches_damage(tmp_path, damage, reason):
    rd, ck = _run_with_checkpoints(tmp_path)
    target = ck / "step-0000002.pt"
    damage(target)
    for arg in (str(rd), str(target)):
        r = cockpit("verify", arg)
        assert r.returncode == 1, r.stdout
        assert "INVALID" in r.stdout and "step-0000002" in r.stdout and reason in r.stdout
        assert "Traceback" not in r.stderr


def test_verify_latest_pointing_at_a_broken_checkpoint(tmp_path):
    rd, ck = _run_with_checkpoints(tmp_path)
    _flip(ck / "step-0000003.pt")
    r = cockpit("verify", str(rd))
    assert r.returncode == 1 and "INVALID latest" in r.stdout


def test_verify_missing_path(tmp_path):
    r = cockpit("verify", str(tmp_path / "nope"))
    assert r.returncode == 1 and "no such" in r.stdout


@pytest.mark.parametrize(
    ("profile", "params"),
    [("small-20m", "17,301,504"), ("d12", "91,226,112"), ("demo-walks", "409,728")],
)
def test_validate_reports_parameter_counts(profile, params):
    r = cockpit("validate", profile)
    assert r.returncode == 0, r.stderr
    assert params in r.stdout


def test_validate_bad_profile_exits_2(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("model:\n  n_layer: -1\n")
    r = cockpit("validate", str(f))
    assert r.returncode == 2 and f"{f}:2: model.n_layer: must be greater than 0" in r.stderr
