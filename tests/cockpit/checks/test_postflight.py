"""Post-flight on real tiny runs: the run's own eval events are the oracle for
perplexity and for the walks validator; the python validator is re-applied to
the samples it judged."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cockpit.checks.postflight_load import choose_checkpoint
from cockpit.commands.postflight import cmd_postflight, postflight_after_run, upsert_section
from core import checkpoint as C
from core import walks as W
from core.config import load_profile
from core.evaluate import python_is_valid
from core.model import GPT, GPTConfig
from tests.conftest import TINY_WALKS, events, run_core, sets

pytestmark = pytest.mark.slow

# long enough (and a high enough lr) that about half the generated walks are valid
WALKS = TINY_WALKS + [
    "train.max_steps=100",
    "train.epochs=null",
    "train.lr=1e-2",
    "train.min_lr=1e-3",
    "eval.every_epoch=false",
    "eval.every_steps=50",
    "eval.patience=null",
    "gate.metrics={}",
    "checkpoint.every_epoch=false",
    "checkpoint.every_steps=50",
]


@pytest.fixture(scope="module")
def walks_run(tmp_path_factory) -> Path:
    rd = tmp_path_factory.mktemp("pf") / "walks"
    run_core("--profile", "demo-walks", "--run-dir", str(rd), *sets(*WALKS), check_rc=0)
    return rd


@pytest.fixture
def run(walks_run, tmp_path) -> Path:
    """A private copy: post-flight writes into the run directory."""
    return Path(shutil.copytree(walks_run, tmp_path / walks_run.name))


def postflight(run_dir, capsys, checklist=None, json_out=True, checkpoint=None):
    rc = cmd_postflight(
        SimpleNamespace(
            run_dir=str(run_dir), json=json_out, checkpoint=checkpoint, checklist=checklist
        )
    )
    cap = capsys.readouterr()
    return rc, (json.loads(cap.out) if json_out and rc != 2 else cap.out), cap.err


def checklist(tmp_path, text: str) -> str:
    p = tmp_path / "pf.yaml"
    p.write_text(text)
    return str(p)


def step(out: dict, sid: str) -> dict:
    return next(s for s in out["steps"] if s["id"] == sid)


def evals_at(run_dir: Path, step_no: int) -> dict:
    return next(e for e in events(run_dir) if e["type"] == "eval" and e["step"] == step_no)


# -----------------------------------------------------------------------------


def test_perplexity_is_exp_of_the_runs_val_loss_and_json_has_the_preflight_shape(run, capsys):
    rc, out, _ = postflight(run, capsys)
    best = min(
        (c for c in C.list_checkpoints(run / "checkpoints") if "best" in C.read_sidecar(c)["tags"]),
        key=lambda c: C.read_sidecar(c)["val_loss"],
    )
    assert out["checkpoint"] == best.name
    ppl = step(out, "perplexity")
    ev = evals_at(run, C.read_sidecar(best)["step"])
    assert ppl["figures"]["val_ppl"] == pytest.approx(math.exp(ev["val_loss"]), rel=1e-4)
    assert ppl["figures"]["val_loss"] == pytest.approx(ev["val_loss"], rel=1e-5)
    assert best.name in ppl["message"] and "best" in ppl["message"]
    assert rc == (1 if out["status"] == "FAIL" else 0)
    # the shape of `cockpit preflight --json`, written to the run directory too
    assert {"profile", "status", "steps"} <= set(out) and out["profile"] == "demo-walks"
    for s in out["steps"]:
        assert {"id", "title", "status", "message", "figures", "findings"} <= set(s)
        for f in s["findings"]:
            assert set(f) == {"file", "line", "kind", "preview"}
    assert json.loads((run / "postflight.json").read_text()) == out
    assert [s["id"] for s in out["steps"]] == ["perplexity", "generations", "samples"]
    page = step(out, "samples")
    assert len(page["figures"]["samples"]) == len(page["findings"]) == 8


def test_generations_are_scored_by_the_walks_validator(run, capsys, tmp_path):
    cl = checklist(
        tmp_path,
        "name: t\nsteps:\n  - {id: generations, title: g, check: generations, params: {n: 64}}\n",
    )
    rc, out, _ = postflight(run, capsys, checklist=cl)
    fig = step(out, "generations")["figures"]
    ck = run / "checkpoints" / out["checkpoint"]
    # the same 64 greedy continuations as the run's own gate eval at that step: the same scores
    ev = evals_at(run, C.read_sidecar(ck)["step"])
    assert fig["edge_compliance"] == pytest.approx(ev["metrics"]["edge_compliance"])
    assert fig["rule_compliance"] == pytest.approx(ev["metrics"]["rule_compliance"])
    # valid rate: every walk judged whole by core.walks.walk_is_valid, recomputed here
    p = load_profile("demo-walks", WALKS)
    g, _, val = W.make_corpus(p.data.walks, p.data.context, p.data.val_fraction)
    model = GPT(GPTConfig(g.vocab_size, p.data.context, 1, 2, 32))
    model.load_state_dict(C.load(ck)["model"])
    k = p.data.walks.prompt_len
    with torch.no_grad():
        gen = model.eval().generate(val[:64, :k], val.size(1) - k).numpy()
    valid = [W.walk_is_valid(g, row, k) for row in gen]
    assert fig["n"] == 64 and fig["valid"] == sum(valid) and 0 < sum(valid) < 64
    assert fig["valid_rate"] == pytest.approx(sum(valid) / 64, abs=1e-4)
    assert rc == 0  # no thresholds in this checklist


def test_a_threshold_that_must_fail_fails_and_the_other_steps_still_run(run, capsys, tmp_path):
    cl = checklist(
        tmp_path,
        """name: impossible
