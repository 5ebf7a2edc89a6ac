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


# --- hostile input: YAML aliases, names that leave logs/, numbers that are not numbers


def _laughs(levels: int) -> str:
    """A "billion laughs": each anchor a list of nine aliases of the one before."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    top = f"l{levels - 1}"
    # and the same tree where typed fields would walk it (and print it in their errors)
    lines += [f"model: *{top}", f"train: {{lr: *{top}, batch_size: *{top}}}"]
    lines += [f"data: {{paths: *{top}}}", f"gate: {{metrics: {{x: *{top}}}}}"]
    return "\n".join(lines) + "\n"


def test_yaml_aliases_are_not_expanded(tmp_path):
    """9^9 strings if expanded; loading must stay linear in the file's size."""
    import signal
    import time

    f = _write(tmp_path, _laughs(9))

    def too_slow(*_):
        raise TimeoutError("loading a 9-level alias tree took over 5 s: aliases are expanded")

    old = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(5)
    try:
        t0 = time.perf_counter()
        with pytest.raises(ProfileError) as ei:
            load_profile(str(f))
        elapsed = time.perf_counter() - t0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert elapsed < 1.0
    msg = str(ei.value)
    assert len(msg) < 10_000, "an error shows a bounded excerpt of the value, not all of it"
    assert f"{f}:1: l0: unknown key" in msg
    # an error under an alias names the line where the alias is used
    assert f"{f}:10: model: expected a mapping" in msg
    assert f"{f}:11: train.lr: expected a number" in msg


def test_an_alias_in_a_valid_profile_still_loads(tmp_path):
    f = _write(tmp_path, "train:\n  lr: &lr 0.001\n  min_lr: *lr\nmodel: &m {n_layer: 2}\n")
    p = load_profile(str(f))
    assert p.train.min_lr == p.train.lr == 0.001 and p.model.n_layer == 2


@pytest.mark.parametrize(
    "name", ["../escape", "a/b", "/tmp/x", "..", ".", "has space", "semi;colon", "", "ö"]
)
def test_a_name_that_is_not_a_plain_file_name_is_refused(name, tmp_path):
    f = _write(tmp_path, f"name: {name!r}\n")
    with pytest.raises(ProfileError) as ei:
        load_profile(str(f))
    (problem,) = ei.value.problems
    assert (problem.file, problem.key, problem.line) == (str(f), "name", 1)
    assert "[A-Za-z0-9._-]" in problem.message and "logs/" in problem.message


def test_plain_names_are_accepted(tmp_path):
    for name in ("demo-walks", "d12", "run_2.v3", "A.b-c_d"):
        f = _write(tmp_path, f"name: {name}\n")
        assert load_profile(str(f)).name == name


NOT_FINITE = {
    "train.lr": ".nan",
    "train.grad_clip": ".inf",
    "eval.samples.temperature": "-.inf",
    "train.min_lr": "nan",  # the string form, read by float() as YAML 1.1 reads 1e-4
    "data.walks.class_a_frac": ".NaN",
    "gate.metrics.edge_compliance": ".inf",
}


def test_float_fields_must_be_finite_and_every_one_is_reported(tmp_path):
    text = (
        "train:\n  lr: .nan\n  grad_clip: .inf\n  min_lr: nan\n"
        "eval:\n  samples:\n    temperature: -.inf\n"
        "data:\n  walks:\n    class_a_frac: .NaN\n"
        "gate:\n  metrics:\n    edge_compliance: .inf\n"
    )
    f = _write(tmp_path, text)
    with pytest.raises(ProfileError) as ei:
        load_profile(str(f))
    got = {p.key: p for p in ei.value.problems}
    assert set(got) == set(NOT_FINITE), str(ei.value)
    lines = {"train.lr": 2, "train.grad_clip": 3, "eval.samples.temperature": 7}
    for key, line in lines.items():
        assert got[key].line == line
    assert all("a finite number" in p.message for p in got.values())


@pytest.mark.parametrize("key", sorted(NOT_FINITE))
def test_a_non_finite_set_is_refused_naming_the_flag(key):
    with pytest.raises(ProfileError) as ei:
        load_profile("demo-walks", [f"{key}={NOT_FINITE[key]}"])
    assert f"{key}: expected a finite number" in str(ei.value)
    assert f"(from --set {key}=" in str(ei.value)


def test_cockpit_validate_shows_name_and_number_problems_and_exits_2(tmp_path):
    from tests.conftest import cockpit

    f = _write(tmp_path, "name: ../../etc\ntrain:\n  lr: .inf\n")
    r = cockpit("validate", str(f))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{f}:1: name:" in r.stderr and f"{f}:3: train.lr: expected a finite number" in r.stderr
    assert "Traceback" not in r.stderr
