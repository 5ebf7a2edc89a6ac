"""`cockpit serve` as a browser sees it: time from the command's start to its URL,
from opening the page to the run drawn in it (run id and step), and the memory
of the server and of a page's monitor process. Needs Chromium (`make browser`).

    .venv/bin/python bench/serve_page.py

A scripted trainer (tests/cockpit/scripted_trainer.py) writes 100 steps a second
into a temporary run directory while the page watches it.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit.supervisor import Trainer  # noqa: E402
from tests.cockpit.browser import Browser, find_chromium  # noqa: E402


async def page(tmp: Path, url: str, run_id: str, server: psutil.Process) -> tuple[float, float]:
    """(seconds until the run is drawn, the page's monitor process's RSS in MiB)."""
    async with Browser.start(tmp) as b:
        t0 = time.monotonic()
        await b.goto(url)
        while True:
            text = await b.terminal_text() or ""
            if run_id in text and re.search(r"step [\d,]+/", text):
                drawn = time.monotonic() - t0
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)  # the page's monitor settled
        kids = server.children(recursive=True)
        return drawn, max((mib(k) for k in kids), default=0.0)


def mib(p: psutil.Process) -> float:
    return p.memory_info().rss / 2**20


def main() -> None:
    if find_chromium()[0] is None:
        print(f"serve_page: skipped: {find_chromium()[1]}")
        return
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    run_dir = tmp / "20260301-120000-scripted"
    script = REPO / "tests" / "cockpit" / "scripted_trainer.py"
    t = Trainer.launch([sys.executable, str(script), str(run_dir), "steady"], run_dir, cwd=REPO)
    while not (run_dir / "events.jsonl").exists():
        time.sleep(0.05)
    t0 = time.monotonic()
    srv = subprocess.Popen(
        [sys.executable, "-m", "cockpit.cli", "serve", str(run_dir), "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert srv.stdout is not None
        for line in srv.stdout:
            if "open http" in line:
                break
        up = time.monotonic() - t0
        url = line.split("open ", 1)[1].strip()
        p = psutil.Process(srv.pid)
        drawn, visitor = asyncio.run(page(tmp, url, run_dir.name, p))
        print(f"serve: URL printed after {up:.2f} s (imports included)")
        print(f"page: run id and step drawn {drawn:.2f} s after opening it (a fresh monitor)")
        print(f"RSS: server {mib(p):.0f} MiB, the page's monitor process {visitor:.0f} MiB")
    finally:
        srv.send_signal(signal.SIGINT)
        srv.wait(15)
        t.kill_group()
        t.wait(10)


if __name__ == "__main__":
    main()
