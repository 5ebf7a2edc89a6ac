"""The checklist engine: YAML validated like a profile, steps run in order,
the first FAIL stops the rest, and `cockpit preflight --yes/--json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cockpit.checks.base import Context
from cockpit.checks.engine import CHECKLISTS_DIR, load_checklist, run_checklist
from cockpit.collect.gpu import GpuSampler
from core.config import load_profile
from core.yamlmap import ProfileError
from tests.conftest import cockpit


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", sorted(CHECKLISTS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_checklist_loads(path):
    cl = load_checklist(str(path))
    assert cl.steps and all(s.id and s.title for s in cl.steps)


def test_every_problem_reported_with_its_line(tmp_path):
    p = write(
        tmp_path,
        """name: bad
steps:
  - id: a
    title: A
    check: dsik
  - id: a
    title: again
    run: "true"
  - id: c
    title: both
    check: gpu
    run: "true"
  - id: d
    title: D
    check: disk
    warn: {roominess: 2}
""",
    )
    with pytest.raises(ProfileError) as e:
        load_checklist(str(p))
    msg = str(e.value)
    assert msg.startswith(f"4 problems in checklist {p}:")
    assert f"{p}:5: steps[0].check: unknown kind `dsik`" in msg and "did you mean 'disk'?" in msg
    assert f"{p}:6: steps[1].id: `a` is used by an earlier step" in msg
    assert f"{p}:9: steps[2]: give a step exactly one of `check`" in msg
    assert (
        f"{p}:16: steps[3].warn.roominess: `disk` has no warn `roominess` (known: headroom)" in msg
    )


def test_first_fail_stops_the_rest(tmp_path):
    p = write(
        tmp_path,
        """name: t
steps:
  - {id: ok, title: fine, run: "echo all good"}
  - {id: bad, title: breaks, run: "echo broken >&2; exit 3"}
  - {id: later, title: never, run: "touch should-not-exist"}
