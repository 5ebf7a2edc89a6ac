"""Stdout adapters: recorded logs in the real formats (tests/cockpit/wrap/adapter_logs/,
made with each trainer's own print statements and real tqdm; see its README)
parsed into the expected events; detection; ANSI, torchrun rank prefixes and
\\r-rewritten lines; the parse state; and one wrapped run end to end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from cockpit.wrap.adapters import FORMATS, Adapter, clean, common, detect, kv, parse_text
from cockpit.wrap.wrapped import launch_wrapped
from tests.conftest import until

LOGS = Path(__file__).parent / "adapter_logs"


def log(name: str) -> str:
    return (LOGS / name).read_text(encoding="utf-8")


def of(evs: list[dict], typ: str) -> list[dict]:
    return [e for e in evs if e["type"] == typ]


# -----------------------------------------------------------------------------
# each format, from its recorded log


def test_nanogpt_iter_and_eval_lines():
    fmt, evs = parse_text(log("nanogpt.log"))
    assert fmt == "nanogpt"
    # `step 0: ...` comes before `iter 0: ...`: the eval follows its step, as in our runs
    assert [e["type"] for e in evs[:2]] == ["step", "eval"]
    # and a display of the run at each eval (its latest step) says the eval's step
    for i, e in enumerate(evs):
        if e["type"] == "eval":
            assert [x["step"] for x in evs[:i] if x["type"] == "step"][-1] == e["step"]
    assert evs[1] == {
        "type": "eval",
        "step": 0,
        "val_loss": 4.2823,
        "val_ppl": pytest.approx(math.exp(4.2823)),
        "metrics": {"train_loss": 4.2874},
    }
    steps = of(evs, "step")
    assert [e["step"] for e in steps] == list(range(0, 251, 10))
    # mfu -100.00% is nanoGPT's "not measured yet": unknown, not -1
    assert steps[0] == {
        "type": "step",
        "step": 0,
        "loss": 4.2654,
        "step_ms": 29820.55,
        "tokens": 16384,
        "tokens_per_s": pytest.approx(16384 / 29.82055),
    }
    assert steps[1] == {
        "type": "step",
        "step": 10,
        "loss": 3.9933,
        "step_ms": 53.31,
        "mfu": pytest.approx(0.0711),
        "tokens": 16384 * 11,
        "tokens_per_s": pytest.approx(16384 / 0.05331),
    }
    ev250 = of(evs, "eval")[1]
    assert (ev250["step"], ev250["val_loss"], ev250["metrics"]) == (
        250,
        2.0658,
        {"train_loss": 1.9664},
    )
    a = Adapter("nanogpt")
    for line in log("nanogpt.log").splitlines():
        a.feed(line)
    assert a.info == {"tokens_per_step": 16384, "n_params": 10_650_000}


def test_nanochat_step_and_eval_lines_old_and_new():
    fmt, evs = parse_text(log("nanochat.log"))
    assert fmt == "nanochat"
    steps = of(evs, "step")
    assert [e["step"] for e in steps] == list(range(14))
    assert steps[1] == {
        "type": "step",
        "step": 1,
        "loss": 10.236842,
        "step_ms": 461.33,
        "tokens_per_s": 1136470.0,
        "mfu": pytest.approx(0.4166),
        "epoch": 1,
        "tokens": 2 * 524288,
    }
    # the older line: no total, `mfu:` rather than `bf16_mfu:`, no epoch
    assert steps[-1] == {
        "type": "step",
        "step": 13,
        "loss": 7.101234,
        "step_ms": 461.9,
        "tokens_per_s": 1135061.0,
        "mfu": pytest.approx(0.4887),
        "tokens": 14 * 524288,
    }
    # bits per byte is not a loss in nats: a metric, val_loss unknown
    assert of(evs, "eval") == [
        {"type": "eval", "step": 0, "val_loss": None, "metrics": {"val_bpb": 3.3124}},
        {"type": "eval", "step": 6, "val_loss": None, "metrics": {"val_bpb": 3.0124}},
        {"type": "eval", "step": 12, "val_loss": None, "metrics": {"val_bpb": 2.7124}},
        {"type": "eval", "step": 12, "val_loss": None, "metrics": {"core_metric": 0.1187}},
    ]
    a = Adapter("auto")
    for line in log("nanochat.log").splitlines():
        a.feed(line)
    assert a.info == {
        "device": "NVIDIA H100 80GB HBM3",
        "dtype": "bfloat16",
        "n_params": 477_102_120,
        "total_steps": 21400,
        "tokens_per_step": 524288,
    }


@pytest.mark.parametrize(
    "name,val,lrs,gn5",
    [
        ("hf_quoted.log", 2.988, [3.958e-05, 2.917e-05, 1.875e-05, 8.333e-06], 1.184),
        ("hf_numbers.log", 2.9876, [5e-05 * (1 - s / 24) for s in (5, 10, 15, 20)], 1.2345),
    ],
)
def test_hf_trainer_dicts_take_the_step_of_the_bar(name, val, lrs, gn5):
    fmt, evs = parse_text(log(name))
    assert fmt == "hf"
    steps = of(evs, "step")
    assert [e["step"] for e in steps] == [5, 10, 15, 20]
    assert [e["loss"] for e in steps] == [3.25, 3.0, 2.75, 2.5]
    assert [e["lr"] for e in steps] == pytest.approx(lrs)
    assert [e["epoch"] for e in steps] == [0, 0, 1, 1]
    assert steps[0]["grad_norm"] == gn5  # numbers, quoted strings, or tensor(1.2345, device=...)
    assert steps[0]["step_ms"] == pytest.approx(250.0)  # 4.00it/s
    assert of(evs, "eval") == [
        {
            "type": "eval",
            "step": 12,
            "epoch": 1,
            "val_loss": val,
            "val_ppl": pytest.approx(math.exp(val)),
            "metrics": {"accuracy": 0.4123},
        }
    ]
    # every frame of the training bar with a new step keeps the run alive; the eval bar does not
    assert [e["step"] for e in of(evs, "heartbeat")] == list(range(1, 25))
    a = Adapter("hf")
    for line in log(name).replace("\r", "\n").splitlines():
        a.feed(line)
    assert a.info == {"total_steps": 24, "total_epochs": 2, "n_params": 124_439_808}


def test_hf_dicts_without_a_bar_count_the_logs():
    text = "{'loss': 2.5, 'learning_rate': 5e-05, 'epoch': 0.5}\n{'loss': '2.25', 'epoch': '1'}\n"
    fmt, evs = parse_text(text)
    assert fmt == "hf"
    assert [(e["step"], e["loss"], e["epoch"]) for e in evs] == [(1, 2.5, 0), (2, 2.25, 1)]


def test_lightning_progress_bar_rewritten_with_carriage_returns():
    fmt, evs = parse_text(log("lightning.log"))
    assert fmt == "lightning"
    steps = of(evs, "step")
    # each batch draws two frames (count, then postfix): the step takes the loss of its last one
    assert [e["step"] for e in steps] == list(range(1, 17))
    assert [e["loss"] for e in steps] == pytest.approx([2.5 - 0.05 * i for i in range(16)])
    assert [e["epoch"] for e in steps] == [0] * 8 + [1] * 8
    assert steps[0]["step_ms"] == pytest.approx(40.0)  # 25.00it/s
    assert [(e["step"], e["epoch"], e["val_loss"]) for e in of(evs, "eval")] == [
        (8, 0, 2.25),
        (16, 1, 2.0),
    ]
    # the eval comes after its step, and the sanity-check and validation bars are no steps
    assert [e["type"] for e in evs[7:10]] == ["step", "eval", "step"]


def test_lightning_bar_without_a_loss_is_a_heartbeat():
    text = "\r".join(
        f"Epoch 0:  {n}0%|█         | {n}/10 [00:01<00:09, 5.00it/s, v_num=3]" for n in (1, 2, 3)
    )
    fmt, evs = parse_text(text)
    assert fmt == "lightning"
    assert evs == [{"type": "heartbeat", "step": n} for n in (1, 2, 3)]


def test_json_lines_generic_and_our_own_events():
    fmt, evs = parse_text(log("jsonl.log"))
    assert fmt == "jsonl"
    assert evs[0] == {
        "type": "step",
        "step": 10,
        "loss": 2.9,
        "lr": 3e-4,
        "grad_norm": 0.9,
        "tokens_per_s": 41250.5,
        "step_ms": 99.3,
    }
    assert [e["step"] for e in of(evs, "step")] == [10, 20, 30, 40, 50, 60]
    assert [(e["step"], e["val_loss"]) for e in of(evs, "eval")] == [(30, 2.75), (60, 2.6)]
    # a line of the cockpit's own schema passes through as it is
    assert evs[-1] == json.loads(log("jsonl.log").splitlines()[-1])


def test_key_value_lines_with_units():
    fmt, evs = parse_text(log("kv.log"))
    assert fmt == "kv"
    assert evs[0] == {
        "type": "step",
        "step": 100,
        "loss": 3.09,
        "lr": 2.7e-4,
        "grad_norm": 0.94,
        "tokens_per_s": 40126.0,
        "step_ms": pytest.approx(102.2),  # dt=0.1022 without a unit: seconds
    }
    assert [e["step"] for e in of(evs, "step")] == [100, 200, 300, 400, 500, 600, 700]
    assert [(e["step"], e["val_loss"]) for e in of(evs, "eval")] == [(300, 2.8), (600, 2.5)]
    assert evs[-1] == {"type": "step", "step": 700, "loss": 2.4001, "step_ms": 98.2, "mfu": 0.415}
    # the shape learnt from the first line parses the next ones; a new shape is searched
    _, again = parse_text("step=1 loss=2.5\nstep=2 loss=nan\nstep=3 loss=1,234.5 lr=1e-3\n")
    assert [e["step"] for e in again] == [1, 2, 3]
    assert math.isnan(again[1]["loss"]) and again[2] == {
        "type": "step",
        "step": 3,
        "loss": 1234.5,
        "lr": 1e-3,
    }


def test_key_value_shapes_give_what_the_search_gives():
    lines = []
    for i in range(1, 40):
        lines += [
            f"step={i} loss={3 - i / 100:.4f} lr={3e-4 / i:.2e} tokens={i * 4096} epoch={i // 10} mfu={i % 7}%",
            f"it: {i} | loss: {2 + i / 7:.3f} | dt: {0.1 + i / 1000:.3f}{'ms' if i % 2 else 's'}",
            f"step={i} loss={'nan' if i % 13 == 0 else 2.5} tok/s={i * 1000:,} grad_norm=0.5",
            f"step={i} val_loss={2.5 - i / 100:.3f}",
            f"val_loss={2.4 - i / 100:.3f} ppl=11.0",
        ]
    p = kv.Parser()
    step, shaped, searched = 0, [], []
    for line in lines:
        shaped += p.feed(line) or []
        evs, step = common.generic(common.kv_figures(line), step)
        searched += evs
    assert len(shaped) == len(searched) == 5 * 39
    assert str(shaped) == str(searched)  # nan == nan as text
    assert p._shapes  # and the shapes were used


def test_a_padded_key_value_line_is_one_shape_and_reads_as_the_search_does():
    lines = [f"step={i:<4}  loss={2 + i % 3}  tok/s={i * 1000:>7}\tdt: {i}ms" for i in range(1, 30)]
    p, step, searched, shaped = kv.Parser(), 0, [], []
    for line in lines:
        shaped += p.feed(line) or []
        evs, step = common.generic(common.kv_figures(line), step)
        searched += evs
    assert str(shaped) == str(searched)  # 3.0, not 3: the same types as the search
    assert len(p._shapes) == 1 and all(p._shapes[0].events(x, 0) for x in lines)


# -----------------------------------------------------------------------------
# detection and the line pipeline


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("nanogpt.log", "nanogpt"),
        ("nanochat.log", "nanochat"),
        ("hf_quoted.log", "hf"),
        ("hf_numbers.log", "hf"),
        ("lightning.log", "lightning"),
        ("jsonl.log", "jsonl"),
        ("kv.log", "kv"),
    ],
)
def test_detection_from_the_first_lines(name, fmt):
    lines = log(name).replace("\r", "\n").splitlines()
    assert detect(lines[:40]) == fmt
    assert set(FORMATS) == {"nanogpt", "nanochat", "hf", "lightning", "jsonl", "kv"}


def test_undetected_lines_are_held_then_parsed_and_an_explicit_format_wins():
    a = Adapter("auto")
    assert a.feed("tokens per iteration will be: 8,192") is None  # held: the format is unknown
    assert a.fmt is None and a.pending
    evs = a.feed("iter 0: loss 4.0000, time 10.00ms, mfu -100.00%")
    assert a.fmt == "nanogpt" and evs[0]["tokens"] == 8192  # the held line reached the parser
    assert detect(["hello", "world", "loss went down"]) is None
    # named: a kv line in a nanoGPT stream is not read as one
    assert parse_text("step=1 loss=2.0\n", "nanogpt") == ("nanogpt", [])
    with pytest.raises(ValueError):
        Adapter("tensorboard")


def test_ansi_codes_and_torchrun_rank_prefixes():
    assert clean("\x1b[1m\x1b[32miter 1: loss 2.0000\x1b[0m") == "iter 1: loss 2.0000"
    assert clean("[rank0]:iter 1: loss 2.0") == "iter 1: loss 2.0"
    assert (
        clean("[default0]:step 0: train loss 2.1, val loss 2.2")
        == "step 0: train loss 2.1, val loss 2.2"
    )
    assert (
        clean("[rank0]: Traceback (most recent call last):") == "Traceback (most recent call last):"
    )
    assert clean("[rank1]:iter 1: loss 2.0") is None  # another rank's line
    assert clean("[INFO|trainer.py:2314] >> ***** Running training *****").startswith("[INFO|")
    text = (
        "[default1]:iter 0: loss 9.0000, time 1.00ms, mfu -100.00%\n"
        "[default0]:\x1b[32miter 0: loss 4.0000, time 10.00ms, mfu -100.00%\x1b[0m\n"
        "[default0]:iter 1: loss 3.5000, time 10.00ms, mfu 5.00%\r\n"
    )
    fmt, evs = parse_text(text)
    assert fmt == "nanogpt"
    assert [(e["step"], e["loss"]) for e in evs] == [(0, 4.0), (1, 3.5)]


def test_carriage_returns_split_lines_as_newlines_do():
    text = "iter 1: loss 2.0000, time 1.00ms, mfu 1.00%\riter 2: loss 1.9000, time 1.00ms, mfu 1.00%\r\n"
    assert [e["step"] for e in parse_text(text)[1]] == [1, 2]


@pytest.mark.parametrize("name", ["hf_quoted.log", "lightning.log", "nanochat.log", "kv.log"])
def test_state_round_trip_continues_the_parse_exactly(name):
    lines = log(name).replace("\r", "\n").split("\n")
    whole = parse_text(log(name))[1]
    for cut in (3, len(lines) // 2, len(lines) - 3):
        a = Adapter("auto")
        got = []
        for line in lines[:cut]:
            got += a.feed(line) or []
        b = Adapter("auto")
        b.restore(json.loads(json.dumps(a.state())))  # as saved in adapter.json
        for line in lines[cut:]:
            got += b.feed(line) or []
        assert got + b.flush() == whole, cut


# -----------------------------------------------------------------------------
# end to end: a script printing nanoGPT's lines, wrapped and followed until it exits

SCRIPT = """
import sys, time
print("tokens per iteration will be: 4,096", flush=True)
print("number of parameters: 0.42M", flush=True)
for i in range(300):
    if i % 100 == 0:
        print(f"step {i}: train loss {4 - i / 100:.4f}, val loss {4.1 - i / 100:.4f}", flush=True)
    mfu = -100.0 if i == 0 else 3.25
    print(f"iter {i}: loss {4 - i / 100:.4f}, time 2.00ms, mfu {mfu:.2f}%", flush=True)
    if i % 50 == 0:
        time.sleep(0.02)