steps:
  - {id: perplexity, title: p, check: perplexity, fail: {val_ppl: 1.0}, fix: train longer}
  - {id: generations, title: g, check: generations, params: {n: 20}, fail: {valid_rate: 1.01}}
  - {id: samples, title: s, check: samples, params: {n: 3}}
""",
    )
    rc, text, _ = postflight(run, capsys, checklist=cl, json_out=False)
    assert rc == 1
    assert "FAIL" in text and "fix for perplexity: train longer" in text
    saved = json.loads((run / "postflight.json").read_text())
    assert [s["status"] for s in saved["steps"]] == ["FAIL", "FAIL", "PASS"]
    assert "val_ppl" in saved["steps"][0]["message"] and saved["status"] == "FAIL"


def test_report_keeps_its_content_and_gets_one_section(run, capsys):
    original = (run / "report.md").read_text()
    postflight(run, capsys)
    after = (run / "report.md").read_text()
    assert after.startswith(original) and after.count("## Post-flight") == 1
    assert "| perplexity |" in after and "### Samples (samples)" in after
    # a section the user added after ours survives a re-run, which replaces ours in place
    (run / "report.md").write_text(after + "\n## My notes\n\nkeep me\n")
    assert postflight_after_run(run) in (0, 1)
    capsys.readouterr()
    again = (run / "report.md").read_text()
    assert again.startswith(original) and again.count("## Post-flight") == 1
    assert again.endswith("## My notes\n\nkeep me\n")
    assert not [f for f in run.iterdir() if ".tmp-" in f.name]  # atomic writes leave no temp


def test_bad_run_dir_checkpoint_or_checklist_exit_2_with_one_paragraph(run, capsys, tmp_path):
    def bad(rd, **kw):
        rc, out, err = postflight(rd, capsys, **kw)
        assert rc == 2 and out == ""
        assert "Traceback" not in err and err.startswith("error: ")
        assert "\n\n" not in err.strip()  # one paragraph (a checklist's problems one a line)
        return err

    assert str(tmp_path / "nope") in bad(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "no run.yaml" in bad(tmp_path / "empty")
    (tmp_path / "nockpt").mkdir()
    shutil.copy(run / "run.yaml", tmp_path / "nockpt" / "run.yaml")
    assert "holds no checkpoint" in bad(tmp_path / "nockpt")
    assert "no such file" in bad(run, checkpoint="step-9999999.pt")
    cl = checklist(tmp_path, "name: x\nsteps:\n  - {id: a, title: a, check: perplexty}\n")
    assert "did you mean 'perplexity'" in bad(run, checklist=cl)
    assert not (run / "postflight.json").exists()


def test_best_checkpoint_is_chosen_and_a_corrupt_one_skipped(run):
    ckpts = C.list_checkpoints(run / "checkpoints")
    first, last = ckpts[0], ckpts[-1]
    side = C.read_sidecar(first)
    side["tags"], side["val_loss"] = ["latest", "best"], 0.001  # make the oldest the best
    C.sidecar_path(first).write_text(json.dumps(side))
    path, why = choose_checkpoint(run)
    assert path == first and why.startswith("best")
    data = bytearray(first.read_bytes())
    data[-10] ^= 0xFF
    first.write_bytes(bytes(data))
    path, why = choose_checkpoint(run)
    assert path == last and why.startswith("final") and "corrupted" in why


def test_upsert_section_ignores_headings_inside_code_fences():
    text = "# Run\n\n## Samples\n\n```\n## not a heading\n```\n"
    sec = "## Post-flight\n\nbody with\n```\n## inside\n```\n"
    once = upsert_section(text, sec)
    assert once == text + "\n" + sec
    twice = upsert_section(once + "\n## Later\n", sec.replace("body", "new"))
    assert twice == text + "\n" + sec.replace("body", "new") + "\n## Later\n"


# -----------------------------------------------------------------------------
# tiny-text: the python validator

TEXTS = ["textwrap.py", "string.py", "bisect.py", "heapq.py", "shlex.py", "fnmatch.py"]


def test_text_run_generations_are_judged_by_ast_parse(tmp_path, capsys):
    import sysconfig

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in TEXTS:
        shutil.copy(Path(sysconfig.get_paths()["stdlib"]) / name, corpus / name)
    cfg = [
        f"data.paths=['{corpus}/*.py']",
        "data.generate=null",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.context=32",
        "data.stride=32",
        "data.val_fraction=0.2",
        f"tokenizer.path={tmp_path / 'tok.json'}",
        "tokenizer.vocab_size=512",
        "model.n_layer=1",
        "model.n_head=2",
        "model.n_embd=32",
        "train.batch_size=4",
        "train.max_steps=6",
        "eval.every_steps=3",
        "eval.val_batches=2",
        "eval.samples.max_new_tokens=8",
        "checkpoint.every_steps=3",
    ]
    rd = tmp_path / "run"
    run_core("--profile", "tiny-text", "--run-dir", str(rd), *sets(*cfg), check_rc=0)
    cl = checklist(
        tmp_path,
        """name: t
steps:
  - {id: perplexity, title: p, check: perplexity}
  - {id: generations, title: g, check: generations, params: {n: 9}}
  - {id: samples, title: s, check: samples, params: {n: 9}}
""",
    )
    rc, out, _ = postflight(rd, capsys, checklist=cl)
    assert rc == 0
    ck = rd / "checkpoints" / out["checkpoint"]
    ev = evals_at(rd, C.read_sidecar(ck)["step"])
    assert step(out, "perplexity")["figures"]["val_ppl"] == pytest.approx(ev["val_ppl"], rel=1e-4)
    gen, page = step(out, "generations")["figures"], step(out, "samples")["figures"]["samples"]
    assert gen["validator"] == "python" and gen["n"] == len(page) == 9
    assert {s["prompt"] for s in page} == {"def ", "class ", "import "}
    judged = [python_is_valid(s["prompt"], s["text"]) for s in page]
    assert [s["valid"] for s in page] == judged
    assert gen["valid_rate"] == pytest.approx(sum(judged) / 9, abs=1e-4)
