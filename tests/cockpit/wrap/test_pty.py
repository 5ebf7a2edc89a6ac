"""Wrapped commands under a pseudo-terminal (cockpit.wrap.ptyrelay): the command
sees a terminal of the asked size and EOF on stdin, Ctrl+C reaches it, its exit
code is the cockpit's, it outlives a cockpit killed with -9, --no-pty runs it as
before; and the real libraries' bars, drawn for that terminal, give the losses
the libraries recorded (HF's tqdm bar, Lightning's RichProgressBar and
TQDMProgressBar)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cockpit.supervisor import pid_is, read_info
from cockpit.wrap.adapters import parse_text
from cockpit.wrap.ptyrelay import wait_drained
from cockpit.wrap.wrapped import launch_wrapped
from tests.conftest import REPO, until

LOGS = Path(__file__).parent / "adapter_logs"

PROBE = textwrap.dedent(
    """
    import os, signal, sys, time
    signal.signal(signal.SIGINT, lambda *a: (print("got SIGINT", flush=True), sys.exit(7)))
    size = tuple(os.get_terminal_size()) if sys.stdout.isatty() else None
    print("tty", sys.stdout.isatty(), sys.stderr.isatty(), size, flush=True)
    print("stdin", repr(sys.stdin.read()), flush=True)
    for i in range(int(sys.argv[1])):
        print(f"line {i}", flush=True)
        time.sleep(float(sys.argv[2]))
    sys.exit(3)
    """
)


def events(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


def probe(tmp_path: Path) -> Path:
    p = tmp_path / "probe.py"
    p.write_text(PROBE)
    return p


def log_has(run_dir: Path, text: str) -> bool:
    try:
        return text in (run_dir / "stdout.log").read_text(errors="replace")
    except OSError:
        return False


def cockpit(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from cockpit.cli import main; sys.exit(main())", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# -----------------------------------------------------------------------------
# the terminal


def test_the_command_sees_a_terminal_of_the_size_asked_and_eof_on_stdin(tmp_path):
    run_dir = tmp_path / "run"
    trainer, a = launch_wrapped(
        [sys.executable, str(probe(tmp_path)), "2", "0"], run_dir, pty=(100, 30)
    )
    try:
        a.start()
        assert trainer.wait(30) == 3  # the command's own exit code
        assert until(lambda: a.ended)
    finally:
        a.stop()
    log = (run_dir / "stdout.log").read_text()
    assert "tty True True (100, 30)\nstdin ''\nline 0\nline 1\n" in log  # no \r\n translation
    info = read_info(run_dir)
    assert info is not None and info["pid"] == trainer.pid and info["pty"] == [100, 30]
    assert info["cmd"][1:] == [str(tmp_path / "probe.py"), "2", "0"]  # the command, not the relay
    end = events(run_dir)[-1]
    assert (end["type"], end["status"]) == ("run_end", "failed")


def test_a_command_that_cannot_run_is_an_error_before_anything_starts(tmp_path):
    with pytest.raises(OSError):
        launch_wrapped(["no-such-command-here"], tmp_path / "run", pty=(80, 24))


@pytest.mark.slow
def test_ctrl_c_reaches_the_command_and_its_exit_code_is_the_cockpits(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(probe(tmp_path)), "1000", "0.05"]
    c = cockpit("run", "--headless", "--run-dir", str(run_dir), "--", *cmd)
    try:
        assert until(lambda: log_has(run_dir, "line 3"))
        c.send_signal(signal.SIGINT)
        out, _ = c.communicate(timeout=60)
    finally:
        c.kill()
    assert c.returncode == 7, out  # the handler's exit code, through the cockpit
    assert "got SIGINT" in (run_dir / "stdout.log").read_text()


@pytest.mark.slow
def test_the_command_outlives_a_cockpit_killed_with_sigkill(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(probe(tmp_path)), "30", "0.1"]
    c = cockpit("run", "--headless", "--run-dir", str(run_dir), "--", *cmd)
    assert until(lambda: log_has(run_dir, "line 1"))
    c.kill()  # kill -9: nothing of the cockpit is left to copy the terminal
    c.wait(10)
    info = read_info(run_dir)
    assert info is not None
    assert until(lambda: not pid_is(info["pid"], info["create_time"]))
    assert wait_drained(run_dir / "stdout.log")
    assert "line 29\n" in (run_dir / "stdout.log").read_text()  # every line reached the log


@pytest.mark.slow
def test_no_pty_runs_the_command_as_before(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(probe(tmp_path)), "1", "0"]
    c = cockpit("run", "--headless", "--no-pty", "--run-dir", str(run_dir), "--", *cmd)
    out, _ = c.communicate(timeout=60)
    assert c.returncode == 3, out
    assert "tty False False" in (run_dir / "stdout.log").read_text()
    assert read_info(run_dir)["pty"] is None  # type: ignore[index]


# -----------------------------------------------------------------------------
# the real libraries' bars


def within_printed(got: float, want: float, digits: int) -> bool:
    """`got` is `want` printed with `digits` significant digits (or 3 decimals, Rich)."""
    if want == 0:
        return got == 0
    unit = 10 ** (math.floor(math.log10(abs(want))) - digits + 1)
    return abs(got - want) <= unit / 2 * 1.001


def compare(run_dir: Path, logged: list[tuple[int, float]], digits: int) -> tuple[int, float]:
    """(steps seen, the largest loss difference); asserts every loss seen is the logged
    one to the printed precision."""
    got = {e["step"]: e["loss"] for e in events(run_dir) if e["type"] == "step"}
    diffs = [abs(got[s] - v) for s, v in logged if s in got]
    bad = [(s, got[s], v) for s, v in logged if s in got and not within_printed(got[s], v, digits)]
    assert not bad, bad[:5]
    return len(diffs), max(diffs, default=math.nan)


def test_the_rich_bar_as_drawn_gives_the_logged_losses_and_one_eval_each():
    text = (LOGS / "lightning_rich.log").read_text(encoding="utf-8")
    logged = json.loads((LOGS / "lightning_rich.losses.json").read_text())
    fmt, evs = parse_text(text)
    assert fmt == "lightning"
    got = {e["step"]: e["loss"] for e in evs if e["type"] == "step"}
    assert len(got) >= 35  # Rich drew 47 of the 60 counts of this fast run; 37 are sure
    assert all(abs(got[s] - v) <= 0.0005 + 1e-9 for s, v in logged if s in got)
    evals = [(e["step"], e["val_loss"]) for e in evs if e["type"] == "eval"]
    assert evals == [(20, 4.286), (40, 4.322), (60, 4.389)]


LIGHTNING = textwrap.dedent(
    """
    import json, sys, time, torch
    import lightning as L
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    bar, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.emb, self.head = torch.nn.Embedding(64, 32), torch.nn.Linear(32, 64)
            self.logged = []
        def forward(self, ids):
            return self.head(self.emb(ids))
        def _loss(self, ids):
            logits = self(ids[:, :-1])
            return torch.nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1))
        def training_step(self, batch, i):
            time.sleep(0.08)  # a step as long as a small real one: Rich redraws at its own pace
            loss = self._loss(batch[0])
            self.log("train_loss", loss, prog_bar=True)
            self.logged.append((self.global_step + 1, loss.item()))
            return loss
        def validation_step(self, batch, i):
            self.log("val_loss", self._loss(batch[0]), prog_bar=True)
        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randint(0, 64, (80, 16), generator=g))
    val = torch.utils.data.TensorDataset(torch.randint(0, 64, (16, 16), generator=g))
    dl = lambda d: torch.utils.data.DataLoader(d, batch_size=4)
    model = Tiny()
    trainer = L.Trainer(
        max_epochs=2, log_every_n_steps=1, num_sanity_val_steps=0, logger=False,
        accelerator="cpu", enable_model_summary=False, enable_checkpointing=False,
        callbacks=[RichProgressBar() if bar == "rich" else TQDMProgressBar()],
    )
    trainer.fit(model, dl(data), dl(val))
    json.dump(model.logged, open(out, "w"))
    """
)

HF = textwrap.dedent(
    """
    import json, sys, torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    out, hist = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=64, n_positions=16)
    model = GPT2LMHeadModel(cfg)
    g = torch.Generator().manual_seed(0)
    def rows(n):
        ids = torch.randint(0, 64, (n, 16), generator=g)
        return [{"input_ids": r, "labels": r} for r in ids]
    args = TrainingArguments(
        output_dir=out, max_steps=20, per_device_train_batch_size=4, logging_steps=1,
        eval_strategy="steps", eval_steps=10, save_strategy="no", report_to=[], use_cpu=True,
        learning_rate=1e-3, seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows(64), eval_dataset=rows(16))
    trainer.train()
    json.dump(trainer.state.log_history, open(hist, "w"))
    """
)


def wrapped(tmp_path: Path, script: str, *args: str) -> tuple[Path, int]:
    """Run a script wrapped under the pty until its run_end; (run dir, exit code)."""
    path = tmp_path / "train.py"
    path.write_text(script)
    run_dir = tmp_path / "run"
    env_cmd = [sys.executable, str(path), *args]
    trainer, a = launch_wrapped(env_cmd, run_dir, pty=(120, 40), cwd=REPO)
    try:
        a.start()
        code = trainer.wait(240)
        assert until(lambda: a.ended, 30)
    finally:
        a.stop()
        trainer.kill_group()
    assert code is not None
    return run_dir, code


@pytest.mark.heavy
@pytest.mark.parametrize("bar", ["rich", "tqdm"])
def test_lightning_wrapped_bars_give_the_logged_losses(tmp_path, bar):
    pytest.importorskip("lightning")
    out = tmp_path / "logged.json"
    run_dir, code = wrapped(tmp_path, LIGHTNING, bar, str(out))
    assert code == 0, (run_dir / "stdout.log").read_text()[-3000:]
    logged = [tuple(x) for x in json.loads(out.read_text())]
    # Rich prints 3 decimals; tqdm's format_num 3 significant digits
    seen, worst = compare(run_dir, logged, 4 if bar == "rich" else 3)
    print(f"lightning {bar}: {seen}/{len(logged)} steps, largest loss difference {worst:.6f}")
    assert seen >= 0.9 * len(logged)
    evals = [e for e in events(run_dir) if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [20, 40]


@pytest.mark.heavy
def test_hf_wrapped_tqdm_bar_gives_the_logged_losses(tmp_path):
    pytest.importorskip("transformers")
    hist = tmp_path / "history.json"
    run_dir, code = wrapped(tmp_path, HF, str(tmp_path / "out"), str(hist))
    assert code == 0, (run_dir / "stdout.log").read_text()[-3000:]
    history = json.loads(hist.read_text())
    logged = [(h["step"], h["loss"]) for h in history if "loss" in h]
    seen, worst = compare(run_dir, logged, 4)  # f"{v:.4g}"
    print(f"hf tqdm: {seen}/{len(logged)} steps, largest loss difference {worst:.6f}")
    assert seen >= 0.9 * len(logged)
    evals = [(e["step"], e["val_loss"]) for e in events(run_dir) if e["type"] == "eval"]
    want = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    assert [s for s, _ in evals] == [s for s, _ in want]
    assert all(within_printed(g, w, 4) for (_, g), (_, w) in zip(evals, want, strict=True))
