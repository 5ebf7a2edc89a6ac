"""Preemption: SIGTERM/SIGINT end the run within seconds wherever the trainer is.

A cluster (SLURM, Kubernetes) sends SIGTERM and kills 30 s later; the trainer
must be gone within LIMIT_S from any phase (eval's val loss, gate generation,
tokenizer training, a checkpoint save), leave a checkpoint of the last
completed step tagged `interrupt` that verifies (none when no step was done),
end `interrupted`, and exit 128 + the signal. Each test prints the time from
the signal to the exit (`pytest -rP` shows it)."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from core import checkpoint as C
from tests.conftest import TINY_WALKS, events, result, sets, start_core, wait_for_event

pytestmark = pytest.mark.slow

LIMIT_S = 10.0  # 30 s of grace on a cluster, with margin

# Tiny walks that go on until stopped, evaluating every 5 steps.
ENDLESS = TINY_WALKS + [
    "train.max_steps=1000000",
    "train.epochs=null",
    "eval.every_epoch=false",
    "eval.every_steps=5",
    "eval.patience=null",
    "gate.stop_on_pass=false",
    "checkpoint.every_epoch=false",
]


def stop_during(rd, cfg, pred, delay_s: float, signum=signal.SIGTERM, again=None):
    """Start a trainer, wait for the event `pred` and `delay_s` more, send `signum`
    (and `again` 0.1 s later), and return (exit code, seconds from the signal to the exit)."""
    proc = start_core("--run-dir", str(rd), *sets(*cfg))
    try:
        wait_for_event(rd, pred, proc, timeout=240)
        time.sleep(delay_s)
        assert proc.poll() is None, "the phase ended before the signal was sent"
        t0 = time.monotonic()
        proc.send_signal(signum)
        if again is not None:
            time.sleep(0.1)
            proc.send_signal(again)
        try:
            rc = proc.wait(LIMIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {LIMIT_S:.0f} s after {signal.Signals(signum).name}")
        took = time.monotonic() - t0
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert "Traceback" not in out, out[-3000:]
    return rc, took


def assert_interrupted_with_checkpoint(rd, rc: int, signum=signal.SIGTERM) -> dict:
    """Exit 128 + signal, run_end `interrupted`, and `latest` an `interrupt` checkpoint
    of the last completed step that verifies (deep). Returns its sidecar."""
    assert rc == 128 + signum
    ev = events(rd)
    ends = [e for e in ev if e["type"] == "run_end"]
    assert len(ends) == 1 and ends[0]["status"] == "interrupted"
    assert result(rd)["status"] == "interrupted"
    last_step = max(e["step"] for e in ev if e["type"] == "step")
    lp = C.latest(rd / "checkpoints")
    assert lp is not None and C.verify(lp, deep=True) is None
    side = C.read_sidecar(lp)
    assert side["step"] == last_step and "interrupt" in side["tags"]
    assert not [f.name for f in (rd / "checkpoints").iterdir() if ".tmp-" in f.name]
    return side


def eval_started(e) -> bool:
    return e["type"] == "phase" and e["name"] == "eval" and e["done"] == 0


def assert_eval_dropped(rd) -> None:
    """The eval that the signal cut short left nothing: no eval, sample or gate event
    after its start, no val point in the curves."""
    ev = events(rd)
    start = max(i for i, e in enumerate(ev) if eval_started(e))
    assert not [e for e in ev[start:] if e["type"] in ("eval", "sample", "gate")]
    assert len(result(rd)["curves"]["val_loss"]) == len([e for e in ev if e["type"] == "eval"])


def generation_started(e) -> bool:
    return e["type"] == "phase" and e["name"] == "eval generation"


def test_sigterm_during_gate_generation(tmp_path):
    # 16000 greedy walks of 60 tokens an eval: seconds of generation with the KV cache
    # (6000 took 1.5 s, and a signal 1.5 s after the eval's start once came after it)
    cfg = ENDLESS + [
        "data.walks.n_walks=20000",
        "data.walks.eval_walks=16000",
        "data.context=64",
        "data.walks.prompt_len=4",
    ]
    rd = tmp_path / "run"
    rc, took = stop_during(rd, cfg, generation_started, delay_s=0.3)
    print(f"\nSIGTERM during gate generation: exit after {took:.2f} s")
    assert_interrupted_with_checkpoint(rd, rc)
    assert_eval_dropped(rd)


@pytest.mark.heavy  # 60000 walks and a 4-layer model (~25 s on a busy 2-core box); CI runs it
def test_sigterm_during_val_loss(tmp_path):
    # 30000 val windows through a 4-layer model, and a 64-walk gate: the eval is val loss
    cfg = ENDLESS + [
        "data.walks.n_walks=60000",
        "data.val_fraction=0.5",
        "eval.val_batches=2000",
        "model.n_layer=4",
        "model.n_embd=128",
    ]
    rd = tmp_path / "run"
    rc, took = stop_during(rd, cfg, eval_started, delay_s=1.5)
    print(f"\nSIGTERM during val loss: exit after {took:.2f} s")
    assert_interrupted_with_checkpoint(rd, rc)
    assert_eval_dropped(rd)


def _corpus(path, n_words: int = 400_000) -> None:
    """Random words, nearly all distinct: BPE training spends its time merging
    (in native code, with no Python between merges), not reading."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(4, 14))) for _ in range(n_words)]
    path.write_text("\n".join(" ".join(words[i : i + 100]) for i in range(0, n_words, 100)))


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
def test_sigterm_during_tokenizer_training(tmp_path):
    """No step was completed: the run ends interrupted with no checkpoint, and no
    half-trained tokenizer is left where the next run would take it for a trained one."""
    _corpus(tmp_path / "corpus.txt")
    tok = tmp_path / "tok.json"
    cfg = ENDLESS + [
        "data.source=files",
        f"data.paths=[{tmp_path / 'corpus.txt'}]",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"tokenizer.path={tok}",
        "tokenizer.vocab_size=65000",
        "gate.metrics={}",
    ]
    rd = tmp_path / "run"
    started = lambda e: e["type"] == "phase" and e["name"] == "tokenizer"  # noqa: E731
    rc, took = stop_during(rd, cfg, started, delay_s=2.5)
    print(f"\nSIGTERM during tokenizer training: exit after {took:.2f} s")
    assert rc == 143
    ends = [e for e in events(rd) if e["type"] == "run_end"]
    assert len(ends) == 1 and ends[0]["status"] == "interrupted"
    assert result(rd)["status"] == "interrupted"
    assert not (rd / "checkpoints").exists() or not C.list_checkpoints(rd / "checkpoints")
    assert not tok.exists()


