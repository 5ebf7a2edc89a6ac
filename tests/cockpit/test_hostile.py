"""Text from trainers and data is data: one hostile corpus (Rich markup, an
unbalanced closing tag, OSC/CSI sequences, NUL and other controls, lone
surrogates, a 1 MB line, fields of the wrong type) through every display: the
headless printer on a terminal and not, each TUI panel and screen, the
pre-flight findings, the post-flight samples and `cockpit runs`. Nothing
crashes, nothing is interpreted: no control byte of the corpus reaches the
output, and markup shows as the text it is."""

from __future__ import annotations

import asyncio
import html
import io
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from cockpit.checks.engine import StepResult
from cockpit.commands import postflight as postcmd
from cockpit.commands import preflight as precmd
from cockpit.commands.runs import cmd_runs
from cockpit.headless import HeadlessPrinter
from cockpit.session import Session
from cockpit.ui.app import CockpitApp
from cockpit.ui.screens.dialogs import AlertsScreen, TextScreen
from cockpit.ui.screens.monitor import MonitorScreen
from cockpit.ui.screens.runs import RunsScreen
from cockpit.ui.widgets.base import Panel
from cockpit.ui.widgets.steps import step_view, summary_view
from cockpit.wrap.wrapped import Adapting
from tests.conftest import REPO

# -----------------------------------------------------------------------------
# the corpus

MARKUP = [
    "error: cannot open [/data/train]",
    "[bold red]styled[/] [link=https://evil.example]a link[/link] [@click=app.quit]quit[/]",
    "unbalanced [/x] and [/] and [",
    ":warning: an emoji code",
]
CONTROLS = [
    "title \x1b]0;pwned\x07 clipboard \x1b]52;c;ZWNobyBwd25lZA==\x07 end",
    "csi \x1b[2J\x1b[31mred\x1b[0m \x1b[?1049h",
    "nul \x00 bel \x07 bs \x08 vt \x0b ff \x0c del \x7f c1 \x9b31m \x90dcs\x9c",
]
SURROGATES = "lone \ud800 and \udfff surrogates"
# what no output may hold: the corpus's controls (a terminal display adds its own ESCs)
PAYLOADS = [
    "\x1b]0;",
    "\x1b]52",
    "\x1b[2J",
    "\x1b[?1049h",
    "\x00",
    "\x07",
    "\x08",
    "\x7f",
    "\x9b",
    "\x90",
]
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
LITERAL = ["[/data/train]", "[link=https://evil.example]", "[@click=app.quit]", "[/x]", ":warning:"]


def assert_plain(out: str, terminal: bool = False, literal=LITERAL) -> None:
    """No control of the corpus in `out` (none at all unless a terminal display drew
    it), and the markup there as text."""
    if terminal:
        bad = [p for p in PAYLOADS if p in out]
        assert not bad, f"control sequences reached the output: {bad}"
        assert not re.search("[\ud800-\udfff]", out)
    else:
        m = CONTROL.search(out.replace("\r", ""))
        assert m is None, (
            f"control {m[0]!r} reached the output: {out[max(0, m.start() - 40) : m.end() + 40]!r}"
        )
    for s in literal:
        assert s in out, f"{s!r} not shown as text"