""",
    )
    seen = []
    results = run_checklist(
        load_checklist(str(p)),
        Context(load_profile("demo-walks")),
        lambda r: seen.append((r.id, r.status)),
    )
    assert [(r.id, r.status) for r in results] == [
        ("ok", "PASS"),
        ("bad", "FAIL"),
        ("later", "SKIP"),
    ]
    assert results[1].message == "`echo broken >&2; exit 3` exited 3: broken"
    assert results[2].message == "not run: step `bad` failed"
    assert seen == [  # a display sees each step start and end
        ("ok", "RUNNING"),
        ("ok", "PASS"),
        ("bad", "RUNNING"),
        ("bad", "FAIL"),
        ("later", "SKIP"),
    ]
    assert not Path("should-not-exist").exists()


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
def test_preflight_json_and_exit_codes(tmp_path):
    r = cockpit("preflight", "--profile", "demo-walks", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["profile"] == "demo-walks" and out["status"] == "PASS"
    steps = {s["id"]: s for s in out["steps"]}
    dataset, disk, gpu = steps["dataset"], steps["disk"], steps["gpu"]
    assert dataset["status"] == "SKIP" and "walks: made on the fly" in dataset["message"]
    assert steps["tokenizer"]["status"] == steps["compression"]["status"] == "SKIP"
    assert set(disk) == {"id", "title", "status", "message", "figures", "findings", "seconds"}
    assert disk["figures"]["free_mib"] > disk["figures"]["need_mib"] > 0
    # the machine's GPU state is an input: asked of the sampler the step uses
    sampler = GpuSampler()
    has_gpu = sampler.sample().available
    sampler.close()
    r = cockpit("preflight", "--json", "--set", "train.device=cuda")
    cuda = json.loads(r.stdout)["steps"][-1]
    if not has_gpu:  # fine for a CPU profile, a FAIL for one that asks for CUDA
        assert gpu["status"] == "PASS" and gpu["message"].startswith("no GPU (")
        assert r.returncode == 1
        assert cuda["status"] == "FAIL"
        assert "train.device=cuda, but there is no GPU" in cuda["message"]
    else:  # the devices are listed, for a CPU profile and a CUDA one alike
        assert gpu["figures"]["devices"] >= 1 and " GPU(s), driver " in gpu["message"]
        assert cuda["figures"]["devices"] >= 1 and "no GPU" not in cuda["message"]
    # a run that would keep more checkpoints than the disk holds (the disk step alone:
    # the full checklist above already ran the probe)
    disk_only = write(
        tmp_path, "name: d\nsteps:\n  - {id: disk, title: room, check: disk, fix: free space}\n"
    )
    r = cockpit(
        "preflight",
        "--yes",
        "--checklist",
        str(disk_only),
        "--set",
        "checkpoint.keep_last=100000000",
    )
    assert r.returncode == 1 and "fix for disk: free space" in r.stdout
    bad = write(tmp_path, "name: x\nsteps: []\n")
    r = cockpit("preflight", "--yes", "--checklist", str(bad))
    assert r.returncode == 2 and "steps: a checklist needs at least one step" in r.stderr
    assert "Traceback" not in r.stderr


def dataset_result(tmp_path, *paths: Path):
    p = write(
        tmp_path,
        "name: d\nsteps:\n  - {id: dataset, title: data, check: dataset, fail: {bytes: 1000000}}\n",
    )
    prof = load_profile(
        "tiny-text", [f"data.paths={[str(x) for x in paths]}", "data.generate=null"]
    )
    (r,) = run_checklist(load_checklist(str(p)), Context(prof))
    return r


def test_dataset_passes_on_real_shards_and_counts_what_is_there(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = [f"def f{i}():\n    return {i}\n" * 200 for i in range(300)]  # ~1.3 MB of text
    pq.write_table(pa.table({"text": docs + ["", docs[0]]}), tmp_path / "a.parquet")
    r = dataset_result(tmp_path, tmp_path / "a.parquet")
    assert r.status == "PASS", r.message
    assert r.figures["files"] == 1 and r.figures["documents"] == 301
    assert r.figures["empty_share"] == round(1 / 302, 4)
    assert r.figures["duplicate_share"] == round(1 / 301, 4)


def test_dataset_fails_on_too_little_text_and_on_a_corrupt_shard(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("hello world\n" * 1000)
    r = dataset_result(tmp_path, small)
    assert r.status == "FAIL" and r.message.startswith("only 12,000 bytes of text in 1 file(s)")
    bad = tmp_path / "shard-0001.parquet"
    bad.write_bytes(b"PAR1" + bytes(range(256)) * 40)  # random bytes with a parquet name
    r = dataset_result(tmp_path, small, bad)
    assert r.status == "FAIL" and r.message.startswith(f"{bad}: not a readable parquet file")
    assert r.findings[0]["file"] == str(bad)


def test_tokenizer_and_compression_against_a_real_tokenizer(tmp_path):
    from core.data import train_tokenizer

    text = tmp_path / "code.txt"
    docs = [
        f"def handler_{i}(event, context):\n    return {{'status': {i % 7}}}\n" for i in range(3000)
    ]
    text.write_text("".join(docs))
    tok_path = tmp_path / "tok.json"
    n = train_tokenizer(docs, 300, tok_path).get_vocab_size()
    p = write(
        tmp_path,
        """name: t
steps:
  - {id: tokenizer, title: tok, check: tokenizer}
  - id: compression
    title: bpt
    check: compression
    warn: {min_bytes_per_token: 3.5, max_bytes_per_token: 5.0}
""",
    )
    cl = load_checklist(str(p))

    def run(*sets):
        prof = load_profile("tiny-text", [f"data.paths=['{text}']", *sets])
        return run_checklist(cl, Context(prof))

    tok, comp = run(f"tokenizer.path={tok_path}", f"tokenizer.vocab_size={n}")
    assert tok.status == "PASS" and tok.figures == {"vocab_size": n, "round_trip_failures": 0}
    bpt = comp.figures["bytes_per_token"]
    assert comp.figures["sample_bytes"] == text.stat().st_size
    assert 1.0 < bpt < 3.5 and comp.status == "WARN" and "compresses poorly" in comp.message
    tok, comp = run(f"tokenizer.path={tok_path}", "tokenizer.vocab_size=8192")
    assert tok.status == "FAIL" and f"has {n} tokens, the profile says" in tok.message
    assert comp.status == "SKIP"  # after a FAIL
    tok, comp = run(f"tokenizer.path={tmp_path / 'none.json'}")
    assert tok.status == "WARN" and "does not exist yet: the run trains" in tok.message
    assert comp.status == "SKIP" and comp.message == "no tokenizer to measure yet"
