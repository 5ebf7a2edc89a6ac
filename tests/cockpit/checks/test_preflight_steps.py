"""The pre-flight steps that decide whether a run is worth starting: secrets (and
its fix), sizing, the probe against a real run, and `cockpit run` with its
pre-flight saved as preflight.json."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cockpit.checks.base import Context
from cockpit.checks.cost import check_probe, check_sizing, param_counts
from cockpit.checks.engine import StepResult, load_checklist
from cockpit.checks.secrets_files import scan_files
from core.config import load_profile
from tests.cockpit.checks.test_secrets import SECRETS, _assert_no_secret, _doc
from tests.conftest import REPO, TINY_WALKS, cockpit, events, sets

FILLER = "the quick brown fox writes a training loop and watches the loss go down\n"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def leaky(tmp_path):
    """A profile whose data holds every planted secret, and a checklist of dataset + secrets."""
    data = tmp_path / "data"
    data.mkdir()
    doc, where = _doc()
    (data / "notes.txt").write_text(FILLER * 4000 + doc)  # > 1 MB in all: the dataset step passes
    (data / "clean.txt").write_text(FILLER * 12000)
    profile = tmp_path / "leaky.yaml"
    profile.write_text(
        f"""name: leaky
data: {{source: files, paths: ["{data}/*.txt"], context: 32, stride: 32}}
tokenizer: {{path: "{tmp_path}/tok.json", vocab_size: 512}}
model: {{n_layer: 1, n_head: 2, n_embd: 32}}
train: {{max_steps: 10, epochs: null, batch_size: 4}}
"""
    )
    checklist = tmp_path / "cl.yaml"
    checklist.write_text(
        f"""name: secrets-only
steps:
  - {{id: dataset, title: data, check: dataset, fail: {{bytes: 1000000}}}}
  - {{id: secrets, title: secrets, check: secrets, params: {{allowlist: "{tmp_path}/allow"}}}}