def stdout_log() -> bytes:
    """A wrapped trainer's stdout: hostile lines, its own events with hostile text and
    fields of the wrong type, a lone surrogate's bytes and a 1 MB line."""
    ev = [
        {"type": "phase", "name": "tokenize [/x]", "done": "half", "total": "all"},
        {"type": "run_start", "run_id": "r[/x]", "profile": "p \x1b]0;t\x07 [/x]", "pid": 1,
         "device": "cpu", "world_size": 1, "dtype": "[/x]", "n_params": "many",
         "tokens_per_step": 64, "total_steps": "ten", "total_epochs": "2"},
        {"type": "step", "step": 1, "epoch": "one", "loss": "2.5", "lr": "fast", "grad_norm": 1,
         "tokens": "many", "step_ms": 3.0, "tokens_per_s": 9.0},
        {"type": "step", "step": 2, "epoch": 0, "loss": 2.25, "lr": 1e-3, "grad_norm": None,
         "tokens": 128, "step_ms": 3.0, "tokens_per_s": 9.0},
        {"type": "eval", "step": 2, "epoch": 0, "val_loss": 2.1, "val_ppl": 8.1,
         "metrics": {"acc [/x]": 0.5, "bad": "x"}},
        {"type": "gate", "step": 2, "passed": "no", "metrics": {"acc [/x]": 0.5},
         "thresholds": {"acc [/x]": "high"}},
        {"type": "sample", "step": 2, "prompt": MARKUP[0] + CONTROLS[0], "text": CONTROLS[1],
         "valid": None},
        {"type": "checkpoint", "step": 2, "path": "checkpoints/step-[/x]\x1b]0;t\x07.pt",
         "bytes": "big", "sha256": "0", "seconds": "slow", "tags": ["[bold]x", 1, {"a": 1}]},
        {"type": "alert", "level": "warn", "code": "[/x]", "message": " ".join(MARKUP + CONTROLS)},
    ]  # fmt: skip
    out = [x.encode() for x in MARKUP + CONTROLS]
    out += [json.dumps(e).encode() for e in ev]
    out.append(SURROGATES.encode("utf-8", "surrogatepass"))  # bytes no decoder accepts
    out.append(b"L" * (1 << 20) + b" [/x]")
    out.append(" ".join(MARKUP + CONTROLS).encode())  # the last words: run_end's reason
    return b"\n".join(out) + b"\n"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    """A finished wrapped run (exit code 3) made from stdout_log() by the adapter."""
    run_dir = tmp_path_factory.mktemp("logs") / "20240101-000000-hostile[b]\x1b]0;t\x07"
    run_dir.mkdir()
    (run_dir / "stdout.log").write_bytes(stdout_log())
    a = Adapting(run_dir, "jsonl", command=["python", "train[/x].py"])
    while a.pump():
        pass
    a.finish(3)
    a.stop()
    return run_dir


