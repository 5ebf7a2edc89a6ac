"""A real browser for tests: headless Chromium driven over the DevTools protocol
(its websocket, through aiohttp, which `cockpit serve` already needs). Nothing
is downloaded: it uses the Chromium the system has (Debian's `chromium`), and
`find_chromium()` says why not when there is none.

    async with Browser.start(tmp_path) as b:
        await b.goto(url)
        text = await b.terminal_text()      # what the page's terminal shows
        png = await b.screenshot()
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")

# The page's terminal (xterm.js) keeps what it draws in a buffer; textual-serve's
# script does not expose the terminal, so catch it as it is stored (`this.terminal
# = new Terminal(…)`): a setter on Object.prototype, run before the page's scripts.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(v) {
    Object.defineProperty(this, "terminal", {value: v, writable: true, configurable: true});
    if (v && v.buffer && !window.__term) { window.__term = v; }
  },
});
"""

READ_TERMINAL = """
(() => {
  const t = window.__term;
  if (!t) return null;
  const b = t.buffer.active, out = [];
  for (let i = 0; i < b.length; i++) { const l = b.getLine(i); if (l) out.push(l.translateToString(true)); }
  return out.join("\\n");
})()
"""


def find_chromium() -> tuple[str | None, str]:
    """The browser's path, or None and why there is none."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path, ""
    return None, (
        "no Chromium on this machine (looked for " + ", ".join(CANDIDATES) + "); "
        "install Debian's: apt-get install chromium (make browser does)"
    )


class Browser:
    def __init__(self, proc: subprocess.Popen, ws: Any, session: aiohttp.ClientSession):
        self.proc, self.ws, self.http = proc, ws, session
        self._id = 0

    @classmethod
    def start(cls, tmp: Path, size: tuple[int, int] = (1600, 1000)) -> _Starting:
        return _Starting(tmp, size)

    async def send(self, method: str, **params: Any) -> dict:
        self._id += 1
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 30)
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expr: str) -> Any:
        got = await self.send("Runtime.evaluate", expression=expr, returnByValue=True)
        return got.get("result", {}).get("value")

    async def terminal_text(self) -> str | None:
        return await self.evaluate(READ_TERMINAL)

    async def body_text(self) -> str:
        return await self.evaluate("document.body ? document.body.innerText : ''") or ""

    async def screenshot(self) -> bytes:
        got = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(got["data"])

    async def close(self) -> None:
        try:
            await self.ws.close()
            await self.http.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class _Starting:
    def __init__(self, tmp: Path, size: tuple[int, int]):
        self.tmp, self.size = tmp, size
        self.browser: Browser | None = None

    async def __aenter__(self) -> Browser:
        exe, why = find_chromium()
        if exe is None:
            raise RuntimeError(why)
        profile = self.tmp / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        args = [
            exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-dev-shm-usage", "--remote-debugging-port=0", f"--user-data-dir={profile}",
            f"--window-size={self.size[0]},{self.size[1]}", "--hide-scrollbars", "about:blank",
        ]  # fmt: skip
        log = open(self.tmp / "chromium.log", "wb")  # noqa: SIM115  # closed with the process
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    "Chromium did not start: " + (self.tmp / "chromium.log").read_text()[-2000:]
                )
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        http = aiohttp.ClientSession()
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            pages = [p for p in json.loads(await r.text()) if p.get("type") == "page"]
        ws = await http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self.browser = b = Browser(proc, ws, http)
        await b.send("Page.enable")
        await b.send("Page.addScriptToEvaluateOnNewDocument", source=CATCH_TERMINAL)
        return b

    async def __aexit__(self, *exc: object) -> None:
        if self.browser is not None:
            await self.browser.close()