"""
    )
    first = 4000  # lines of filler before the document
    lines = {s: (first + line, kind) for s, (line, kind) in where.items()}
    return profile, checklist, data, lines


def test_secrets_step_names_file_and_line_and_never_the_secret(leaky):
    profile, checklist, data, where = leaky
    r = cockpit("preflight", "--profile", str(profile), "--checklist", str(checklist), "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    step = out["steps"][1]
    assert step["status"] == "FAIL" and out["status"] == "FAIL"
    got = {(f["line"], f["kind"]) for f in step["findings"]}
    assert got == {(str(line), kind) for line, kind in where.values()}
    assert {f["file"] for f in step["findings"]} == {str(data / "notes.txt")}
    assert f"the first at {data / 'notes.txt'}:" in step["message"]
    _assert_no_secret(r.stdout + r.stderr)
    r = cockpit("preflight", "--profile", str(profile), "--checklist", str(checklist), "--yes")
    assert (
        r.returncode == 1
        and "fix for secrets: see the message above (--fix applies it)" in r.stdout
    )
    _assert_no_secret(r.stdout + r.stderr)


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
def test_secrets_fix_trains_on_redacted_copies_and_keeps_the_originals(leaky):
    profile, checklist, data, _ = leaky
    before = {p.name: _sha(p) for p in data.iterdir()}
    r = cockpit(
        "preflight", "--profile", str(profile), "--checklist", str(checklist), "--json", "--fix"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    step = out["steps"][1]
    assert step["status"] == "PASS" and step["findings"] == []
    copies = Path(step["fixed"]["path"])
    assert copies.parent == data.parent and copies.name.startswith("data-redacted-")
    assert step["fixed"]["files_changed"] == 1
    assert {p.name: _sha(p) for p in data.iterdir()} == before  # originals byte-identical
    assert scan_files(sorted(copies.glob("*.txt"))) == []  # the copies re-scan clean
    assert out["sets"] == [f'data.paths=["{copies}"]']  # the run reads the copies
    manifest = (copies / "manifest.json").read_text()
    for s in SECRETS:
        assert s not in manifest and s not in (copies / "notes.txt").read_text()
    _assert_no_secret(r.stdout + r.stderr)
    # the allowlist names a false positive by its sha256: allow them all, and it passes
    findings = json.loads(
        cockpit(
            "preflight", "--profile", str(profile), "--checklist", str(checklist), "--json"
        ).stdout
    )["steps"][1]["findings"]
    assert findings and all("sha256" in f for f in findings)
    (profile.parent / "allow").write_text("".join(f["sha256"] + "\n" for f in findings))
    r = cockpit("preflight", "--profile", str(profile), "--checklist", str(checklist), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["steps"][1]["status"] == "PASS"


def _sizing(profile: str, nbytes: float, bpt: float, *overrides: str) -> StepResult:
    spec = next(s for s in load_checklist("pretrain").steps if s.id == "sizing")
    ctx = Context(load_profile(profile, list(overrides)), profile_ref=profile)
    ctx.figures = {"dataset": {"bytes": nbytes}, "compression": {"bytes_per_token": bpt}}
    r = StepResult("sizing", "sizing")
    check_sizing(spec, ctx, r, lambda *a: None)
    return r


def test_sizing_ratio_table_and_chinchilla():
    n = param_counts(load_profile("tiny-text"))[0]
    r = _sizing("tiny-text", 40e6, 4.0)  # 10M tokens
    f = r.figures
    assert r.status == "PASS" and f["params"] == n and f["tokens"] == 10_000_000
    assert f["param_per_token"] == pytest.approx(n / 10e6, rel=1e-3)
    assert f["chinchilla_tokens"] == 20 * n
    assert f["chinchilla_epochs"] == pytest.approx(20 * n / 10e6, rel=1e-2)
    assert f["recommended_model"] == "d12"  # the model-size table: d12 under 100M tokens
    assert _sizing("tiny-text", 4 * 200e6, 4.0).figures["recommended_model"] == "d16"
    assert _sizing("tiny-text", 4 * 600e6, 4.0).figures["recommended_model"] == "d24"
    # pretrain.yaml: WARN above 5 params a token, a severe WARN above 10
    mid = _sizing("tiny-text", 4 * n / 7, 4.0)
    assert mid.status == "WARN" and mid.figures["risk"] == "moderate"
    assert "moderate overfitting risk" in mid.message
    hi = _sizing("tiny-text", 4 * n / 20, 4.0)
    assert hi.status == "WARN" and hi.figures["risk"] == "extreme"
    assert "extreme overfitting risk" in hi.message


@pytest.mark.heavy
@pytest.mark.slow
def test_probe_estimate_within_25_percent_of_the_real_run(tmp_path):
    spec = next(s for s in load_checklist("pretrain").steps if s.id == "probe")
    ctx = Context(load_profile("tiny-text"), logs=tmp_path, profile_ref="tiny-text")
    r = StepResult("probe", "probe")
    check_probe(spec, ctx, r, lambda *a: None)
    assert r.status == "PASS", r.message
    f = r.figures
    assert f["total_steps"] == 300 and f["tokens_per_s"] > 0 and f["peak_mem_mib"] > 100
    assert list(tmp_path.iterdir()) == []  # the probe's own run directory is gone
    # the real thing: the first 50 steps of the same profile
    d = tmp_path / "real"
    subprocess.run(
        [sys.executable, "-m", "core.train", "--profile", "tiny-text", "--run-dir", str(d)]
        + sets("train.max_steps=55", "checkpoint.every_steps=null", "eval.every_steps=null"),
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    steps = [e for e in events(d) if e["type"] == "step"]
    real_s = steps[49]["t"] - steps[0]["t"] + steps[0]["step_ms"] / 1e3
    est_s = 50 * f["step_ms"] / 1e3
    assert abs(est_s - real_s) <= 0.25 * real_s, (est_s, real_s)


@pytest.mark.heavy
@pytest.mark.slow
def test_run_does_preflight_first_and_saves_it(tmp_path):
    d = tmp_path / "run"
    r = cockpit(
        "run", "--headless", "--yes", "--run-dir", str(d), *sets(*TINY_WALKS, "train.epochs=1")
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pre-flight: pretrain for demo-walks — PASS" in r.stdout
    assert "Command      cockpit run --profile demo-walks --set data.walks.n_nodes=32" in r.stdout
    saved = json.loads((d / "preflight.json").read_text())
    ids = [s["id"] for s in saved["steps"]]
    assert ids == [
        "dataset", "secrets", "tokenizer", "compression", "sizing", "probe", "disk", "gpu"
    ]  # fmt: skip
    assert saved["status"] == "PASS"
    probe = saved["steps"][ids.index("probe")]
    assert probe["status"] == "PASS" and probe["figures"]["step_ms"] > 0
    assert [e["status"] for e in events(d) if e["type"] == "run_end"] == ["completed"]
    # a failing pre-flight launches nothing and says how to go on
    d2 = tmp_path / "never"
    r = cockpit(
        "run", "--headless", "--run-dir", str(d2), "--set", "checkpoint.keep_last=100000000"
    )
    assert r.returncode == 1 and "pre-flight FAILED; nothing launched" in r.stderr
    assert "--skip-preflight" in r.stderr and not d2.exists()