"""


def test_wrapped_script_is_followed_until_it_exits(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run_dir = tmp_path / "logs" / "wrapped"
    trainer, adapting = launch_wrapped([sys.executable, str(script)], run_dir, "auto")
    try:
        adapting.start()
        assert until(lambda: not trainer.alive()), "the script did not end"
        assert until(lambda: adapting.ended), "no run_end"
    finally:
        adapting.stop()
        trainer.kill_group()
    assert trainer.exit_code == 0
    evs = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert all(e["v"] == 1 and isinstance(e["t"], float) for e in evs)
    start = evs[0]
    assert start["type"] == "run_start" and start["pid"] == trainer.pid
    assert (start["run_id"], start["profile"], start["n_params"], start["tokens_per_step"]) == (
        "wrapped",
        "train.py",
        420_000,
        4096,
    )
    assert start["wrapped"]["format"] == "nanogpt"
    steps = of(evs, "step")
    assert [e["step"] for e in steps] == list(range(300))
    assert steps[0]["mfu"] is None and steps[1]["mfu"] == 0.0325
    assert steps[-1]["tokens"] == 300 * 4096 and steps[-1]["grad_norm"] is None  # unknown: null
    assert [e["step"] for e in of(evs, "eval")] == [0, 100, 200]
    end = evs[-1]
    assert (end["type"], end["status"], end["step"]) == ("run_end", "completed", 299)
    ts = [e["t"] for e in evs]
    assert ts == sorted(ts)  # interpolated line times keep the order
    assert json.loads((run_dir / "adapter.json").read_text())["ended"] is True


def test_cockpit_run_wraps_any_command_headless(tmp_path):
    """`cockpit run --headless -- python train.py`: the same lines, table and exit code as
    one of ours, from a script that only prints nanoGPT's lines."""
    from tests.conftest import cockpit

    script = tmp_path / "train.py"
    script.write_text(SCRIPT + "\nsys.exit(3)\n")
    run_dir = tmp_path / "logs" / "wrapped"
    r = cockpit("run", "--headless", "--run-dir", str(run_dir), "--", sys.executable, str(script))
    assert r.returncode == 3, r.stdout + r.stderr
    out = r.stdout
    assert out.startswith(f"cockpit: running `{sys.executable} {script}` in {run_dir} (pid ")
    assert "Ctrl+C: asking" not in out and "pre-flight" not in out  # no profile, no pre-flight
    evs = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in of(evs, "step")] == list(range(300))
    assert evs[-1]["type"] == "run_end" and evs[-1]["status"] == "failed"
    assert "  status       failed (exit 3)" in out
    # an unknown format is a one-line error, not a traceback
    r = cockpit("run", "--format", "nope", "--", "true")
    assert r.returncode == 2 and "invalid choice: 'nope'" in r.stderr


def test_lightning_bar_figures_reach_the_step_and_the_eval():
    t = (
        "Epoch 0:  50%|█    | 1/2 [00:01<00:01,  1.00it/s, v_num=0, train_loss=2.500, lr-AdamW=0.001]\n"
        "Epoch 0: 100%|██| 2/2 [00:02<00:00,  1.00it/s, v_num=0, train_loss=2.400, grad_norm=0.7]\n"
        "Epoch 0: 100%|██| 2/2 [00:02<00:00,  1.00it/s, train_loss=2.400, val_loss=2.600, val_acc=0.500]\n"
    )
    _, evs = parse_text(t, "lightning")
    assert evs[0]["lr"] == 0.001 and evs[1]["step"] == 2
    assert evs[2]["metrics"] == {"val_acc": 0.5} and evs[2]["val_loss"] == 2.6
