"""`cockpit serve`: the monitor in a browser, behind a token. A real server on
127.0.0.1 (the command as a user starts it) asked over plain HTTP, and in the
heavy tier a real headless Chromium watching a live trainer through it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from cockpit.cli import main
from cockpit.supervisor import Trainer
from tests.cockpit.browser import Browser, find_chromium
from tests.conftest import REPO

RECORDED = REPO / "tests/recorded/runs/20260101-120000-demo-walks"
SCRIPT = REPO / "tests" / "cockpit" / "scripted_trainer.py"


@contextmanager
def serving(run: Path, *extra: str) -> Iterator[tuple[str, str, subprocess.Popen]]:
    """`cockpit serve RUN --port 0`: (base URL, token, process), stopped with Ctrl+C."""
    p = subprocess.Popen(
        [sys.executable, "-m", "cockpit.cli", "serve", str(run), "--port", "0", *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line)
            m = re.search(r"open (http://127\.0\.0\.1:\d+)/\?token=(\S+)", line)
            if m:
                break
        else:
            pytest.fail("cockpit serve printed no URL:\n" + "".join(lines))
        yield m.group(1), m.group(2), p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def get(url: str, headers: dict | None = None) -> tuple[int, str, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(errors="replace"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), dict(e.headers)


def test_every_request_needs_the_token(tmp_path):
    with serving(RECORDED) as (base, token, _):
        # without it, or with a wrong one: 403, and the page says what to do
        code, body, _ = get(base + "/")
        assert code == 403 and "open the url that `cockpit serve` printed" in body.lower()
        assert get(base + "/?token=" + "x" * len(token))[0] == 403
        assert get(base + "/static/js/textual.js")[0] == 403
        ws = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
        assert get(base + "/ws/wrong", ws)[0] == 403
        # with it: the page, a cookie for its scripts, and a websocket address with the token
        code, body, headers = get(f"{base}/?token={token}")
        assert code == 200 and f"/ws/{token}" in body
        # nothing off this machine: the page's font is served here too
        assert "googleapis" not in body and "fonts/RobotoMono-VariableFont_wght.ttf" in body
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        assert get(base + "/static/js/textual.js", {"Cookie": cookie})[0] == 200
        # another site's page cannot open the websocket, token or not
        evil = {**ws, "Cookie": cookie, "Origin": "http://evil.example"}
        assert get(f"{base}/ws/{token}", evil)[0] == 403


def test_a_missing_run_or_a_taken_port_is_a_clear_error(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(RECORDED), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err and "choose another with --port" in err


# -----------------------------------------------------------------------------
# a real browser


def _step(text: str) -> int | None:
    m = re.search(r"step ([\d,]+)/", text)
    return int(m.group(1).replace(",", "")) if m else None


@pytest.mark.heavy
def test_a_browser_watches_a_live_run(tmp_path):
    exe, why = find_chromium()
    if exe is None:
        pytest.skip(why)
    run_dir = tmp_path / "20260301-120000-scripted"
    t = Trainer.launch([sys.executable, str(SCRIPT), str(run_dir), "steady"], run_dir, cwd=REPO)
    try:
        while not (run_dir / "events.jsonl").exists():
            assert t.alive(), (run_dir / "stdout.log").read_text()[-2000:]
            time.sleep(0.1)
        with serving(run_dir) as (base, token, server):
            shot = asyncio.run(_watch(tmp_path, base, token, run_dir.name, server))
        out = os.environ.get("COCKPIT_SCREENSHOT")  # docs/screenshots/serve.png: see README
        if out:
            shutil.copy(shot, out)
    finally:
        t.kill_group()
        t.wait(10)


async def _watch(tmp: Path, base: str, token: str, run_id: str, server: subprocess.Popen) -> Path:
    async with Browser.start(tmp) as b:
        # no token: the browser gets the 403 page
        await b.goto(base + "/")
        t0 = time.monotonic()
        while "403" not in await b.body_text():
            assert time.monotonic() - t0 < 20, "no 403 page"
            await asyncio.sleep(0.2)
        # the token: the monitor draws the run, and its step count moves
        await b.goto(f"{base}/?token={token}")
        seen: list[int] = []
        text = ""
        t0 = time.monotonic()
        while len(set(seen)) < 3:
            assert time.monotonic() - t0 < 90, f"the page never showed the run moving:\n{text}"
            await asyncio.sleep(0.5)
            text = await b.terminal_text() or ""
            if run_id in text and (s := _step(text)) is not None:
                seen.append(s)
        assert seen == sorted(seen) and seen[-1] > seen[0]
        # read-only: the footer offers no key that signals the trainer
        footer = text.strip().splitlines()[-1]
        assert "log" in footer and not re.search(r"\b(save|stop|stacks)\b", footer), footer
        await asyncio.sleep(1.0)  # a frame with the charts drawn
        shot = tmp / "serve.png"
        shot.write_bytes(await b.screenshot())
        # Ctrl+C with the page still open: the server ends its monitor and stops; the
        # trainer goes on
        pages = psutil.Process(server.pid).children(recursive=True)
        assert pages, "no monitor process for the page"
        server.send_signal(signal.SIGINT)
        assert server.wait(30) == 0
        gone, alive = psutil.wait_procs(pages, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
        return shot