# A 3M-parameter model saved every 2 steps: ~40 MB a save, much of the run's time.
SAVING = TINY_WALKS + [
    "train.max_steps=1000000",
    "train.epochs=null",
    "eval.every_epoch=false",
    "gate.metrics={}",
    "model.n_layer=4",
    "model.n_embd=256",
    "model.n_head=4",
    "checkpoint.every_epoch=false",
    "checkpoint.every_steps=2",
    "checkpoint.keep_last=1",
]


def saving(rd):
    """True once a save is under way (its temporary file exists)."""

    def pred(e) -> bool:
        ck = rd / "checkpoints"
        return ck.is_dir() and any(f.name.startswith(".step-") for f in ck.iterdir())

    return pred


@pytest.mark.parametrize(
    "signum,again",
    [(signal.SIGTERM, None), (signal.SIGINT, signal.SIGINT)],
    ids=["sigterm", "sigint-twice"],
)
def test_signal_during_checkpoint_save(tmp_path, signum, again):
    """A save under way is finished, never cut: `latest` names a complete checkpoint,
    also when a second SIGINT comes while saving."""
    rd = tmp_path / "run"
    rc, took = stop_during(rd, SAVING, saving(rd), delay_s=0.0, signum=signum, again=again)
    name = signal.Signals(signum).name + (" twice" if again else "")
    print(f"\n{name} during a checkpoint save: exit after {took:.2f} s")
    assert_interrupted_with_checkpoint(rd, rc, signum)
