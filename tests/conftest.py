"""Shared helpers: run the real trainer (`python -m core.train`) as a subprocess
in the repository root, and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A walks run small enough for a test to take a second or two of training.
TINY_WALKS = [
    "data.walks.n_nodes=32",
    "data.walks.n_walks=1200",
    "data.walks.eval_walks=64",
    "data.context=16",
    "model.n_layer=1",
    "model.n_head=2",
    "model.n_embd=32",
    "train.batch_size=16",
    "eval.val_batches=2",
    "train.print_every_s=0.5",
]


def sets(*pairs: str) -> list[str]:
    out = []
    for p in pairs:
        out += ["--set", p]
    return out


def core_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "core.train", *args]


def run_core(
    *args: str, timeout: float = 300, check_rc: int | None = None
) -> subprocess.CompletedProcess:
    r = subprocess.run(core_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check_rc is not None:
        assert r.returncode == check_rc, (
            f"rc {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
        )
    return r


def start_core(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        core_cmd(*args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def cockpit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cockpit.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def wait_for_event(run_dir: Path, pred, proc: subprocess.Popen, timeout: float = 120) -> dict:
    """Poll events.jsonl until an event satisfies `pred` (fails if the process ends first)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        for e in events(run_dir):
            if pred(e):
                return e
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"trainer exited ({proc.returncode}) before the event came:\n{out[-3000:]}")
        time.sleep(0.02)
    pytest.fail("timed out waiting for an event")


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    # the trainer inherits this; keeps two test subprocesses from fighting over cores
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))


# A tiny walks run that goes on until stopped (no budget end, no gate stop, no early stop).
ENDLESS_WALKS = TINY_WALKS + [
    "train.max_steps=1000000",
    "eval.every_epoch=false",
    "eval.every_steps=100",
    "eval.patience=null",
    "gate.stop_on_pass=false",
    "checkpoint.every_epoch=false",
    "checkpoint.every_steps=300",
]


class Output:
    """A subprocess's stdout, read on a thread so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen):
        import threading

        self.proc, self.lines = proc, []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 150, regex: bool = False) -> str:
        import re

        t0 = time.time()
        while time.time() - t0 < timeout:
            for line in self.lines:
                if re.search(needle, line) if regex else needle in line:
                    return line
            if self.proc.poll() is not None and not self._t.is_alive():
                break
            time.sleep(0.05)
        pytest.fail(f"no line with {needle!r} (rc {self.proc.poll()}):\n{self.text[-4000:]}")

    def finish(self, timeout: float = 60) -> int:
        rc = self.proc.wait(timeout)
        self._t.join(5)
        return rc


def start_cockpit(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cockpit.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def until(cond, timeout: float = 60.0) -> bool:
    """Poll `cond` until true (a loaded 2-core machine can be several times slower)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.05)
    return False
