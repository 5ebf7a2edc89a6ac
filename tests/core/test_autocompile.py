"""train.compile: auto compiles only when the steps left repay the compile, keeps
the compiled model only when its steps are faster, and records why."""

from __future__ import annotations

import pytest
import yaml

from core.autocompile import GAIN, MEASURE, WARM, AutoCompile, compile_cost_s
from core.config import ProfileError, load_profile
from tests.conftest import TINY_WALKS, events, run_core, sets


@pytest.mark.parametrize("value,expect", [("auto", "auto"), ("true", True), ("false", False)])
def test_train_compile_takes_true_false_or_auto(value, expect):
    assert load_profile("demo-walks", [f"train.compile={value}"]).train.compile == expect


@pytest.mark.parametrize("value", ["maybe", "1"])
def test_another_train_compile_value_is_named_in_one_clear_error(value):
    with pytest.raises(ProfileError, match=r"train\.compile: expected true, false or auto"):
        load_profile("demo-walks", [f"train.compile={value}"])


def feed(a: AutoCompile, step_s: float, n: int, start: int = 0) -> list[str | None]:
    return [a.after_step(start + i + 1, step_s) for i in range(n)]


def test_a_short_run_stays_eager():
    a = AutoCompile(total_steps=50, n_layer=4)
    got = feed(a, 0.1, WARM + MEASURE)  # 45 steps x 0.1 s x GAIN: far under the compile
    assert got[:-1] == [None] * (WARM + MEASURE - 1) and got[-1] == "eager"
    assert a.record["decision"] == "eager" and "staying eager" in a.message()
    assert feed(a, 0.1, 10, WARM + MEASURE) == [None] * 10  # decided once


def test_a_long_run_compiles_and_keeps_it_only_when_faster():
    need = compile_cost_s(4) / (1.0 * GAIN)  # steps of 1 s that repay the compile
    for compiled_s, verdict in ((0.9, "keep"), (1.1, "revert")):
        a = AutoCompile(total_steps=int(need) + 100, n_layer=4)
        assert feed(a, 1.0, WARM + MEASURE)[-1] == "compile"
        first = a.after_step(WARM + MEASURE + 1, 40.0)  # the compile itself
        assert first is None
        got = feed(a, compiled_s, MEASURE, WARM + MEASURE + 1)
        assert got[-1] == verdict
        assert a.record["compile_s"] == pytest.approx(40.0 - compiled_s, abs=0.1)
        assert a.record["compiled_step_s"] == compiled_s


@pytest.mark.heavy
def test_an_auto_run_logs_its_decision_and_keeps_it_in_run_yaml(tmp_path):
    rd = tmp_path / "run"
    cfg = TINY_WALKS + [
        "train.max_steps=12",
        "train.epochs=null",
        "train.compile=auto",
        "eval.every_epoch=false",
        "checkpoint.every_epoch=false",
        "gate.metrics={}",
    ]
    run_core("--run-dir", str(rd), *sets(*cfg), check_rc=0)
    alerts = [e for e in events(rd) if e["type"] == "alert" and e["code"] == "compile_auto"]
    assert len(alerts) == 1 and "staying eager" in alerts[0]["message"]
    summary = yaml.safe_load((rd / "run.yaml").read_text())["summary"]
    assert summary["compile"]["decision"] == "eager"
    assert summary["compile"]["steps_left"] == 12 - WARM - MEASURE
