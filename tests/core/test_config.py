"""Profiles: every shipped YAML loads; every bad input is reported at once,
naming file, key and line, with exit code 2 and nothing written."""

from pathlib import Path

import pytest

from core.config import Profile, ProfileError, load_profile
from tests.conftest import REPO, run_core, sets

SHIPPED = sorted((REPO / "profiles").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_profile_loads_and_opens_with_its_command(path, monkeypatch):
    monkeypatch.chdir(REPO)
    p = load_profile(str(path))
    assert isinstance(p, Profile) and p.name == path.stem
    head = path.read_text().splitlines()[0]
    assert head.startswith("#"), "a profile opens with a comment: what it is for"
    assert f"--profile {path.stem}" in path.read_text(), "…and the exact command that runs it"


def test_shipped_profiles_cover_the_issue():
    assert {p.stem for p in SHIPPED} >= {"demo-walks", "tiny-text", "small-20m", "d12"}


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    return f


def test_every_problem_is_reported_together_with_file_key_and_line(tmp_path):
    f = _write(
        tmp_path,
        "name: x\nmodel:\n  n_layer: four\n  n_heads: 4\ntrain:\n  lr: -1\n  device: tpu\n",
    )
    with pytest.raises(ProfileError) as ei:
        load_profile(str(f))
    msg = str(ei.value)
    assert f"{f}:3: model.n_layer: expected an integer, got 'four'" in msg
    assert f"{f}:4: model.n_heads: unknown key" in msg and "did you mean 'n_head'" in msg
    assert f"{f}:6: train.lr: must be greater than 0, got -1.0" in msg
    assert f"{f}:7: train.device: expected auto, cpu or cuda, got 'tpu'" in msg
    assert len(ei.value.problems) == 4


def test_value_problems_all_at_once(tmp_path):
    f = _write(tmp_path, "train:\n  lr: -1\n  device: tpu\ndata:\n  val_fraction: 1.5\n")
    with pytest.raises(ProfileError) as ei:
        load_profile(str(f))
    keys = {(p.key, p.line) for p in ei.value.problems}
    assert {("train.lr", 2), ("train.device", 3), ("data.val_fraction", 5)} <= keys


def test_yaml_1e_minus_4_string_is_a_float(tmp_path):
    f = _write(tmp_path, "train:\n  lr: 1e-4\n  min_lr: 1e-5\n")
    p = load_profile(str(f))
    assert p.train.lr == 1e-4 and isinstance(p.train.lr, float)


def test_set_overrides_parse_as_yaml_and_name_the_flag():
    p = load_profile("demo-walks", ["train.lr=3e-4", "model.n_layer=3", "gate.stop_on_pass=false"])
    assert p.train.lr == 3e-4 and p.model.n_layer == 3 and p.gate.stop_on_pass is False
    with pytest.raises(ProfileError) as ei:
        load_profile("demo-walks", ["train.batch_size=big"])
    assert "from --set train.batch_size=big" in str(ei.value)


# --- through the real command: exit 2, a clear paragraph, no traceback, nothing written

BAD_INPUTS = {
    "malformed": ("model: {n_layer: 4\ntrain: [\n", "malformed YAML", None),
    "unknown_key": ("name: x\ntrian:\n  lr: 0.1\n", "trian: unknown key", 2),
    "wrong_type": ("train:\n  batch_size: sixteen\n", "train.batch_size: expected an integer", 2),
    "missing_path": (
        "data:\n  source: files\n  paths: [no/such/dir/*.txt]\ntokenizer: {path: t.json}\n",
        "data.paths[0]: matches no file",
        3,
    ),
    "bad_value": (
        "model:\n  n_head: 3\n  n_embd: 64\n",
        "model.n_embd: must be divisible by model.n_head",
        3,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_profile_exits_2_naming_file_key_line(case, tmp_path):
    text, needle, line = BAD_INPUTS[case]
    f = _write(tmp_path, text)
    before = f.read_bytes()
    run_dir = tmp_path / "run"
    r = run_core("--profile", str(f), "--run-dir", str(run_dir))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert str(f) in r.stderr and needle in r.stderr
    if line:
        assert f"{f}:{line}:" in r.stderr
    assert not run_dir.exists(), "a bad profile writes nothing"
    assert f.read_bytes() == before


def test_bad_set_value_exits_2():
    r = run_core(
        "--profile", "demo-walks", *sets("train.epochs=0"), "--run-dir", "/nonexistent/never"
    )
    assert (
        r.returncode == 2
        and "train.epochs: must be greater than 0, got 0 (from --set train.epochs=0)" in r.stderr
    )
