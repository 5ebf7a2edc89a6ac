"""Validators (core/validators.py) on hand-written good and bad texts, the profile
errors a bad eval.validator makes, and each new validator end to end: a tiny run
on its generated corpus, scored by the gate and the eval samples, then
`cockpit postflight RUN_DIR` re-judging the checkpoint's generations."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from core import validators as V
from core.config import ProfileError, gate_metric_names, load_profile
from tests.conftest import REPO, cockpit, events, result, run_core, sets

SCHEMA = REPO / "profiles" / "schemas" / "workflow.schema.json"
GOOD_WF = '{"name": "b", "on": ["push"], "steps": [{"name": "t", "run": "make"}]}'

# -----------------------------------------------------------------------------
# json


def test_json_complete_value_and_trailing_text_ignored_and_said():
    ok = V.json_verdict("{", '"a": 1}')
    assert ok.valid and ok.checks == {"valid_json": True} and ok.note == ""
    trail = V.json_verdict("{", '"a": [1, 2]}\n{"a": ')
    assert trail.valid and "trailing text" in trail.note and '{"a":' in trail.note


@pytest.mark.parametrize("text", ['"a": 1', '"a": 1,}', "NaN", "", "'a'"])
def test_json_cut_or_not_json_is_invalid(text):
    v = V.json_verdict("{" if text.startswith('"a"') else "", text)
    assert not v.valid and v.checks == {"valid_json": False} and v.note.startswith("not JSON")


def test_json_schema_pass_and_fail_are_reported_apart_from_validity():
    j = V.validator_for("json", str(SCHEMA))
    assert j is not None and j.metrics == ("valid_json", "schema_ok")
    good = j.judge("", GOOD_WF)
    assert good.valid and good.checks == {"valid_json": True, "schema_ok": True}
    missing = j.judge("", '{"name": "b", "on": ["push"]}')
    assert not missing.valid and missing.checks == {"valid_json": True, "schema_ok": False}
    assert "'steps' is a required property" in missing.note
    assert j.rates([good, missing]) == {"valid_json": 1.0, "schema_ok": 0.5}
    assert V.validator_for("json").metrics == ("valid_json",)  # type: ignore[union-attr]


def test_a_bad_schema_file_is_a_profile_error(tmp_path):
    bad = tmp_path / "s.json"
    bad.write_text('{"type": 12}')
    probs = V.profile_problems("json", str(bad), "files")
    assert probs and probs[0][0] == "eval.json_schema" and "not a valid JSON Schema" in probs[0][1]
    assert "no such file" in V.profile_problems("json", str(tmp_path / "x.json"), "files")[0][1]
    assert V.profile_problems("yaml", str(SCHEMA), "files") == [
        ("eval.json_schema", "only the json validator reads a schema")
    ]


# -----------------------------------------------------------------------------
# yaml


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("a: 1\nb: [2, 3]\n", True),
        ("- x\n- y\n", True),
        ("just words", False),  # a scalar: any text at all parses as one
        ("a: [1, 2\nb: 3\n", False),
        ("a: 1\nb: 'cut mid str", True),  # the cut last line is left out, as python's rule
    ],
)
def test_yaml_mapping_or_sequence_only(text, valid):
    v = V.validator_for("yaml")
    assert v is not None and v.judge("", text).valid is valid


def test_yaml_scalar_says_why():
    assert "not a mapping or sequence" in V.validator_for("yaml").judge("", "42").note  # type: ignore[union-attr]


# -----------------------------------------------------------------------------
# c

PROG = '#include <stdio.h>\nint main(void)\n{\n    printf("%d\\n", 1);\n    return 0;\n}\n'


def test_open_braces_skip_comments_strings_and_chars():
    assert V.open_braces("int f() { /* { */ // {\n char c = '{'; s = \"{\"; \n") == 1
    assert V.open_braces("int f() { if (x) { } }") == 0


def c_judges() -> list:
    """The checker this machine has, plus the tree-sitter fallback when it is installed."""
    out = [V._c(V.c_checker()[1])] if V.c_checker() else []  # type: ignore[index]
    try:
        import tree_sitter
        import tree_sitter_c

        parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_c.language()))
        out.append(V._c(lambda code: (not parser.parse(code.encode()).root_node.has_error, "")))
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("judge", c_judges(), ids=lambda j: "checker")
def test_c_prompts_completed_and_judged(judge):
    # the `#include` prompt, completed by the sample
    assert judge("#include", PROG[len("#include") :]).valid
    # `int main` cut inside its body: complete lines kept, the open block closed
    v = judge("int main", "(void)\n{\n    int x = 1;\n    if (x) {\n        x = 2;\n        ret")
    assert v.valid and v.note == "open blocks closed"
    # a broken line stays broken
    assert not judge("int main", "(void)\n{\n    int x = ;\n    return 0;\n}\n").valid
    assert not judge("int main", "(void {\n}\n").valid


def test_c_checker_here_is_named_in_the_label():
    v = V.validator_for("c")
    assert v is not None and v.label.startswith("c (") and v.metrics == ("valid_c",)
    if shutil.which("cc"):
        assert v.label == "c (cc -fsyntax-only)"
        assert "error" in v.judge("", "int main(void) { return x; }\n").note


def test_no_compiler_and_no_tree_sitter_is_a_clear_profile_error(monkeypatch):
    V.c_checker.cache_clear()
    monkeypatch.setattr(V.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "tree_sitter", None)  # import raises ImportError
    try:
        assert V.profile_problems("c", None, "files") == [("eval.validator", V.C_UNAVAILABLE)]
    finally:
        V.c_checker.cache_clear()


# -----------------------------------------------------------------------------
# module:function


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_checks.py").write_text(
        "def short(prompt, text):\n    return len(text) < 5\n"
        "def boom(prompt, text):\n    raise RuntimeError('no')\nNOT_FN = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("my_checks", None)


def test_module_function_is_resolved_and_called(user_module):
    v = V.validator_for("my_checks:short")
    assert v is not None and v.metrics == ("valid_custom",)
    assert v.judge("p", "abc").valid and not v.judge("p", "abcdefgh").valid
    boom = V.validator_for("my_checks:boom").judge("p", "x")  # type: ignore[union-attr]
    assert not boom.valid and "RuntimeError" in boom.note


def test_bad_references_are_profile_errors_with_file_key_and_line(user_module):
    f = user_module / "p.yaml"
    f.write_text(
        "name: x\ndata:\n  source: files\n  paths: [p.yaml]\ntokenizer:\n  path: t.json\n"
        "eval:\n  validator: my_checks:nope\n"
    )
    with pytest.raises(ProfileError) as ei:
        load_profile(str(f))
    (p,) = ei.value.problems
    assert (p.file, p.key, p.line) == (str(f), "eval.validator", 8)
    assert "has no attribute 'nope'" in p.message
    for ref, says in [
        ("no_such_mod:f", "cannot import module 'no_such_mod'"),
        ("my_checks:NOT_FN", "is a int, not a function"),
        ("my_checks:", "expected module:function"),
        ("jsn", "expected null, python, json, yaml, c, walks or module:function"),
    ]:
        ((key, message),) = V.profile_problems(ref, None, "files")
        assert key == "eval.validator" and says in message


def test_every_validator_error_is_collected_with_the_others(tmp_path):
    f2 = tmp_path / "q.yaml"
    f2.write_text("name: q\neval:\n  validator: json\n")  # text validator on walks data
    with pytest.raises(ProfileError) as ei:
        load_profile(str(f2))
    assert [p.key for p in ei.value.problems] == ["eval.validator"]
    f3 = tmp_path / "r.yaml"
    f3.write_text(
        "name: r\ndata: {source: files, paths: [r.yaml]}\ntokenizer: {path: t.json}\n"
        "model: {n_layer: -1}\neval: {validator: jsn, json_schema: s.json}\n"
        "gate: {metrics: {valid_json: 0.9}}\n"
    )
    with pytest.raises(ProfileError) as ei:
        load_profile(str(f3))
    keys = [p.key for p in ei.value.problems]
    assert {
        "model.n_layer",
        "eval.validator",
        "eval.json_schema",
        "gate.metrics.valid_json",
    } <= set(keys)


def test_gate_metric_names_follow_the_validator(monkeypatch):
    monkeypatch.chdir(REPO)
    assert gate_metric_names(load_profile("tiny-json")) == ["valid_json", "schema_ok"]
    assert gate_metric_names(load_profile("tiny-c")) == ["valid_c"]
    assert gate_metric_names(load_profile("tiny-text")) == ["valid_python"]


# -----------------------------------------------------------------------------
# end to end: generated corpus -> a few steps -> gate, eval samples, post-flight


def tiny(tmp_path: Path, kind: str) -> list[str]:
    return sets(
        f"data.paths=['{tmp_path / 'corpus'}/*.parquet']",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.context=64",
        "data.stride=64",
        f"tokenizer.path={tmp_path / 'tok.json'}",
        "tokenizer.vocab_size=300",
        "model.n_layer=1",
        "model.n_head=2",
        "model.n_embd=32",
        "train.batch_size=4",
        "train.max_steps=4",
        "eval.every_steps=2",
        "eval.val_batches=2",
        "eval.samples.max_new_tokens=16",
        "eval.samples.per_prompt=2",
        "checkpoint.every_steps=2",
    )


@pytest.mark.heavy
@pytest.mark.parametrize(
    ("profile", "metrics", "label"),
    [
        ("tiny-json", ["valid_json", "schema_ok"], "json + schema workflow.schema.json"),
        ("tiny-c", ["valid_c"], None),
    ],
)
def test_each_validator_end_to_end_gate_eval_and_postflight(tmp_path, profile, metrics, label):
    rd = tmp_path / "run"
    run_core("--profile", profile, "--run-dir", str(rd), *tiny(tmp_path, profile), check_rc=0)
    assert list((tmp_path / "corpus").glob("*.parquet")), "the corpus was generated"
    res = result(rd)
    evs = events(rd)
    ev = [e for e in evs if e["type"] == "eval"]
    assert len(ev) == 2 and all(set(e["metrics"]) == set(metrics) for e in ev)
    for m in metrics:
        assert res["curves"][m] == [e["metrics"][m] for e in ev]
    gates = [e for e in evs if e["type"] == "gate"]
    assert len(gates) == 2 and set(gates[-1]["metrics"]) == set(metrics)
    samples = [e for e in evs if e["type"] == "sample"]
    assert samples and all(isinstance(s["valid"], bool) for s in samples)
    # the eval's metric is the share of its samples judged valid (one validator, one source)
    v = V.validator_for(*((profile == "tiny-json" and ("json", str(SCHEMA))) or ("c",)))
    assert v is not None
    last = [s for s in samples if s["step"] == ev[-1]["step"]]
    assert [s["valid"] for s in last] == [v.judge(s["prompt"], s["text"]).valid for s in last]
    r = cockpit("postflight", str(rd), "--json")
    assert r.returncode in (0, 1), r.stderr[-2000:]
    out = json.loads(r.stdout)
    gen = next(s for s in out["steps"] if s["id"] == "generations")
    assert gen["figures"]["validator"] == (label or v.label)
    assert set(metrics) <= set(gen["figures"]) or gen["status"] == "SKIP"
    page = next(s for s in out["steps"] if s["id"] == "samples")["figures"]["samples"]
    assert page and all(s["valid"] == v.judge(s["prompt"], s["text"]).valid for s in page)
