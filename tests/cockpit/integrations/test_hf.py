"""The Hugging Face Trainer with CockpitCallback: a real transformers Trainer on a
tiny GPT-2 built from a config (no download) writes the run directory itself, and
the cockpit's figures are the Trainer's own record, float for float."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from core.events import read_events
from tests.conftest import REPO

transformers = pytest.importorskip("transformers")

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments, TrainerCallback
    from cockpit.integrations.hf import CockpitCallback

    out, run_dir, fail = sys.argv[1], sys.argv[2], sys.argv[3]
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=64, n_positions=16)
    model = GPT2LMHeadModel(cfg)
    g = torch.Generator().manual_seed(0)
    def rows(n):
        ids = torch.randint(0, 64, (n, 16), generator=g)
        return [{"input_ids": r, "labels": r} for r in ids]

    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if fail == "error" and state.global_step == 3:
                raise RuntimeError("CUDA out of memory (pretend)")
            if fail == "ctrl-c" and state.global_step == 3:
                raise KeyboardInterrupt

    args = TrainingArguments(
        output_dir=out, max_steps=12, per_device_train_batch_size=4, logging_steps=1,
        eval_strategy="steps", eval_steps=4, save_steps=6, report_to=[], use_cpu=True,
        disable_tqdm=True, learning_rate=1e-3, seed=0,
    )
    cb = CockpitCallback(run_dir=run_dir, name="tiny-gpt2")
    trainer = Trainer(model=model, args=args, train_dataset=rows(64), eval_dataset=rows(16),
                      callbacks=[cb, Boom()])
    trainer.train()
    import json
    print("HISTORY " + json.dumps(trainer.state.log_history))
    """
)


def run(tmp_path, fail: str = "no") -> tuple[subprocess.CompletedProcess, list]:
    script = tmp_path / "train_hf.py"
    script.write_text(SCRIPT)
    rd = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out"), str(rd), fail],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    evs = [e.to_dict() if hasattr(e, "to_dict") else e for e in read_events(rd / "events.jsonl")]
    return r, evs


@pytest.mark.slow
def test_the_callback_writes_the_trainers_own_figures(tmp_path):
    import json

    r, evs = run(tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    history = json.loads(r.stdout.split("HISTORY ", 1)[1])
    logged = [(h["step"], h["loss"]) for h in history if "loss" in h]
    steps = [(e["step"], e["loss"]) for e in evs if e["type"] == "step"]
    assert len(logged) == 12 and steps == logged  # every step, float for float
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    assert [(e["step"], e["val_loss"]) for e in evs if e["type"] == "eval"] == evals
    assert len(evals) == 3
    start = next(e for e in evs if e["type"] == "run_start")
    assert start["profile"] == "tiny-gpt2" and start["total_steps"] == 12 and start["n_params"] > 0
    last = [e for e in evs if e["type"] == "step"][-1]
    assert last["tokens"] == 12 * 4 * 16 and last["tokens_per_s"] > 0 and last["lr"] > 0
    assert last["step_ms"] > 0 and last["grad_norm"] > 0
    ck = [e for e in evs if e["type"] == "checkpoint"]
    assert [c["step"] for c in ck] == [6, 12] and all(c["bytes"] > 100_000 for c in ck)
    assert ck[0]["path"].endswith("checkpoint-6")
    end = evs[-1]
    assert end["type"] == "run_end" and end["status"] == "completed" and end["step"] == 12


@pytest.mark.slow
@pytest.mark.parametrize(
    "fail, status, reason",
    [
        ("error", "failed", "RuntimeError: CUDA out of memory"),
        ("ctrl-c", "interrupted", "KeyboardInterrupt"),
    ],
)
def test_a_run_that_raises_or_is_interrupted_ends_with_the_right_status(
    tmp_path, fail, status, reason
):
    r, evs = run(tmp_path, fail)
    assert r.returncode != 0
    end = evs[-1]
    assert end["type"] == "run_end" and end["status"] == status and reason in end["reason"]
    assert end["step"] == 3 and sum(e["type"] == "run_end" for e in evs) == 1


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
@pytest.mark.slow
def test_under_cockpit_run_the_adapter_stands_down_for_native_events(tmp_path):
    """`cockpit run -- python train.py`: the callback writes into the cockpit's run
    directory (COCKPIT_RUN_DIR) and the stdout adapter, which reads the Trainer's
    printed dicts too, writes none of the event types the callback writes."""
    from tests.conftest import cockpit, events

    script = tmp_path / "train_hf.py"
    script.write_text(SCRIPT)
    rd = tmp_path / "cockpit-run"
    r = cockpit(
        "run", "--headless", "--run-dir", str(rd), "--",
        sys.executable, str(script), str(tmp_path / "out"), str(tmp_path / "ignored"), "no",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    evs = events(rd)
    assert not (tmp_path / "ignored").exists()
    kinds = [e["type"] for e in evs]
    assert kinds.count("run_start") == 1 and kinds.count("run_end") == 1
    assert kinds.count("step") == 12 and kinds.count("eval") == 3 and kinds.count("checkpoint") == 2
    assert evs[0]["profile"] == "tiny-gpt2" and evs[-1]["status"] == "completed"
    assert "'loss'" in (rd / "stdout.log").read_text()  # the log is kept whole