def written(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


# -----------------------------------------------------------------------------
# the adapter's edge: every field of its schema type, or dropped and counted


def test_wrong_types_are_coerced_or_dropped_and_counted(hostile_run):
    evs = written(hostile_run)
    by = {}
    for e in evs:
        by.setdefault(e["type"], []).append(e)
    start = by["run_start"][-1]  # the first is the adapter's own (a phase came first)
    assert start["total_steps"] is None and start["n_params"] is None
    assert start["total_epochs"] == 2  # "2": a number printed as a string is that number
    s1 = by["step"][0]
    assert s1["epoch"] is None and s1["lr"] is None and s1["tokens"] is None
    assert s1["loss"] == 2.5
    assert by["eval"][0]["metrics"] == {"acc [/x]": 0.5}
    gate = by["gate"][0]
    assert gate["passed"] is None and gate["thresholds"] == {}
    ck = by["checkpoint"][0]
    assert ck["bytes"] is None and ck["seconds"] is None and ck["tags"] == ["[bold]x", "1"]
    assert by["phase"][0]["done"] is None
    # said once, where a user looks (the alerts), and counted in adapter.json
    bad = [e for e in by["alert"] if e["code"] == "bad_fields"]
    assert len(bad) == 1 and "done='half'" in bad[0]["message"]  # the first event with one
    state = json.loads((hostile_run / "adapter.json").read_text())
    assert state["dropped_fields"] == 13  # phase 2, run_start 2, step 3, eval, gate 2, checkpoint 3
    assert by["run_end"][0]["status"] == "failed"


# -----------------------------------------------------------------------------
# headless, on a terminal and not


@pytest.mark.parametrize("tty", [False, True])
def test_headless_shows_hostile_text_as_text(hostile_run, tty):
    out = io.StringIO()
    session = Session(hostile_run, None, notify=False)
    printer = HeadlessPrinter(session.model, out=out, tty=tty, every_s=0)
    try:
        session.replay()
        printer.update()
        printer.finish()
    finally:
        printer.close()
        session.close()
    text = out.getvalue()
    assert_plain(text, terminal=tty, literal=["[/data/train]", "[/x]", "[@click=app.quit]"])
    assert "exit code 3" in text  # run_end's reason, with the last words in it


@pytest.mark.parametrize("tty", [False, True])
def test_wrapped_command_keeps_its_exit_code(tmp_path, tty):
    """The issue's reproduction: a wrapped command prints a path in brackets and fails;
    the headless cockpit (on a terminal: its progress bar and end-of-run table) shows
    the line as it is and exits with the command's code, not a MarkupError's 1."""
    script = tmp_path / "t.py"
    script.write_text(
        "import sys\nprint('title \\x1b]0;pwned\\x07 [link=https://evil.example]x[/link]')\n"
        "print('error: cannot open [/data/train]')\nsys.exit(3)\n"
    )
    cmd = [sys.executable, "-m", "cockpit.cli", "run", "--headless", "--run-dir"]
    cmd += [str(tmp_path / "run"), "--", sys.executable, str(script)]
    if not tty:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        rc, out = r.returncode, r.stdout + r.stderr
    else:
        master, slave = pty.openpty()
        proc = subprocess.Popen(cmd, cwd=REPO, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        rc = proc.wait(60)
        os.close(master)
        out = b"".join(chunks).decode("utf-8", "replace")
    assert rc == 3, out[-3000:]
    assert "MarkupError" not in out
    assert_plain(out, terminal=tty, literal=["error: cannot open [/data/train]"])


# -----------------------------------------------------------------------------
# the TUI: every panel of the monitor, the alerts and a page of text, the runs screen


def svg_text(app) -> str:
    """What the screen shows, as text (the SVG export, its entities read back)."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def run(coro) -> None:
    asyncio.run(coro)


@pytest.mark.heavy  # over 10 s on 2 cores: make test stays under 10 min; CI runs it
def test_tui_monitor_alerts_and_pages(hostile_run):
    async def go():
        app = CockpitApp("monitor", session=Session(hostile_run, None), logs=hostile_run.parent)
        async with app.run_test(size=(200, 60)) as pilot:
            monitor = app.screen
            assert isinstance(monitor, MonitorScreen)
            for _ in range(200):
                if monitor.pump.final is not None and monitor.view is not None:
                    break
                await pilot.pause(0.05)
            await pilot.pause(0.2)
            shown = []
            for p in monitor.query(Panel):
                shown.append(p.render().plain)
            allp = "\n".join(shown)
            assert_plain(allp, literal=["[/data/train]", "[/x]"])
            assert_plain(svg_text(app), literal=["[/x]"])
            await pilot.press("a")
            assert isinstance(app.screen, AlertsScreen)
            await pilot.pause(0.1)
            prompts = [str(o.prompt) for o in app.screen.query_one("#alert-list").options]
            assert_plain("\n".join(prompts), literal=["[/data/train]", "[@click=app.quit]"])
            assert_plain(svg_text(app), literal=["[/data/train]"])
            # the trainer's own alert (bad_fields came after it: it is first, newest first)
            await pilot.press("enter")
            assert isinstance(app.screen, TextScreen)
            await pilot.pause(0.1)
            assert_plain(svg_text(app), literal=["[/"])

    run(go())


def test_tui_runs_screen_and_cockpit_runs(hostile_run, capsys):
    async def go():
        app = CockpitApp("runs", logs=hostile_run.parent)
        async with app.run_test(size=(200, 30)) as pilot:
            for _ in range(200):
                if isinstance(app.screen, RunsScreen) and app.screen.rows:
                    break
                await pilot.pause(0.05)
            await pilot.pause(0.1)
            assert_plain(svg_text(app), literal=["hostile[b]"])

    run(go())
    cmd_runs(SimpleNamespace(logs=str(hostile_run.parent), headless=True))
    assert_plain(capsys.readouterr().out, literal=["hostile[b]", "[/x]"])


# -----------------------------------------------------------------------------
# pre-flight findings and post-flight samples


def hostile_step(status: str = "FAIL") -> StepResult:
    return StepResult(
        id="data [/x]",
        title="[bold]title[/] " + CONTROLS[0],
        status=status,
        message=" ".join(MARKUP + CONTROLS) + " " + SURROGATES,
        figures={"file [/x]": "\x1b[2J[/y]", "n": 3},
        findings=[
            {"file": "data/[/x]\x1b]0;t\x07.jsonl", "line": 3, "kind": "[/k]", "preview": p}
            for p in MARKUP + CONTROLS + [SURROGATES, "P" * (1 << 20) + "[/x]"]
        ],
        seconds=0.1,
    )


def test_preflight_findings_printed_and_on_screen(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    cl, ctx = precmd.prepare("profiles/demo-walks.yaml", [])
    results = [hostile_step("FAIL")] + [
        StepResult(id=s.id, title=s.id, status="PASS") for s in cl.steps[1:]
    ]
    precmd.print_results(cl, ctx, results)
    out = capsys.readouterr().out
    assert_plain(out, literal=["[/data/train]", "data [/x]"])
    # the pre-flight screen's step view and summary
    con = Console(file=io.StringIO(), width=200, force_terminal=True, record=True)
    con.print(step_view(hostile_step(), fix="run [b]this[/b] \x1b]0;t\x07"))
    con.print(summary_view([("data [/x]", "\x1b[2J[/y]")], [hostile_step()], None, [], True))
    assert_plain(con.export_text(styles=False), literal=["[/data/train]", "[/k]", "[b]this[/b]"])
    assert_plain(con.file.getvalue(), terminal=True, literal=["[/data/train]"])


def test_postflight_samples_printed(capsys):
    r = hostile_step("FAIL")
    out = {
        "run": "r[/x]",
        "checkpoint": "step-[/x].pt",
        "status": "FAIL",
        "steps": [dict(r.to_dict(), seconds=0.1)],
    }
    postcmd.print_results(out, {r.id: "fix [/x] \x1b]0;t\x07"})
    assert_plain(capsys.readouterr().out, literal=["[/data/train]", "[/k]", "fix [/x]"])


def test_clean_is_the_one_placeholder_function():
    from cockpit.fmt import clean

    assert clean("a\x1bb\tc\x00\x7f\x9b\ud800") == "a␛b\tc␀␡\ufffd\ufffd"
    assert clean("a\nb") == "a␊b" and clean("a\nb\x07", newlines=True) == "a\nb␇"
    assert clean("plain [/x]") == "plain [/x]"


# -----------------------------------------------------------------------------
# supervisor.json is a file anyone could have left behind: its pid and pgid are
# checked against the live process before anything is signalled


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_pid_is_requires_the_create_time():
    from cockpit.supervisor import _create_time, pid_is

    me = os.getpid()
    assert pid_is(me, _create_time(me))
    assert not pid_is(me, None)  # any process could hold a recycled pid
    assert not pid_is(me, _create_time(me) - 100)


def test_kill_group_checks_the_pid_still_leads_the_group(tmp_path):
    from cockpit.supervisor import Trainer, _create_time

    stranger, ours = _sleeper(), _sleeper()
    try:
        # supervisor.json says pgid = the stranger's group, pid = a process that does not
        # lead it (the pgid was recycled): only our pid is killed, never the group
        t = Trainer(tmp_path, ours.pid, stranger.pid, _create_time(ours.pid))
        t.kill_group()
        assert ours.wait(5) == -9
        assert stranger.poll() is None
        # no create_time, or another one: not known to be ours, nothing is signalled
        for ct in (None, _create_time(stranger.pid) - 100):
            Trainer(tmp_path, stranger.pid, stranger.pid, ct).kill_group()
            time.sleep(0.2)
            assert stranger.poll() is None
        # the pid that is ours and leads its group: the group goes
        Trainer(tmp_path, stranger.pid, stranger.pid, _create_time(stranger.pid)).kill_group()
        assert stranger.wait(5) == -9
    finally:
        for p in (stranger, ours):
            p.kill()
            p.wait()


# -----------------------------------------------------------------------------
# a key=value line of any length parses in linear time


def test_kv_huge_line_is_fast():
    from cockpit.wrap.adapters import kv

    line = "step=5 loss=2.5 " + " ".join(f"k{i}={i}" for i in range(100_000))
    p = kv.Parser()
    t0 = time.perf_counter()
    evs = p.feed(line)
    took = time.perf_counter() - t0  # 10.9 s when each new shape of line compiled a pattern
    assert evs and evs[0]["step"] == 5 and evs[0]["loss"] == 2.5
    assert took < 1.0, f"a 100k-pair line took {took:.2f} s"
    assert p.feed(line.replace("step=5", "step=6"))[0]["step"] == 6  # not a shape: searched
    assert not p._shapes


# -----------------------------------------------------------------------------
# a checkpoint corrupted on disk while a cockpit watches: both displays say INVALID

RECORDED_RUN = REPO / "tests" / "recorded" / "runs" / "20260101-120000-demo-walks"


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the same size: only the sha256 can tell
    path.write_bytes(bytes(data))
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 5))  # a new version of the file


def _verified(session) -> bool:
    cks = [c for c in session.model.checkpoints.values() if c.present]
    return bool(cks) and all(c.verified for c in cks)


def test_corrupted_checkpoint_is_invalid_headless_and_in_the_panel(tmp_path):
    from cockpit.ui.widgets.training import CheckpointsPanel

    d = tmp_path / "logs" / RECORDED_RUN.name
    shutil.copytree(RECORDED_RUN, d)
    (d / "supervisor.json").unlink()  # nobody's process: no pid to look up
    bad = d / "checkpoints" / "step-0000120.pt"

    # headless: verified first, then corrupted while it watches
    out = io.StringIO()
    session = Session(d, None, notify=False, ckpt_every_s=0.05)
    printer = HeadlessPrinter(session.model, out=out, tty=False)
    try:
        session.replay()
        deadline = time.monotonic() + 30
        while not _verified(session) and time.monotonic() < deadline:
            session.tick()
            printer.update()
            time.sleep(0.05)
        assert _verified(session), "the recorded checkpoints should verify"
        assert "INVALID" not in out.getvalue()
        _corrupt(bad)
        deadline = time.monotonic() + 30
        while "INVALID" not in out.getvalue() and time.monotonic() < deadline:
            session.tick()
            printer.update()
            time.sleep(0.05)
    finally:
        printer.close()
        session.close()
    lines = [x for x in out.getvalue().splitlines() if "INVALID" in x]
    assert lines and lines[0].startswith("checkpoint step-0000120.pt INVALID: "), out.getvalue()

    # the TUI's checkpoints panel: ✗ on that checkpoint (its reason follows, past the width)
    async def go():
        app = CockpitApp("monitor", session=Session(d, None), logs=d.parent)
        async with app.run_test(size=(160, 48)) as pilot:
            panel = app.screen.query_one(CheckpointsPanel)
            for _ in range(600):
                text = panel.render().plain
                if "✗" in text:
                    break
                await pilot.pause(0.05)
            rows = [x for x in panel.render().plain.splitlines() if "✗" in x]
            assert len(rows) == 1 and " 120 " in rows[0], panel.render().plain

    run(go())
